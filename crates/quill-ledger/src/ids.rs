//! Ids: 22-character base62 strings, like QLDB's document, table, strand and transaction ids.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of every id: 22 base62 digits hold 128 bits (62^22 > 2^128).
pub const ID_LENGTH: usize = 22;

/// Makes unique ids from 128 random bits. Seeded for replayable tests; OS entropy otherwise.
pub struct IdGenerator {
    rng: Mutex<StdRng>,
}

impl IdGenerator {
    /// A generator seeded with `seed`, or from OS entropy when `None`.
    pub fn new(seed: Option<u64>) -> IdGenerator {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        IdGenerator {
            rng: Mutex::new(rng),
        }
    }

    /// A fresh id.
    pub fn next_id(&self) -> String {
        let mut value: u128 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).gen();
        let mut out = [b'0'; ID_LENGTH];
        for slot in out.iter_mut().rev() {
            *slot = BASE62[(value % 62) as usize];
            value /= 62;
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
    }
}
