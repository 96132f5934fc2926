//! The commit pipeline: the sequencer thread, the syncer thread, the lone-committer path,
//! and publishing durable batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use quill_verify::Hash;
use tokio::sync::oneshot;

use crate::catalog::{Catalog, CatalogChange};
use crate::error::{LedgerError, Result};
use crate::limits::{GROUP_COMMIT_MAX, LAYERS_MAX, LAYER_REVISIONS_MAX};
use crate::occ::WriteSet;
use crate::state::{Layer, Snapshot, StateWriter};
use crate::types::{BlockAddress, CommitReceipt, RedactionRequest};

use super::build::{build_and_apply, Position, Sink};
use super::flusher::{
    flush_loop, write_layers_to_redb, FlushJob, LayeredState, STATE_CHECKPOINT_INTERVAL,
};
use super::occ_check::{check_commit, Earlier};
use super::{CommitRequest, Core, PreparedCommit, Reply};

/// The committer's state shared by its threads and by committing threads that take the fast
/// path.
pub(crate) struct Pipeline {
    /// Held while a batch is being sequenced (by the sequencer thread, or by a committing thread
    /// committing alone).
    sequencer: Mutex<Sequencer>,
    /// Requests sent to the sequencer thread and not yet taken by it.
    queued: AtomicUsize,
    /// Batches handed to the syncer and not yet published. Incremented only under the
    /// `sequencer` lock, so zero under that lock means every sequenced block is published.
    syncing: AtomicUsize,
}

impl Pipeline {
    /// A pipeline continuing the chain after block `next - 1`.
    pub fn new(
        strand_id: &str,
        base: Snapshot,
        catalog: Catalog,
        previous_hash: Option<Hash>,
        last_millis: i64,
    ) -> Pipeline {
        Pipeline {
            sequencer: Mutex::new(Sequencer {
                catalog,
                next: base.applied(),
                layered: LayeredState::new(base),
                previous_hash,
                last_millis,
                in_flight: VecDeque::new(),
                header_hasher: quill_verify::BlockHeaderHasher::new(strand_id),
            }),
            queued: AtomicUsize::new(0),
            syncing: AtomicUsize::new(0),
        }
    }

