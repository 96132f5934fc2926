//! The flusher: holds the in-memory layers of derived state not yet in redb
//! ([`LayeredState`], owned by the sequencer), writes them to redb off the commit path, and
//! decides when a flush (and a durable state checkpoint) is due.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use quill_verify::Hash;

use crate::error::{LedgerError, Result};
use crate::limits::{LAYERS_MAX, LAYER_REVISIONS_MAX};
use crate::state::{Layer, Snapshot};

use super::Core;

/// Make derived state durable at least this often, so a reopen replays a bounded tail.
pub(super) const STATE_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Derived state as the sequencer builds it: the last redb commit plus the batches sequenced
/// since, as layers, and the flush writing the first of them to redb.
pub(super) struct LayeredState {
    /// Derived state as of the last redb commit.
    pub(super) base: Snapshot,
    /// Batches sequenced since then (oldest first), not in redb yet.
    pub(super) layers: Vec<Arc<Layer>>,
    /// Revisions in `layers`.
    pub(super) revisions: usize,
    /// The flush writing the first layers to redb, if one is running.
    pub(super) flushing: Option<Flushing>,
    /// Where flushes are sent (the flusher thread); `None` before it runs, and then layers
    /// are written by the sequencer itself.
    pub(super) flusher: Option<SyncSender<FlushJob>>,
    /// When derived state was last made durable.
    pub(super) last_checkpoint: Instant,
}

/// A flush in progress: the first `layers` layers are being written to redb.
pub(super) struct Flushing {
    layers: usize,
    done: Receiver<Result<Snapshot>>,
}

/// Layers for the flusher thread to write to redb in one transaction.
pub(super) struct FlushJob {
    layers: Vec<Arc<Layer>>,
    /// Blocks the layers bring derived state up to, and the last one's hash.
    applied: Applied,
    /// Whether the commit is a durable checkpoint (the journal is synced first).
    durable: bool,
    done: SyncSender<Result<Snapshot>>,
}

/// The flusher thread: writes layers to redb off the commit path, one job after the other.
pub(super) fn flush_loop(core: &Core, jobs: Receiver<FlushJob>) {
    while let Ok(job) = jobs.recv() {
        let written = write_layers_to_redb(core, &job.layers, job.applied, job.durable);
        let _ = job.done.send(written);
    }
}

/// Blocks applied to derived state and the hash of the last of them.
pub(super) type Applied = (u64, Option<Hash>);

/// Writes `layers` to redb in one transaction that brings derived state up to `applied`, and
/// returns the new redb snapshot.
pub(super) fn write_layers_to_redb(
    core: &Core,
    layers: &[Arc<Layer>],
    (applied, last_hash): Applied,
    durable: bool,
) -> Result<Snapshot> {
    let mut writer = core.state.writer()?;
    writer.write_layers(layers)?;
    writer.set_applied(applied, last_hash)?;
    // A durable state checkpoint must not get ahead of the journal on disk; the digest tree
    // checkpoints with it.
    let durable =
        durable && core.journal.sync_for_checkpoint().is_ok() && core.tree.flush().is_ok();
    writer.commit(durable)?;
    core.state.snapshot()
}

impl LayeredState {
    /// No layers over `base`, no flusher yet.
    pub(super) fn new(base: Snapshot) -> LayeredState {
        LayeredState {
            base,
            layers: Vec::new(),
            revisions: 0,
            flushing: None,
            flusher: None,
            last_checkpoint: Instant::now(),
        }
    }

    /// Takes the result of a running flush: when it is done (or, with `wait`, once it is),
    /// its snapshot becomes the base and its layers are dropped.
    pub(super) fn collect_flush(&mut self, core: &Core, wait: bool) {
        let Some(flushing) = &self.flushing else {
            return;
        };
        let result = if wait {
            flushing
                .done
                .recv()
                .unwrap_or_else(|_| Err(LedgerError::Storage("the flusher stopped".into())))
        } else {
            match flushing.done.try_recv() {
                Ok(result) => result,
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    Err(LedgerError::Storage("the flusher stopped".into()))
                }
            }
        };
        let flushed = flushing.layers;
        self.flushing = None;
        // Only a flush changes the layers' prefix, and only one runs at a time.
        assert!(
            flushed <= self.layers.len(),
            "a flush wrote layers the sequencer no longer has"
        );
        match result {
            Ok(base) => {
                self.base = base;
                self.layers.drain(..flushed);
                self.revisions = self.layers.iter().map(|l| l.revisions()).sum();
            }
            // The layers stay: reads remain right, and nothing more is written.
            Err(e) => core.poison(format!("derived state write failed: {e}")),
        }
    }

    /// Whether the layers should be written to redb: enough of them, or a checkpoint is due.
    pub(super) fn flush_due(&self) -> bool {
        self.layers.len() >= LAYERS_MAX
            || self.revisions >= LAYER_REVISIONS_MAX
            || self.last_checkpoint.elapsed() >= STATE_CHECKPOINT_INTERVAL
    }

    /// Hands every layer to the flusher, unless a flush is running; the flush brings derived
    /// state up to `applied`, and is a durable checkpoint when one is due or `durable` asks
    /// for it.
    pub(super) fn start_flush(&mut self, durable: bool, applied: Applied) {
        let Some(flusher) = &self.flusher else {
            return;
        };
        if self.flushing.is_some() || self.layers.is_empty() {
            return;
        }
        let durable = durable || self.last_checkpoint.elapsed() >= STATE_CHECKPOINT_INTERVAL;
        let (done, result) = mpsc::sync_channel(1);
        let job = FlushJob {
            layers: self.layers.clone(),
            applied,
            durable,
            done,
        };
        // Capacity 1 and one flush at a time: this never blocks.
        if flusher.send(job).is_ok() {
            if durable {
                self.last_checkpoint = Instant::now();
            }
            self.flushing = Some(Flushing {
                layers: self.layers.len(),
                done: result,
            });
        }
    }
}
