//! Quill journal streams: QLDB's `StreamJournalToKinesis`, self-hosted.
//!
//! The journal is the outbox. A stream is a [`Worker`] that re-reads committed blocks through
//! the ledger's public read API from the stream's start time, turns each block into QLDB
//! stream records ([`record`]: `CONTROL`, `BLOCK_SUMMARY`, `REVISION_DETAILS`, Ion binary), and
//! hands them in block order to a [`Sink`]. It stores a durable [`Cursor`] (the last block
//! delivered) only after the sink acknowledged, so delivery is at least once and survives
//! crashes; while the sink fails it retries with backoff and the stream is `IMPAIRED`.
//! Commits never wait for a stream. [`kpl`] packs records in the Kinesis Producer Library's
//! aggregated format, as QLDB does when `AggregationEnabled` is on.

mod binary;
pub mod cursor;
mod error;
pub mod kpl;
pub mod record;
mod runtime;
mod worker;

pub use cursor::{Cursor, Position, PositionStore};
pub use error::{Result, StreamError};
pub use record::{ControlType, RecordType, StreamRecord};
pub use runtime::{delivery_runtime, DeliveryPriority};
pub use worker::{
    BoxFuture, ErrorCause, Progress, Sink, SinkError, StreamConfig, StreamHandle, StreamStatus,
    Worker, WorkerOptions,
};
