//! The delivery worker of one stream: the journal is the outbox. The worker re-reads blocks
//! from the ledger's public read API, turns them into stream records and hands them to a
//! [`Sink`] in block order, storing its [`Cursor`] only after the sink acknowledged. Commits
//! never wait for it: it only reads what is already committed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quill_ledger::{Ledger, LedgerError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cursor::{Cursor, Position};
use crate::error::{Result, StreamError};
use crate::record::{control_record, ControlType, StreamBlock, StreamRecord};

/// QLDB's stream statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatus {
    Active,
    Completed,
    Canceled,
    Failed,
    Impaired,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Completed => "COMPLETED",
            StreamStatus::Canceled => "CANCELED",
            StreamStatus::Failed => "FAILED",
            StreamStatus::Impaired => "IMPAIRED",
        }
    }

    /// The stream stopped for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StreamStatus::Completed | StreamStatus::Canceled | StreamStatus::Failed
        )
    }
}

/// QLDB's `ErrorCause` of an impaired or failed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCause {
    KinesisStreamNotFound,
    IamPermissionRevoked,
}

impl ErrorCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCause::KinesisStreamNotFound => "KINESIS_STREAM_NOT_FOUND",
            ErrorCause::IamPermissionRevoked => "IAM_PERMISSION_REVOKED",
        }
    }
}

/// A delivery that did not go through; the worker retries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// The QLDB error cause this failure maps to, if any (an unreachable target has none).
    pub cause: Option<ErrorCause>,
    pub message: String,
}

impl SinkError {
    pub fn transient(message: impl Into<String>) -> SinkError {
        SinkError {
            cause: None,
            message: message.into(),
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a stream's records go.
pub trait Sink: Send {
    /// Delivers `records` in order. `Ok` means the target holds all of them durably; on `Err`
    /// the worker sends the same records again later (some may then arrive twice).
    fn deliver<'a>(
        &'a mut self,
        records: &'a [StreamRecord],
    ) -> BoxFuture<'a, std::result::Result<(), SinkError>>;
}

/// What a worker streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// 22-character stream id.
    pub stream_id: String,
    /// `arn:aws:qldb:<region>:<account>:stream/<ledger>/<streamId>`, the records'
    /// `qldbStreamArn`.
    pub stream_arn: String,
    /// Blocks committed before this time (ms since the epoch) are not streamed.
    pub inclusive_start_millis: i64,
    /// Blocks committed at or after this time are not streamed; reaching it completes the
    /// stream. `None` streams until cancelled.
    pub exclusive_end_millis: Option<i64>,
}

/// Tuning of a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How often a caught-up worker looks for new blocks.
    pub poll_interval: Duration,
    /// First and largest wait between failed deliveries.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Most blocks read into one delivery.
    pub max_blocks_per_batch: u64,
    /// How long after the end time a caught-up worker waits for commits still in flight
    /// (their block time can be just before the end time) before completing.
    pub end_grace: Duration,
    /// Least time between two writes of the cursor while delivering (each write is two fsyncs
    /// on the journal's disk); the last position is also written when the worker stops. A
    /// crash resends at most this much more.
    pub cursor_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_blocks_per_batch: 200,
            end_grace: Duration::from_secs(1),
            cursor_interval: Duration::from_millis(200),
        }
    }
}

/// A stream's live state, shared between its worker and whoever describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: StreamStatus,
    pub error_cause: Option<ErrorCause>,
    /// Why the last delivery failed, while it keeps failing.
    pub last_error: Option<String>,
    pub last_delivered_block: Option<u64>,
    /// Committed blocks not delivered yet.
    pub blocks_behind: u64,
    /// Age of the oldest undelivered block, in ms (0 when caught up).
    pub millis_behind: u64,
    pub records_delivered: u64,
}

/// Handle on a running stream: its progress, and cancellation.
#[derive(Debug)]
pub struct StreamHandle {
    progress: Mutex<Progress>,
    cancel: watch::Sender<bool>,
}

impl StreamHandle {
    pub fn progress(&self) -> Progress {
        self.progress.lock().expect("progress lock").clone()
    }

    /// Asks the worker to stop; it ends `CANCELED` without a `COMPLETED` record.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().expect("progress lock"));
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads from the journal are blocking file reads: keep them off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StreamError::Io(std::io::Error::other(e)))?
}