    fn sequencer(&self) -> MutexGuard<'_, Sequencer> {
        // The sequencer's fields change together after a batch is appended; a panic before
        // that leaves them as they were.
        self.sequencer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the sequencer knows about the chain it has built, which may be ahead of what is
/// published (blocks waiting for their fsync).
struct Sequencer {
    catalog: Catalog,
    next: u64,
    previous_hash: Option<Hash>,
    last_millis: i64,
    /// Write sets of blocks handed to the syncer, oldest first; dropped once published
    /// (then they are in the shared conflict log).
    in_flight: VecDeque<(u64, Arc<WriteSet>)>,
    /// Derived state as built so far: redb plus in-memory layers.
    layered: LayeredState,
    /// Hashes block headers without building Ion values (the same bytes as `quill_verify`'s
    /// Ion-value path, checked by its tests).
    header_hasher: quill_verify::BlockHeaderHasher,
}

/// A batch whose blocks are appended to the journal: what publishing it changes.
struct Batch {
    /// Blocks `end - accepted.len() .. end`.
    end: u64,
    last_hash: Hash,
    last_millis: i64,
    catalog: Arc<Catalog>,
    leaves: Vec<Hash>,
    accepted: Vec<Accepted>,
}

/// A sequenced batch: in the journal (not yet synced) and applied to derived state.
struct Sequenced {
    state: StateUpdate,
    published: Batch,
    /// With a shared (PostgreSQL) journal: the sequencer as it was before the batch, restored
    /// if the batch's transaction does not commit.
    undo: Option<Undo>,
}

/// What sequencing a batch changed in the sequencer.
struct Undo {
    catalog: Catalog,
    next: u64,
    previous_hash: Option<Hash>,
    last_millis: i64,
    layers: Vec<Arc<Layer>>,
    revisions: usize,
    in_flight: usize,
}

/// How a sequenced batch reached derived state.
enum StateUpdate {
    /// In a layer: readable at once.
    Layered(Snapshot),
    /// Written to redb (with the layers before it), waiting for its commit; `checkpoint` when
    /// that commit should be durable.
    Direct {
        writer: Box<StateWriter>,
        checkpoint: bool,
    },
}

impl StateUpdate {
    /// Derived state with the batch applied. A direct batch commits to redb, and its snapshot
    /// becomes the base of later layers; a durable checkpoint syncs the journal first (unless
    /// `journal_synced`), so redb never gets ahead of the journal on disk.
    fn finish(
        self,
        core: &Core,
        sequencer: &mut Sequencer,
        journal_synced: bool,
    ) -> Result<Snapshot> {
        match self {
            StateUpdate::Layered(snapshot) => Ok(snapshot),
            StateUpdate::Direct { writer, checkpoint } => {
                let durable = checkpoint
                    && (journal_synced || core.journal.sync_for_checkpoint().is_ok())
                    && core.tree.flush().is_ok();
                writer.commit(durable)?;
                if durable {
                    sequencer.layered.last_checkpoint = Instant::now();
                }
                let base = core.state.snapshot()?;
                sequencer.layered.base = base.clone();
                Ok(base)
            }
        }
    }
}

/// A batch handed to the syncer thread.
struct SyncJob {
    job: Batch,
    /// Derived state with the batch applied, sent once its (non-durable) commit is done.
    snapshot: Receiver<Result<Snapshot>>,
}

/// The committer: runs until every sender is gone. Two threads form a pipeline:
/// - the sequencer (this thread) checks each commit for conflicts, hashes it into the next
///   block, applies it to derived state, appends the batch to the journal and hands it on;
/// - the syncer fsyncs the journal, then publishes the batch (new transactions see it) and
///   acknowledges it.
///
/// So the fsync of one batch overlaps the work on the next, and nothing is visible to any
/// transaction, nor acknowledged, before it is durable.
pub fn run(core: Arc<Core>, requests: Receiver<CommitRequest>) {
    let (jobs, pending) = mpsc::sync_channel::<SyncJob>(SYNC_QUEUE_MAX);
    let syncer_core = Arc::clone(&core);
    let syncer = std::thread::Builder::new()
        .name("quill-sync".into())
        .spawn(move || sync_loop(&syncer_core, pending));
    let syncer = match syncer {
        Ok(handle) => handle,
        Err(e) => {
            core.poison(format!("cannot start the syncer thread: {e}"));
            return;
        }
    };
    let pipeline = &core.pipeline;
    let (flush_jobs, flush_pending) = mpsc::sync_channel::<FlushJob>(1);
    let flusher_core = Arc::clone(&core);
    let flusher = std::thread::Builder::new()
        .name("quill-flush".into())
        .spawn(move || flush_loop(&flusher_core, flush_pending));
    match &flusher {
        Ok(_) => pipeline.sequencer().layered.flusher = Some(flush_jobs),
        // Without it the sequencer writes layers to redb itself.
        Err(e) => tracing::warn!(error = %e, "cannot start the flusher thread"),
    }
    loop {
        let first = match requests.recv_timeout(IDLE_FLUSH_AFTER) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(pg) = core.journal.shared() {
                    // The tip lock taken for a batch that did not come: other servers wait.
                    pg.rollback();
                }
                flush_while_idle(&core);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_MAX {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        pipeline.queued.fetch_sub(batch.len(), Ordering::SeqCst);
        // Concurrent commits may be serialised in any order: take them in the order of their
        // proposed times, so block times rise without re-hashing revision metadata.
        batch.sort_by_key(|r| r.commit.body.time_millis);
        let mut sequencer = pipeline.sequencer();
        let Some(sequenced) = sequence_batch(&core, &mut sequencer, batch) else {
            continue;
        };
        if core.journal.shared().is_some() {
            // Other servers wait on this batch's tip lock: commit it now, not behind a
            // pipelined next batch.
            commit_shared(&core, &mut sequencer, sequenced);
            continue;
        }
        let Sequenced {
            state,
            published: job,
            ..
        } = sequenced;
        let (snapshot_sender, snapshot) = mpsc::sync_channel(1);
        pipeline.syncing.fetch_add(1, Ordering::SeqCst);
        if jobs.send(SyncJob { job, snapshot }).is_err() {
            pipeline.syncing.fetch_sub(1, Ordering::SeqCst);
            core.poison("the syncer thread stopped".into());
            continue;
        }
        // While the syncer waits for the disk: make the batch readable (not yet visible).
        let _ = snapshot_sender.send(state.finish(&core, &mut sequencer, false));
    }
    drop(jobs);
    let _ = syncer.join();
    // Closing: write the layers to redb, so a clean reopen replays nothing. Dropping the
    // sender ends the flusher once its job is done.
    let mut sequencer = pipeline.sequencer();
    sequencer.layered.collect_flush(&core, true);
    sequencer.layered.flusher = None;
    if let Ok(flusher) = flusher {
        let _ = flusher.join();
    }
    if !sequencer.layered.layers.is_empty() && core.shared().poisoned.is_none() {
        let written = write_layers_to_redb(
            &core,
            &sequencer.layered.layers,
            (sequencer.next, sequencer.previous_hash),
            true,
        );
        if let Err(e) = written {
            tracing::warn!(error = %e, "derived state not saved at close; it is replayed from the journal on open");
        }
    }
}

/// Commits `commit`: in the calling thread when the pipeline is idle, otherwise through the
/// sequencer thread (`requests`), batched with whatever else is committing.
pub fn commit(
    core: &Core,
    requests: &SyncSender<CommitRequest>,
    commit: PreparedCommit,
) -> Result<CommitReceipt> {
    if let Some(alone) = alone(core) {
        return alone.commit(core, commit);
    }
    let stopped = || LedgerError::ReadOnly("committer stopped".into());
    let (reply, answer) = mpsc::sync_channel(1);
    let queued = &core.pipeline.queued;
    queued.fetch_add(1, Ordering::SeqCst);
    let request = CommitRequest {
        commit,
        reply: Reply::Blocking(reply),
    };
    if requests.send(request).is_err() {
        queued.fetch_sub(1, Ordering::SeqCst);
        return Err(stopped());
    }
    answer.recv().map_err(|_| stopped())?
}

/// Hands `commit` to the sequencer thread without waiting for it: the returned receiver gets
/// its outcome once its batch is durable (or failed). Never blocks the calling thread, so an
/// async worker may call it (inside a tokio runtime): a full queue is waited on by a blocking
/// thread instead.
pub fn enqueue(
    core: &Arc<Core>,
    requests: &SyncSender<CommitRequest>,
    commit: PreparedCommit,
) -> oneshot::Receiver<Result<CommitReceipt>> {
    let (reply, answer) = oneshot::channel();
    let request = CommitRequest {
        commit,
        reply: Reply::Async(reply),
    };
    let queued = &core.pipeline.queued;
    queued.fetch_add(1, Ordering::SeqCst);
    match requests.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(request)) => {
            let (core, requests) = (Arc::clone(core), requests.clone());
            tokio::task::spawn_blocking(move || {
                if requests.send(request).is_err() {
                    // The request (and its reply) is dropped: the receiver hears that.
                    core.pipeline.queued.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
        Err(TrySendError::Disconnected(_)) => {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
    answer
}

/// Whether the pipeline is idle, so that [`commit`] would run in the calling thread (and
/// fsync there) rather than queue.
pub fn is_idle(core: &Core) -> bool {
    alone(core).is_some()
}

/// The sequencer, taken by a committing thread while the pipeline is idle.
struct Alone<'a>(MutexGuard<'a, Sequencer>);

/// Takes the sequencer when the pipeline is idle (nothing queued, no batch waiting for its
/// fsync); `None` when it is busy, and then group commit through the threads is the faster way.
fn alone(core: &Core) -> Option<Alone<'_>> {
    if core.journal.shared().is_some() {
        // A batch of one would hold the PostgreSQL tip lock for a whole round of statements
        // while the commits arriving meanwhile wait: through the committer they go together.
        return None;
    }
    let pipeline = &core.pipeline;
    if pipeline.queued.load(Ordering::SeqCst) != 0 || pipeline.syncing.load(Ordering::SeqCst) != 0 {
        return None;
    }
    let sequencer = match pipeline.sequencer.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    // Batches are handed to the syncer only under this lock: none is waiting for its fsync now,
    // so everything sequenced before is published and this block can be published next.
    (pipeline.syncing.load(Ordering::SeqCst) == 0).then_some(Alone(sequencer))
}

impl Alone<'_> {
    /// Commits in the calling thread: sequences, fsyncs the journal, publishes and returns,
    /// with no thread hand-off.
    fn commit(self, core: &Core, commit: PreparedCommit) -> Result<CommitReceipt> {
        let mut sequencer = self.0;
        let (reply, answer) = mpsc::sync_channel(1);
        if let Some(Sequenced {
            state,
            published: job,
            ..
        }) = sequence_batch(
            core,
            &mut sequencer,
            vec![CommitRequest {
                commit,
                reply: Reply::Blocking(reply),
            }],
        ) {
            // Journal first: a direct state commit may then be a durable checkpoint.
            match sync_journal(core, job.end) {
                Ok(()) => {
                    let snapshot = state.finish(core, &mut sequencer, true);
                    publish(core, job, snapshot);
                }
                Err(e) => fail_all(job.accepted.into_iter().map(|a| a.reply), &e),
            }
        }
        drop(sequencer);
        answer
            .recv()
            .unwrap_or_else(|_| Err(LedgerError::Storage("commit dropped".into())))
    }
}

/// How long without commits before the layers are written to redb anyway: reads of an idle
/// ledger then look through no layers.
const IDLE_FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// On an idle ledger: collects a finished flush, starts a durable one for the remaining
/// layers, and republishes the snapshot without the flushed layers (the same data, read
/// through fewer layers).
fn flush_while_idle(core: &Core) {
    let mut guard = core.pipeline.sequencer();
    let sequencer = &mut *guard;
    absorb_while_idle(core, sequencer);
    let layered = &mut sequencer.layered;
    let layers_before = layered.layers.len();
    layered.collect_flush(core, false);
    if layered.flushing.is_none() {
        // Durable: an idle ledger's redb then holds everything, and a crash replays nothing.
        layered.start_flush(true, (sequencer.next, sequencer.previous_hash));
    }
    if layered.layers.len() == layers_before {
        return;
    }
    // Under the sequencer lock with no batch waiting for its fsync, every sequenced block is
    // published: the republished snapshot holds exactly the published state.
    if core.pipeline.syncing.load(Ordering::SeqCst) == 0 {
        let mut shared = core.shared_mut();
        if shared.applied == sequencer.next {
            let layers = layered.layers.clone();
            shared.snapshot = Arc::new(layered.base.with_layers(layers, sequencer.next));
        }
    }
}

/// Batches that may wait for the fsync at once: bounds memory; two keep the disk busy.
const SYNC_QUEUE_MAX: usize = 2;

/// A commit accepted into the batch, waiting for the fsync.
struct Accepted {
    reply: Reply,
    receipt: CommitReceipt,
    writes: Arc<WriteSet>,
}

/// Sequences one batch: checks each commit, hashes it into the next block, applies it to
/// derived state (uncommitted) and appends the batch to the journal (not synced). Failed
/// commits are answered here; `None` when no commit was accepted.
fn sequence_batch(
    core: &Core,
    sequencer: &mut Sequencer,
    batch: Vec<CommitRequest>,
) -> Option<Sequenced> {
    let sequenced = sequence_commits(core, sequencer, batch);
    if sequenced.is_none() {
        // Nothing to commit: release the PostgreSQL tip lock, if it was taken.
        if let Some(pg) = core.journal.shared() {
            pg.rollback();
        }
    }
    sequenced
}

fn sequence_commits(
    core: &Core,
    sequencer: &mut Sequencer,
    batch: Vec<CommitRequest>,
) -> Option<Sequenced> {
    // One look at the shared state per batch: the published conflict log is checked for every
    // commit under a single lock (committing threads take that lock too).
    if let Some(reason) = core.shared().poisoned.clone() {
        fail_all(
            batch.into_iter().map(|r| r.reply),
            &LedgerError::ReadOnly(reason),
        );
        return None;
    }
    if let Some(pg) = core.journal.shared() {
        // Lock the tip in PostgreSQL (held until the batch commits) and take in what other
        // servers committed since: the checks below then see their writes.
        let absorbed = pg
            .lock_tip(sequencer.next)
            // Their redactions were erased from PostgreSQL's journal by their committer.
            .and_then(|foreign| absorb(core, sequencer, foreign).map(drop));
        if let Err(e) = absorbed {
            pg.rollback();
            if matches!(e, LedgerError::Corrupted { .. }) {
                // PostgreSQL's chain is not the one this server's cache holds (blocks lost
                // in a failover, or a fork): the cache cannot serve; reopening rebuilds it
                // from PostgreSQL.
                tracing::error!(error = %e, "this server's view of the ledger disagrees with PostgreSQL");
                core.poison(e.to_string());
            }
            fail_all(batch.into_iter().map(|r| r.reply), &e);
            return None;
        }
    }
    let (logged, published) = {
        let shared = core.shared();
        let logged: Vec<Option<String>> = batch
            .iter()
            .map(|r| shared.log.check(r.commit.start, &r.commit.reads))
            .collect();
        (logged, shared.applied)
    };
    while sequencer
        .in_flight
        .front()
        .is_some_and(|(seq, _)| *seq < published)
    {
        sequencer.in_flight.pop_front();
    }
    // Most batches become a layer; the flusher thread writes layers to redb in the background.
    // A batch with DDL goes to redb directly (building an index reads the whole table), after
    // the running flush; so do batches that find layers due and no flusher.
    sequencer.layered.collect_flush(core, false);
    if sequencer.layered.layers.len() >= 2 * LAYERS_MAX
        || sequencer.layered.revisions >= 2 * LAYER_REVISIONS_MAX
    {
        // The flusher is behind: wait, so reads never look through unbounded layers.
        sequencer.layered.collect_flush(core, true);
    }
    let ddl = batch.iter().any(|r| !r.commit.catalog_changes.is_empty());
    if ddl {
        sequencer.layered.collect_flush(core, true);
    }
    let checkpoint = sequencer.layered.last_checkpoint.elapsed() >= STATE_CHECKPOINT_INTERVAL;
    let direct = ddl || (sequencer.layered.flusher.is_none() && sequencer.layered.flush_due());
    let mut sink = if direct {
        let writer = core
            .state
            .writer()
            .and_then(|mut w| w.write_layers(&sequencer.layered.layers).map(|()| w));
        match writer {
            Ok(writer) => Sink::Direct(Box::new(writer)),
            Err(e) => {
                fail_all(batch.into_iter().map(|r| r.reply), &e);
                return None;
            }
        }
    } else {
        Sink::Layered(Layer::default())
    };
    let undo = core.journal.shared().map(|_| Undo {
        catalog: sequencer.catalog.clone(),
        next: sequencer.next,
        previous_hash: sequencer.previous_hash,
        last_millis: sequencer.last_millis,
        layers: sequencer.layered.layers.clone(),
        revisions: sequencer.layered.revisions,
        in_flight: sequencer.in_flight.len(),
    });
    // Work on copies: a failure part-way leaves the sequencer as it was.
    let mut catalog = sequencer.catalog.clone();
    let (mut next, mut previous_hash, mut last_millis) = (
        sequencer.next,
        sequencer.previous_hash,
        sequencer.last_millis,
    );
    let mut accepted: Vec<Accepted> = Vec::with_capacity(batch.len());
    // The same commits' write sets, which later commits of the batch are checked against.
    let mut accepted_writes: Vec<Arc<WriteSet>> = Vec::with_capacity(batch.len());
    let mut payloads: Vec<Vec<u8>> = Vec::with_capacity(batch.len());
    let mut leaves: Vec<Hash> = Vec::with_capacity(batch.len());
    for (request, logged) in batch.into_iter().zip(logged) {
        let CommitRequest { commit, reply } = request;
        let earlier = Earlier {
            logged,
            published,
            in_flight: &sequencer.in_flight,
            batch: &accepted_writes,
        };
        if let Err(e) = check_commit(core, &commit, &catalog, earlier) {
            reply.send(Err(e));
            continue;
        }
        // The wall clock may step back; block times never do.
        last_millis = last_millis.max(commit.body.time_millis);
        let address = BlockAddress {
            strand_id: core.strand_id.clone(),
            sequence_no: next,
        };
        match build_and_apply(
            core,
            sink.as_dyn(),
            &mut catalog,
            &commit,
            Position {
                address: &address,
                time_millis: last_millis,
                previous_hash,
            },
            &mut sequencer.header_hasher,
        ) {
            Ok((hash, payload, writes)) => {
                payloads.push(payload);
                leaves.push(hash);
                previous_hash = Some(hash);
                next += 1;
                let receipt = CommitReceipt {
                    transaction_id: commit.transaction_id,
                    block_address: Some(address),
                };
                let writes = Arc::new(writes);
                accepted_writes.push(Arc::clone(&writes));
                accepted.push(Accepted {
                    reply,
                    receipt,
                    writes,
                });
            }
            Err(e) => {
                // Derived state is half-written for this batch: fail the batch, write nothing.
                reply.send(Err(e));
                fail_all(
                    accepted.into_iter().map(|a| a.reply),
                    &LedgerError::Storage("batch aborted".into()),
                );
                return None;
            }
        }
    }
    let last_hash = previous_hash.filter(|_| !accepted.is_empty())?;
    if let Sink::Direct(writer) = &mut sink {
        if let Err(e) = writer.set_applied(next, previous_hash) {
            fail_all(accepted.into_iter().map(|a| a.reply), &e);
            return None;
        }
    }
    let first = next - accepted.len() as u64;
    let blocks: Vec<(&[u8], Hash)> = payloads
        .iter()
        .map(Vec::as_slice)
        .zip(leaves.iter().copied())
        .collect();
    if let Err(e) = core.journal.append(first, &blocks) {
        // A failed file write may have left part of a frame; a failed PostgreSQL insert is
        // rolled back with its transaction.
        if core.journal.shared().is_none() {
            core.poison(format!("journal write failed: {e}"));
        }
        fail_all(accepted.into_iter().map(|a| a.reply), &e);
        return None;
    }
    for (offset, a) in accepted.iter().enumerate() {
        sequencer
            .in_flight
            .push_back((first + offset as u64, Arc::clone(&a.writes)));
    }
    let catalog_published = Arc::new(catalog.clone());
    (
        sequencer.catalog,
        sequencer.next,
        sequencer.previous_hash,
        sequencer.last_millis,
    ) = (catalog, next, previous_hash, last_millis);
    let state = match sink {
        Sink::Direct(writer) => {
            sequencer.layered.layers.clear();
            sequencer.layered.revisions = 0;
            StateUpdate::Direct { writer, checkpoint }
        }
        Sink::Layered(layer) => {
            sequencer.layered.revisions += layer.revisions();
            sequencer.layered.layers.push(Arc::new(layer));
            let snapshot = sequencer
                .layered
                .base
                .with_layers(sequencer.layered.layers.clone(), next);
            // A shared journal's batch may still be rolled back: its flush waits for the commit.
            if undo.is_none() && sequencer.layered.flush_due() {
                sequencer.layered.start_flush(false, (next, previous_hash));
            }
            StateUpdate::Layered(snapshot)
        }
    };
    Some(Sequenced {
        state,
        undo,
        published: Batch {
            end: next,
            last_hash,
            last_millis,
            catalog: catalog_published,
            leaves,
            accepted,
        },
    })
}

/// Commits a batch sequenced on a shared (PostgreSQL) journal: COMMIT, then publish and
/// acknowledge; or, when PostgreSQL did not commit it, undo it in the sequencer and fail its
/// transactions with a retryable error. A COMMIT whose answer was lost is settled by reading
/// the tip back; when even that fails, the outcome is unknown and the ledger is poisoned
/// (reopening it reads the truth from PostgreSQL).
fn commit_shared(core: &Core, sequencer: &mut Sequencer, sequenced: Sequenced) {
    let Sequenced {
        state,
        published: job,
        undo,
    } = sequenced;
    let pg = core.journal.shared().expect("called for a shared journal");
    // With the next batch waiting and no other server committing lately, lock the tip for it
    // in the COMMIT's round trip: one round trip per batch less.
    let synced = if core.pipeline.queued.load(Ordering::SeqCst) > 0 && !pg.contended() {
        pg.sync_and_relock(job.end)
    } else {
        pg.sync(job.end)
    };
    let committed = match synced {
        Ok(()) => Ok(()),
        Err(error) => match settle_lost_commit(pg, job.end, job.last_hash) {
            Ok(true) => {
                pg.saw(job.end);
                Ok(())
            }
            Ok(false) => Err(error),
            Err(e) => Err(unknown_outcome(core, &e)),
        },
    };
    match committed {
        Ok(()) => {
            let snapshot = state.finish(core, sequencer, true);
            publish(core, job, snapshot);
            if sequencer.layered.flush_due() {
                sequencer
                    .layered
                    .start_flush(false, (sequencer.next, sequencer.previous_hash));
            }
        }
        Err(error) => {
            if let Some(undo) = undo {
                drop(state);
                sequencer.catalog = undo.catalog;
                sequencer.next = undo.next;
                sequencer.previous_hash = undo.previous_hash;
                sequencer.last_millis = undo.last_millis;
                sequencer.layered.layers = undo.layers;
                sequencer.layered.revisions = undo.revisions;
                sequencer.in_flight.truncate(undo.in_flight);
            }
            fail_all(job.accepted.into_iter().map(|a| a.reply), &error);
        }
    }
}

/// How long a COMMIT whose answer was lost may take to settle: long enough for a failover to
/// a standby (the new primary then tells), short enough that the ledger does not wait forever.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the batch ending at block `end` (last hash `last_hash`) was committed, read back
/// from PostgreSQL, retrying while it cannot be reached (the server restarting, or its
/// standby being promoted). No other commit of this server can proceed meanwhile: its blocks
/// would chain on an unknown tip.
fn settle_lost_commit(
    pg: &crate::journal::postgres::PgJournal,
    end: u64,
    last_hash: Hash,
) -> Result<bool> {
    crate::retry_while_unavailable(
        "cannot read back a PostgreSQL commit whose answer was lost",
        SETTLE_TIMEOUT,
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(1),
        || {
            let (blocks, _) = pg.committed_tip()?;
            Ok(blocks >= end && pg.hashes(end - 1, end)? == [last_hash])
        },
    )
}

fn unknown_outcome(core: &Core, error: &LedgerError) -> LedgerError {
    let reason = format!("the outcome of a PostgreSQL COMMIT is unknown: {error}");
    core.poison(reason.clone());
    LedgerError::ReadOnly(reason)
}

/// Applies blocks other servers committed to a shared journal, and publishes them: they are
/// durable already, and later commits here are checked against their writes. They go to redb
/// directly (with the layers before them), which reads back the data each revision replaces.
fn absorb(
    core: &Core,
    sequencer: &mut Sequencer,
    blocks: Vec<(u64, Vec<u8>)>,
) -> Result<Vec<RedactionRequest>> {
    let mut redactions = Vec::new();
    if blocks.is_empty() {
        return Ok(redactions);
    }
    sequencer.layered.collect_flush(core, true);
    let mut writer = core.state.writer()?;
    writer.write_layers(&sequencer.layered.layers)?;
    let mut catalog = sequencer.catalog.clone();
    let (mut next, mut previous_hash, mut last_millis) = (
        sequencer.next,
        sequencer.previous_hash,
        sequencer.last_millis,
    );
    let mut logged = Vec::with_capacity(blocks.len());
    let mut leaves = Vec::with_capacity(blocks.len());
    for (sequence_no, payload) in &blocks {
        let address = BlockAddress {
            strand_id: core.strand_id.clone(),
            sequence_no: *sequence_no,
        };
        let decoded = crate::block::decode_payload(payload, &address)?;
        if *sequence_no != next || decoded.previous_hash != previous_hash {
            return Err(crate::block::corrupt(
                &address,
                "a block another server committed does not continue this server's chain",
            ));
        }
        redactions.extend(
            decoded
                .catalog_changes
                .iter()
                .filter_map(|change| match change {
                    CatalogChange::RedactRevision(request) => Some(request.clone()),
                    _ => None,
                }),
        );
        let rows = super::build::replayed_rows(&decoded);
        let writes = super::build::apply_block(
            &mut writer,
            &mut catalog,
            &core.options.limits,
            &decoded.catalog_changes,
            &rows,
        )?;
        logged.push((next, Arc::new(writes)));
        leaves.push(decoded.hash);
        previous_hash = Some(decoded.hash);
        last_millis = last_millis.max(decoded.time_millis);
        next += 1;
    }
    writer.set_applied(next, previous_hash)?;
    writer.commit(false)?;
    let base = core.state.snapshot()?;
    core.tree.push_leaves(&leaves)?;
    let layered = &mut sequencer.layered;
    layered.base = base.clone();
    layered.layers.clear();
    layered.revisions = 0;
    sequencer.catalog = catalog.clone();
    sequencer.next = next;
    sequencer.previous_hash = previous_hash;
    sequencer.last_millis = last_millis;
    let mut shared = core.shared_mut();
    shared.snapshot = Arc::new(base);
    for (sequence_no, writes) in logged {
        shared.log.push(sequence_no, writes);
    }
    shared.applied = next;
    shared.catalog = Arc::new(catalog);
    shared.last_hash = previous_hash;
    shared.last_millis = last_millis;
    // Only now, with their writes in the conflict log and the lock still held: `catch_up`
    // skips reading blocks below `len`, so a read-only transaction validated in between would
    // be checked against a log without them (a stale read accepted).
    if let Some(pg) = core.journal.shared() {
        pg.saw(next);
    }
    Ok(redactions)
}

/// See [`crate::Ledger::append_verified`]: checks the blocks under the sequencer lock (so
/// nothing else is sequenced meanwhile), appends and syncs those before the first refused
/// one, then takes them in as blocks another server committed are taken in. Returns the
/// redactions the appended blocks request, and the refusal of the first block refused.
pub fn append_verified(
    core: &Core,
    blocks: &[(&[u8], Hash)],
) -> Result<(Vec<RedactionRequest>, Option<LedgerError>)> {
    if core.journal.shared().is_some() {
        return Err(LedgerError::InvalidInput(
            "blocks verified elsewhere are appended only to a ledger in files".into(),
        ));
    }
    let mut sequencer = core.pipeline.sequencer();
    // A batch handed to the syncer would be published after these blocks, over them.
    if core.pipeline.syncing.load(Ordering::SeqCst) != 0 {
        return Err(LedgerError::Unavailable(
            "a commit of this ledger is in flight".into(),
        ));
    }
    if let Some(reason) = core.shared().poisoned.clone() {
        return Err(LedgerError::ReadOnly(reason));
    }
    let first = sequencer.next;
    let mut previous = sequencer.previous_hash;
    let mut refused = None;
    for (offset, (payload, expected)) in blocks.iter().enumerate() {
        let address = BlockAddress {
            strand_id: core.strand_id.clone(),
            sequence_no: first + offset as u64,
        };
        match crate::import::check_payload(payload, &address, previous, *expected) {
            Ok(hash) => previous = Some(hash),
            Err(error) => {
                refused = Some((offset, error));
                break;
            }
        }
    }
    let (blocks, refused) = match refused {
        Some((offset, error)) => (&blocks[..offset], Some(error)),
        None => (blocks, None),
    };
    if blocks.is_empty() {
        return Ok((Vec::new(), refused));
    }
    let redactions = append_checked(core, &mut sequencer, first, blocks)?;
    Ok((redactions, refused))
}

/// Appends blocks [`append_verified`] checked, makes them durable and takes them in.
fn append_checked(
    core: &Core,
    sequencer: &mut Sequencer,
    first: u64,
    blocks: &[(&[u8], Hash)],
) -> Result<Vec<RedactionRequest>> {
    let end = core.journal.append(first, blocks)?;
    if let Err(e) = core.journal.sync(end) {
        core.poison(format!("journal sync failed: {e}"));
        return Err(e);
    }
    let appended = blocks
        .iter()
        .enumerate()
        .map(|(offset, (payload, _))| (first + offset as u64, payload.to_vec()))
        .collect();
    absorb(core, sequencer, appended).inspect_err(|e| {
        // The journal has the blocks; derived state is rebuilt from it on open.
        core.poison(format!("derived state update failed: {e}"));
    })
}

/// On an idle server of a shared journal: takes in what other servers committed, so new
/// transactions here read it.
fn absorb_while_idle(core: &Core, sequencer: &mut Sequencer) {
    if let Err(error) = absorb_committed(core, sequencer, None) {
        tracing::warn!(%error, "cannot read blocks other servers committed");
    }
}

/// Takes in blocks other servers committed up to `tip` (read from PostgreSQL when `None`).
fn absorb_committed(core: &Core, sequencer: &mut Sequencer, tip: Option<u64>) -> Result<()> {
    let Some(pg) = core.journal.shared() else {
        return Ok(());
    };
    let blocks = match tip {
        Some(tip) => tip,
        None => pg.committed_tip()?.0,
    };
    if blocks <= sequencer.next {
        return Ok(());
    }
    let foreign = pg.fetch(sequencer.next, blocks)?;
    absorb(core, sequencer, foreign).map(drop)
}

/// Before a transaction begins on a shared journal: publishes every block committed in
/// PostgreSQL so far, so a transaction never reads older data than a commit acknowledged
/// (by any server) before it began. One query when nothing is new.
pub fn catch_up(core: &Core) -> Result<()> {
    let Some(pg) = core.journal.shared() else {
        return Ok(());
    };
    let tip = pg.fresh_tip()?;
    // `pg.len()` counts this server's own committed batches too, before they are published:
    // waiting for those would hold every new transaction behind the batch in flight.
    if tip <= pg.len() {
        return Ok(());
    }
    let mut sequencer = core.pipeline.sequencer();
    absorb_committed(core, &mut sequencer, Some(tip))
}

/// The syncer thread: fsync, publish, acknowledge, one batch after the other.
fn sync_loop(core: &Core, jobs: Receiver<SyncJob>) {
    while let Ok(SyncJob { job, snapshot }) = jobs.recv() {
        let synced = sync_journal(core, job.end);
        let snapshot = snapshot
            .recv()
            .unwrap_or_else(|_| Err(LedgerError::Storage("sequencer stopped".into())));
        match synced {
            Ok(()) => publish(core, job, snapshot),
            Err(e) => fail_all(job.accepted.into_iter().map(|a| a.reply), &e),
        }
        core.pipeline.syncing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes every appended block (up to `end`) durable, or poisons the ledger.
fn sync_journal(core: &Core, end: u64) -> Result<()> {
    let synced = match core.shared().poisoned.clone() {
        Some(reason) => Err(LedgerError::ReadOnly(reason)),
        None => core.journal.sync(end),
    };
    if let Err(e) = &synced {
        core.poison(format!("journal sync failed: {e}"));
    }
    synced
}

/// Publishes a durable batch (new transactions see it) and acknowledges it. Batches are
/// published in sequence order: by the syncer in the order they were handed to it, or by a
/// lone committer when no batch is waiting.
fn publish(core: &Core, job: Batch, snapshot: Result<Snapshot>) {
    // Durable from here on: every outcome below acknowledges the batch.
    if let Err(e) = core.tree.push_leaves(&job.leaves) {
        core.poison(format!("digest tree write failed: {e}"));
    }
    {
        let mut shared = core.shared_mut();
        match snapshot {
            Ok(snapshot) => shared.snapshot = Arc::new(snapshot),
            // The journal has the batch; derived state is rebuilt from it on open.
            Err(e) => {
                shared
                    .poisoned
                    .get_or_insert(format!("derived state commit failed: {e}"));
            }
        }
        let first = job.end - job.accepted.len() as u64;
        for (offset, a) in job.accepted.iter().enumerate() {
            shared
                .log
                .push(first + offset as u64, Arc::clone(&a.writes));
        }
        shared.applied = job.end;
        shared.catalog = job.catalog;
        shared.last_hash = Some(job.last_hash);
        shared.last_millis = job.last_millis;
    }
    for a in job.accepted {
        a.reply.send(Ok(a.receipt));
    }
}

fn fail_all(replies: impl Iterator<Item = Reply>, error: &LedgerError) {
    for reply in replies {
        // Each reply gets its own copy; a retryable error stays retryable.
        let copy = match error {
            LedgerError::Unavailable(m) => LedgerError::Unavailable(m.clone()),
            LedgerError::ReadOnly(m) => LedgerError::ReadOnly(m.clone()),
            LedgerError::UnknownLedger(m) => LedgerError::UnknownLedger(m.clone()),
            other => LedgerError::Storage(other.to_string()),
        };
        reply.send(Err(copy));
    }
}
