//! C2SP `tlog-tiles` paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, where `N`
//! is written in groups of three digits, every group but the last prefixed with `x`
//! (`1234067` → `x001/x234/067`).

/// Hashes per full tile, and entries per full bundle.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;

/// What a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePath {
    /// `None` for an entry bundle, else the tile level.
    pub level: Option<u8>,
    /// The tile index.
    pub index: u64,
    /// The width: 256 for a full tile, 1..=255 for a partial one.
    pub width: u64,
}

/// Writes an index as `x001/x234/067`.
pub fn encode_index(index: u64) -> String {
    let digits = format!("{index}");
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = (0..padded.len() / 3)
        .map(|i| &padded[3 * i..3 * i + 3])
        .collect();
    let (last, rest) = groups.split_last().expect("at least one group");
    let mut out = String::new();
    for group in rest {
        out.push('x');
        out.push_str(group);
        out.push('/');
    }
    out.push_str(last);
    out
}

impl TilePath {
    /// The path below the log prefix.
    pub fn to_path(&self) -> String {
        let level = match self.level {
            Some(level) => level.to_string(),
            None => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", encode_index(self.index));
        if self.width < TILE_WIDTH {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a path below the log prefix; `None` unless it is exactly a tile path.
    pub fn parse(path: &str) -> Option<TilePath> {
        let rest = path.strip_prefix("tile/")?;
        let (level, rest) = rest.split_once('/')?;
        let level = match level {
            "entries" => None,
            l if l.len() <= 2 && l.bytes().all(|b| b.is_ascii_digit()) => Some(l.parse().ok()?),
            _ => return None,
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index_part, width)) => {
                let ok = !width.starts_with('0') && width.bytes().all(|b| b.is_ascii_digit());
                let width: u64 = width
                    .parse()
                    .ok()
                    .filter(|w| ok && (1..TILE_WIDTH).contains(w))?;
                (index_part, width)
            }
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let (last, prefixed) = groups.split_last()?;
        let mut digits = String::new();
        for group in prefixed {
            digits.push_str(group.strip_prefix('x')?);
        }
        digits.push_str(last);
        if digits.len() != 3 * groups.len() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let index: u64 = digits.parse().ok()?;
        (encode_index(index) == index_part).then_some(TilePath {
            level,
            index,
            width,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_written_as_in_the_spec() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
    }

    #[test]
    fn paths_round_trip_and_others_are_refused() {
        for path in [
            TilePath {
                level: Some(0),
                index: 1234067,
                width: 256,
            },
            TilePath {
                level: Some(2),
                index: 5,
                width: 17,
            },
            TilePath {
                level: None,
                index: 0,
                width: 3,
            },
        ] {
            assert_eq!(TilePath::parse(&path.to_path()), Some(path));
        }
        assert_eq!(
            TilePath::parse("tile/0/x001/x234/067").unwrap().index,
            1234067
        );
        for bad in [
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/07",
            "tile/a/001",
            "tile/0/001/",
            "tiles/0/001",
            "tile/0/y001/002",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
    }
}