/// What one pass over the journal found.
struct Batch {
    records: Vec<StreamRecord>,
    /// The last block read (delivered or skipped as before the start time).
    last_block: Option<u64>,
    /// Commit times of the first and last blocks read.
    first_block_millis: Option<i64>,
    last_block_millis: i64,
    /// A block at or after the end time was reached.
    reached_end: bool,
    /// Every committed block was read.
    caught_up: bool,
}

fn read_batch(ledger: &Ledger, config: &StreamConfig, next: u64, max_blocks: u64) -> Result<Batch> {
    let mut batch = Batch {
        records: Vec::new(),
        last_block: None,
        first_block_millis: None,
        last_block_millis: 0,
        reached_end: false,
        caught_up: false,
    };
    let blocks = ledger.stored_blocks(next, max_blocks)?;
    for stored in &blocks {
        let block = StreamBlock::read(stored)?;
        let millis = block.millis()?;
        if config.exclusive_end_millis.is_some_and(|end| millis >= end) {
            batch.reached_end = true;
            return Ok(batch);
        }
        if millis >= config.inclusive_start_millis {
            batch.records.extend(block.records(&config.stream_arn)?);
        }
        batch.last_block = Some(stored.address.sequence_no);
        batch.first_block_millis.get_or_insert(millis);
        batch.last_block_millis = millis;
    }
    batch.caught_up = (blocks.len() as u64) < max_blocks;
    Ok(batch)
}

/// The time of block `sequence_no`, ms since the epoch.
fn block_millis(ledger: &Ledger, sequence_no: u64) -> Result<i64> {
    let blocks = ledger.stored_blocks(sequence_no, 1)?;
    let stored = blocks.first().ok_or_else(|| {
        StreamError::Ledger(LedgerError::UnknownBlock(format!(
            "sequenceNo {sequence_no} is beyond the tip"
        )))
    })?;
    StreamBlock::read(stored)?.millis()
}

