//! C2SP `tlog-checkpoint`: the note text `<origin>\n<size>\n<base64 root>\n[extension lines]`.

use super::TlogError;
use crate::Hash;

/// A checkpoint body: which log, how many leaves, and their RFC 6962 root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (by convention a schema-less URL, e.g. `example.com/quill/shop`).
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 root hash of the first `size` leaves.
    pub root: Hash,
    /// Extension lines, kept so a cosigned note still verifies; witnesses vouch for none of them.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Parses a checkpoint from a note's text.
    pub fn parse(text: &str) -> Result<Checkpoint, TlogError> {
        let bad = |why: &str| TlogError::MalformedCheckpoint(why.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_line = lines.next().ok_or_else(|| bad("missing tree size"))?;
        let canonical = size_line == "0"
            || (!size_line.is_empty()
                && !size_line.starts_with('0')
                && size_line.bytes().all(|b| b.is_ascii_digit()));
        let size = canonical
            .then(|| size_line.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| bad("the tree size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(Hash::from_base64)
            .ok_or_else(|| bad("the root hash is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The note text of this checkpoint.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, self.root);
        for extension in &self.extensions {
            text.push_str(extension);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_parses_and_round_trips() {
        // The example of C2SP tlog-checkpoint.
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let checkpoint = Checkpoint::parse(text).unwrap();
        assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size, 20852163);
        assert!(checkpoint.extensions.is_empty());
        assert_eq!(checkpoint.to_text(), text);
        let extended = format!("{text}ext one\n");
        assert_eq!(Checkpoint::parse(&extended).unwrap().to_text(), extended);
    }

    #[test]
    fn malformed_checkpoints_are_rejected() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for bad in [
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n1\n{root}\n\n"),
            "o\n1\n".to_owned(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
