//! Quill's witnessed transparency log: everything that signs or serves, beside the pure
//! formats and checks of [`quill_verify::tlog`].
//!
//! - [`keys`]: Ed25519 note keys in the `golang.org/x/mod/sumdb/note` private key format,
//!   signing checkpoints as a log and cosigning them (`cosignature/v1`) as a witness.
//! - [`witness`]: a C2SP `tlog-witness` server (`POST /add-checkpoint`) that follows many
//!   logs and persists what it cosigned atomically; `quill witness serve` runs it.
//!   [`submit`]: the log's side, collecting cosignatures from witnesses.
//! - [`log`]: a ledger's log: the RFC 6962 tree over its blocks, file-backed, and the
//!   publisher that signs its checkpoints; [`tiles`]: C2SP tlog-tiles paths.
//! - [`mirror`]: a verifying, read-only copy of another server's log (`quill mirror`).
//! - [`durable`]: the atomic file replacement they rely on.
#![deny(missing_docs)]

pub mod durable;
pub mod keys;
pub mod log;
pub mod mirror;
pub mod submit;
pub mod tiles;
pub mod witness;