/// The first block committed at or after `start_millis` (the tip + 1 if none): block times
/// never go backwards, so a binary search finds it without reading the history.
fn first_block_at(ledger: &Ledger, start_millis: i64) -> Result<u64> {
    let (mut low, mut high) = (0, ledger.digest().tip.sequence_no + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        if block_millis(ledger, mid)? < start_millis {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// The delivery worker of one stream.
pub struct Worker {
    config: StreamConfig,
    ledger: Ledger,
    cursor: Cursor,
    sink: Box<dyn Sink>,
    handle: Arc<StreamHandle>,
    options: WorkerOptions,
}

impl Worker {
    pub fn new(
        config: StreamConfig,
        ledger: Ledger,
        cursor: Cursor,
        sink: Box<dyn Sink>,
        options: WorkerOptions,
    ) -> (Worker, Arc<StreamHandle>) {
        let (cancel, _) = watch::channel(false);
        let handle = Arc::new(StreamHandle {
            progress: Mutex::new(Progress {
                status: StreamStatus::Active,
                error_cause: None,
                last_error: None,
                last_delivered_block: None,
                blocks_behind: 0,
                millis_behind: 0,
                records_delivered: 0,
            }),
            cancel,
        });
        let worker = Worker {
            config,
            ledger,
            cursor,
            sink,
            handle: handle.clone(),
            options,
        };
        (worker, handle)
    }

    /// Streams until the end time, cancellation or an error the worker cannot retry (the
    /// stream is then `FAILED`). Returns the final status.
    pub async fn run(mut self) -> Result<StreamStatus> {
        let outcome = self.stream().await;
        let status = match &outcome {
            Ok(status) => *status,
            Err(e) => {
                let message = e.to_string();
                tracing::error!(stream = %self.config.stream_id, "stream failed: {message}");
                self.handle.update(|p| p.last_error = Some(message));
                StreamStatus::Failed
            }
        };
        self.handle.update(|p| p.status = status);
        outcome
    }

    async fn stream(&mut self) -> Result<StreamStatus> {
        let mut position = self.cursor.load()?;
        let mut stored = position.clone();
        let status = self.deliver_from(&mut position, &mut stored).await?;
        if position != stored {
            self.cursor.store(&position)?;
        }
        Ok(status)
    }

    /// Delivers from `position` on, advancing it; `stored` is what the cursor file holds.
    async fn deliver_from(
        &mut self,
        position: &mut Position,
        stored: &mut Position,
    ) -> Result<StreamStatus> {
        let mut cancel = self.handle.cancel.subscribe();
        let mut last_store = Instant::now();
        if !position.created_delivered {
            let created = control_record(
                &self.config.stream_arn,
                &self.config.stream_id,
                ControlType::Created,
            )?;
            if !self.deliver(&[created], None, &mut cancel).await {
                return Ok(StreamStatus::Canceled);
            }
            position.created_delivered = true;
            self.cursor.store(position)?;
            *stored = position.clone();
        }
        let mut next = match position.last_block {
            Some(last) => last + 1,
            None => {
                let ledger = self.ledger.clone();
                let start = self.config.inclusive_start_millis;
                blocking(move || first_block_at(&ledger, start)).await?
            }
        };
        self.handle
            .update(|p| p.last_delivered_block = position.last_block);
        loop {
            if *cancel.borrow() {
                return Ok(StreamStatus::Canceled);
            }
            let ledger = self.ledger.clone();
            let config = self.config.clone();
            let max = self.options.max_blocks_per_batch;
            let batch = blocking(move || read_batch(&ledger, &config, next, max)).await?;
            if !batch.records.is_empty()
                && !self
                    .deliver(&batch.records, batch.first_block_millis, &mut cancel)
                    .await
            {
                return Ok(StreamStatus::Canceled);
            }
            if let Some(last) = batch.last_block {
                position.last_block = Some(last);
                if last_store.elapsed() >= self.options.cursor_interval {
                    self.cursor.store(position)?;
                    *stored = position.clone();
                    last_store = Instant::now();
                }
                next = last + 1;
            }
            self.handle
                .update(|p| p.last_delivered_block = position.last_block);
            // The block after the batch was committed no earlier than the batch's last one.
            self.record_lag((!batch.caught_up).then_some(batch.last_block_millis));

            let past_end = self.config.exclusive_end_millis.is_some_and(|end| {
                now_millis() >= end.saturating_add(self.options.end_grace.as_millis() as i64)
            });
            if batch.reached_end || (batch.caught_up && past_end) {
                let completed = control_record(
                    &self.config.stream_arn,
                    &self.config.stream_id,
                    ControlType::Completed,
                )?;
                if !self.deliver(&[completed], None, &mut cancel).await {
                    return Ok(StreamStatus::Canceled);
                }
                return Ok(StreamStatus::Completed);
            }
            if batch.caught_up {
                tokio::select! {
                    _ = tokio::time::sleep(self.options.poll_interval) => {}
                    _ = cancel.changed() => {}
                }
            }
        }
    }

    /// Updates the lag: committed blocks not delivered yet, and the age of the oldest of them
    /// (`pending_since`, its commit time, when known).
    fn record_lag(&self, pending_since: Option<i64>) {
        let tip = self.ledger.digest().tip.sequence_no;
        self.handle.update(|p| {
            p.blocks_behind = match p.last_delivered_block {
                Some(last) => tip.saturating_sub(last),
                None => tip + 1,
            };
            p.millis_behind = match pending_since {
                Some(since) if p.blocks_behind > 0 => {
                    now_millis().saturating_sub(since).max(0) as u64
                }
                _ => 0,
            };
        });
    }

    /// Delivers `records`, retrying with exponential backoff while the sink fails (the stream
    /// is `IMPAIRED` meanwhile, `ACTIVE` again after). `pending_since` is the commit time of
    /// the oldest block among them, for the lag. `false` if cancelled first.
    async fn deliver(
        &mut self,
        records: &[StreamRecord],
        pending_since: Option<i64>,
        cancel: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = self.options.backoff_min;
        loop {
            let outcome = tokio::select! {
                outcome = self.sink.deliver(records) => outcome,
                _ = cancel.changed() => return false,
            };
            match outcome {
                Ok(()) => {
                    self.handle.update(|p| {
                        p.status = StreamStatus::Active;
                        p.error_cause = None;
                        p.last_error = None;
                        p.records_delivered += records.len() as u64;
                    });
                    return true;
                }
                Err(e) => {
                    tracing::warn!(
                        stream = %self.config.stream_id,
                        "delivery failed, retrying in {backoff:?}: {e}"
                    );
                    self.handle.update(|p| {
                        p.status = StreamStatus::Impaired;
                        p.error_cause = e.cause;
                        p.last_error = Some(e.message.clone());
                    });
                    self.record_lag(pending_since);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.changed() => return false,
                    }
                    backoff = (backoff * 2).min(self.options.backoff_max);
                }
            }
        }
    }
}
