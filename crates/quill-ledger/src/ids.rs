//! Ids: 22-character base62 strings, like QLDB's document, table, strand and transaction ids.
//!
//! An id is 7 base62 digits of a time-ordered prefix (milliseconds since the epoch; a counter
//! when seeded) followed by 15 random digits (89 bits). The prefix keeps ids that are made
//! together close in key order, so inserting new documents touches the right edge of the
//! derived-state B-trees instead of a random page each; the random part keeps them unique.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of every id: 22 base62 digits hold 128 bits (62^22 > 2^128).
pub const ID_LENGTH: usize = 22;

/// Digits of the time-ordered prefix: 62^7 ms is about 111 years from the epoch.
const PREFIX_DIGITS: usize = 7;

/// Makes unique ids. Seeded for replayable tests; clock and OS entropy otherwise.
pub struct IdGenerator {
    /// The random source, and for seeded generators the prefix counter.
    rng: Mutex<(StdRng, u64)>,
    seeded: bool,
}

impl IdGenerator {
    /// A generator seeded with `seed`, or from OS entropy when `None`.
    pub fn new(seed: Option<u64>) -> IdGenerator {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        IdGenerator {
            rng: Mutex::new((rng, 0)),
            seeded: seed.is_some(),
        }
    }

    /// A fresh id.
    pub fn next_id(&self) -> String {
        let (mut prefix, mut random) = {
            let mut state = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            state.1 += 1;
            let prefix = if self.seeded {
                state.1
            } else {
                crate::clock::now_millis().max(0) as u64
            };
            (prefix, state.0.gen::<u128>())
        };
        let mut out = [b'0'; ID_LENGTH];
        for slot in out[PREFIX_DIGITS..].iter_mut().rev() {
            *slot = BASE62[(random % 62) as usize];
            random /= 62;
        }
        for slot in out[..PREFIX_DIGITS].iter_mut().rev() {
            *slot = BASE62[(prefix % 62) as usize];
            prefix /= 62;
        }
        // Every byte is from BASE62, so this is ASCII.
        String::from_utf8(out.to_vec()).expect("base62 is ASCII")
    }
}

/// True for a well-formed id (22 base62 characters).
pub fn is_valid_id(text: &str) -> bool {
    text.len() == ID_LENGTH && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_base62_and_distinct() {
        let ids = IdGenerator::new(Some(7));
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(is_valid_id(&a) && is_valid_id(&b));
        assert_ne!(a, b);
        assert_eq!(
            IdGenerator::new(Some(7)).next_id(),
            a,
            "seeded generators replay"
        );
        let clock = IdGenerator::new(None);
        let (c, d) = (clock.next_id(), clock.next_id());
        assert!(is_valid_id(&c) && c != d);
        assert!(
            c[..PREFIX_DIGITS] <= d[..PREFIX_DIGITS],
            "time-ordered prefix"
        );
    }
}
