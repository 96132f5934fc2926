//! Pure verification code for Quill ledgers, bit-compatible with Amazon QLDB.
//!
//! No storage, no async, no unsafe: a client can depend on this crate alone to check the
//! revisions, blocks, digests and proofs a Quill (or QLDB) server hands out.
//!
//! - [`Hash`]: a 32-byte SHA-256 value, shown as base64 like QLDB's Ion blobs.
//! - [`ion_hash`]: Amazon Ion Hash 1.0 over SHA-256 of an Ion value.
//! - [`dot`]: QLDB's commutative node function (smaller operand first, compared as signed
//!   bytes from byte 31 down to byte 0).

mod hash;

pub use hash::{dot, ion_hash, Hash};
