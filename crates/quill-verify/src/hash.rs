//! The two primitives every QLDB hash is built from: Ion Hash and `dot`.

use std::cmp::Ordering;
use std::fmt;

use base64::Engine as _;
use ion_rs::Element;
use sha2::{Digest as _, Sha256};

/// A SHA-256 hash: 32 raw bytes. `Display` shows standard base64, as QLDB's JSON and Ion do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 32 raw bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; 32]>::try_from(bytes).ok().map(Hash)
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Option<Hash> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        Hash::from_slice(&bytes)
    }

    /// SHA-256 of arbitrary bytes.
    pub fn sha256(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_base64())
    }
}

/// Ion Hash 1.0 with SHA-256 of an Ion value (QLDB's `H(v)`).
///
/// Independent of encoding and struct field order; sensitive to types, annotations,
/// decimal exponents and timestamp precision.
pub fn ion_hash(value: &Element) -> Hash {
    // ion-rs only fails to hash values it could not have built (e.g. invalid symbol ids in a
    // raw stream); an `Element` is always hashable.
    let digest = ion_rs::ion_hash::sha256(value).expect("an Element is always Ion-hashable");
    Hash(digest.into())
}

/// QLDB's order for `dot`: compare as signed bytes from index 31 down to 0.
fn qldb_cmp(a: &Hash, b: &Hash) -> Ordering {
    for i in (0..32).rev() {
        let (x, y) = (a.0[i] as i8, b.0[i] as i8);
        if x != y {
            return x.cmp(&y);
        }
    }
    Ordering::Equal
}

/// QLDB's node function: `SHA-256(smaller ‖ larger)` under [`qldb_cmp`]'s order.
///
/// Commutative but not associative: folding order matters.
pub fn dot(a: &Hash, b: &Hash) -> Hash {
    let (first, second) = if qldb_cmp(a, b) == Ordering::Less {
        (a, b)
    } else {
        (b, a)
    };
    let mut hasher = Sha256::new();
    hasher.update(first.0);
    hasher.update(second.0);
    Hash(hasher.finalize().into())
}
