//! The delivery worker against a real ledger and an in-memory sink that can be made to fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_stream::{
    BoxFuture, Cursor, RecordType, Sink, SinkError, StreamConfig, StreamHandle, StreamRecord,
    StreamStatus, Worker, WorkerOptions,
};

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

#[derive(Clone, Default)]
struct MemorySink {
    records: Arc<Mutex<Vec<StreamRecord>>>,
    failing: Arc<AtomicBool>,
}

impl Sink for MemorySink {
    fn deliver<'a>(
        &'a mut self,
        records: &'a [StreamRecord],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err(SinkError::transient("target down"));
            }
            self.records.lock().unwrap().extend_from_slice(records);
            Ok(())
        })
    }
}

impl MemorySink {
    fn decoded(&self) -> Vec<Element> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| Element::read_one(&r.ion).unwrap())
            .collect()
    }
}

const ARN: &str = "arn:aws:qldb:us-east-1:000000000000:stream/test-ledger/IiPT4brpZCqCq3f4MTHbYy";

fn config(start: i64, end: Option<i64>) -> StreamConfig {
    StreamConfig {
        stream_id: "IiPT4brpZCqCq3f4MTHbYy".into(),
        stream_arn: ARN.into(),
        inclusive_start_millis: start,
        exclusive_end_millis: end,
    }
}

fn options() -> WorkerOptions {
    WorkerOptions {
        poll_interval: Duration::from_millis(5),
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        max_blocks_per_batch: 3,
        end_grace: Duration::from_millis(50),
        cursor_interval: Duration::from_millis(20),
    }
}

/// A ledger with a table and a document inserted, updated and deleted (one block each).
fn ledger_with_history(dir: &std::path::Path) -> (Ledger, String) {
    let ledger =
        Ledger::create(&dir.join("ledger"), "test-ledger", LedgerOptions::default()).unwrap();
    let id = ledger
        .transact(|tx| {
            tx.create_table("Vehicle", None)?;
            tx.record_statement("INSERT INTO Vehicle ?", &[ion("{VIN: \"A\", Year: 2011}")])?;
            tx.insert("Vehicle", ion("{VIN: \"A\", Year: 2011}"))
        })
        .unwrap();
    ledger
        .transact(|tx| {
            tx.record_statement("UPDATE Vehicle SET Year = 2012", &[])?;
            tx.update("Vehicle", &id, ion("{VIN: \"A\", Year: 2012}"))
        })
        .unwrap();
    ledger
        .transact(|tx| {
            tx.record_statement("DELETE FROM Vehicle", &[])?;
            tx.delete("Vehicle", &id)
        })
        .unwrap();
    (ledger, id)
}

fn field<'a>(e: &'a Element, name: &str) -> &'a Element {
    e.as_struct()
        .unwrap()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {e}"))
}

fn block_millis(ledger: &Ledger, sequence_no: u64) -> i64 {
    let block = ledger.block(sequence_no).unwrap();
    quill_ledger::millis_from_timestamp(&field(&block, "blockTimestamp").as_timestamp().unwrap())
}

fn text<'a>(e: &'a Element, name: &str) -> &'a str {
    field(e, name).as_text().unwrap()
}

async fn wait_until(handle: &StreamHandle, what: &str, done: impl Fn(&StreamHandle) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(handle) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            handle.progress()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn history_is_streamed_as_qldb_records_and_the_end_time_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, id) = ledger_with_history(dir.path());
    let tip = ledger.digest().tip.sequence_no;
    let sink = MemorySink::default();
    let end = block_millis(&ledger, tip) + 1;
    let (worker, handle) = Worker::new(
        config(0, Some(end)),
        ledger.clone(),
        Cursor::new(dir.path().join("cursor.json")),
        Box::new(sink.clone()),
        options(),
    );
    assert_eq!(worker.run().await.unwrap(), StreamStatus::Completed);
    assert_eq!(handle.progress().status, StreamStatus::Completed);

    let records = sink.decoded();
    for r in &records {
        assert_eq!(text(r, "qldbStreamArn"), ARN);
    }
    let kinds: Vec<&str> = records.iter().map(|r| text(r, "recordType")).collect();
    assert_eq!(kinds.first(), Some(&"CONTROL"));
    assert_eq!(
        text(field(&records[0], "payload"), "controlRecordType"),
        "CREATED"
    );
    let last = records.last().unwrap();
    assert_eq!(
        text(field(last, "payload"), "controlRecordType"),
        "COMPLETED"
    );

    let summaries: Vec<&Element> = records
        .iter()
        .filter(|r| text(r, "recordType") == "BLOCK_SUMMARY")
        .map(|r| field(r, "payload"))
        .collect();
    assert_eq!(summaries.len() as u64, tip + 1, "one summary per block");
    for (seq, summary) in summaries.iter().enumerate() {
        let block = ledger.block(seq as u64).unwrap();
        assert_eq!(field(summary, "blockHash"), field(&block, "blockHash"));
        assert_eq!(
            field(summary, "blockAddress"),
            field(&block, "blockAddress")
        );
        assert!(summary.as_struct().unwrap().get("revisions").is_none());
        assert!(summary.as_struct().unwrap().get("catalogChanges").is_none());
    }

    let details: Vec<&Element> = records
        .iter()
        .filter(|r| text(r, "recordType") == "REVISION_DETAILS")
        .map(|r| field(r, "payload"))
        .collect();
    let mine: Vec<&&Element> = details
        .iter()
        .filter(|d| text(field(field(d, "revision"), "metadata"), "id") == id)
        .collect();
    assert_eq!(mine.len(), 3, "insert, update and delete revisions");
    for (version, detail) in mine.iter().enumerate() {
        assert_eq!(text(field(detail, "tableInfo"), "tableName"), "Vehicle");
        let revision = field(detail, "revision");
        let metadata = field(revision, "metadata");
        assert_eq!(field(metadata, "version").as_i64(), Some(version as i64));
        let seq = field(field(revision, "blockAddress"), "sequenceNo")
            .as_i64()
            .unwrap() as u64;
        let stored = ledger.revision(seq, &id).unwrap();
        assert_eq!(
            field(revision, "hash").as_blob(),
            Some(stored.hash.as_bytes().as_slice())
        );
        // Summary of that block lists the revision with the same hash.
        let listed = field(summaries[seq as usize], "revisionSummaries")
            .as_sequence()
            .unwrap()
            .elements()
            .any(|s| text(s, "documentId") == id && field(s, "hash") == field(revision, "hash"));
        assert!(listed);
    }
    let deletion = field(mine[2], "revision");
    assert!(deletion.as_struct().unwrap().get("data").is_none());
    // Revisions follow their block's summary, in block order.
    let sequence: Vec<u64> = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.block_sequence_no)
        .collect();
    assert!(sequence.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn blocks_before_the_start_time_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = ledger_with_history(dir.path());
    let tip = ledger.digest().tip.sequence_no;
    let start = block_millis(&ledger, tip);
    let sink = MemorySink::default();
    let (worker, handle) = Worker::new(
        config(start, None),
        ledger.clone(),
        Cursor::new(dir.path().join("cursor.json")),
        Box::new(sink.clone()),
        options(),
    );
    let task = tokio::spawn(worker.run());
    wait_until(&handle, "the tip", |h| {
        h.progress().last_delivered_block == Some(tip)
    })
    .await;
    handle.cancel();
    assert_eq!(task.await.unwrap().unwrap(), StreamStatus::Canceled);
    let blocks: Vec<u64> = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.record_type == RecordType::BlockSummary)
        .filter_map(|r| r.block_sequence_no)
        .collect();
    assert!(!blocks.is_empty());
    assert!(blocks.iter().all(|b| block_millis(&ledger, *b) >= start));
    assert!(
        !blocks.contains(&0),
        "the ledger's first block predates the start"
    );
}

#[tokio::test]
async fn a_failing_target_impairs_the_stream_which_catches_up_and_cancels_without_completed() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = ledger_with_history(dir.path());
    let sink = MemorySink::default();
    let cursor = Cursor::new(dir.path().join("cursor.json"));
    let (worker, handle) = Worker::new(
        config(0, None),
        ledger.clone(),
        cursor.clone(),
        Box::new(sink.clone()),
        options(),
    );
    let task = tokio::spawn(worker.run());
    let tip = ledger.digest().tip.sequence_no;
    wait_until(&handle, "history", |h| {
        h.progress().last_delivered_block == Some(tip)
    })
    .await;

    sink.failing.store(true, Ordering::SeqCst);
    let started = Instant::now();
    for n in 0..20 {
        ledger
            .transact(|tx| tx.insert("Vehicle", ion(&format!("{{n: {n}}}"))))
            .unwrap();
    }
    let commit_time = started.elapsed();
    wait_until(&handle, "IMPAIRED", |h| {
        h.progress().status == StreamStatus::Impaired
    })
    .await;
    assert!(handle.progress().last_error.is_some());
    assert!(handle.progress().blocks_behind > 0);
    assert!(
        commit_time < Duration::from_secs(5),
        "commits did not wait: {commit_time:?}"
    );

    sink.failing.store(false, Ordering::SeqCst);
    let tip = ledger.digest().tip.sequence_no;
    wait_until(&handle, "catch-up", |h| {
        let p = h.progress();
        p.status == StreamStatus::Active && p.last_delivered_block == Some(tip)
    })
    .await;
    assert_eq!(handle.progress().blocks_behind, 0);
    handle.cancel();
    assert_eq!(task.await.unwrap().unwrap(), StreamStatus::Canceled);
    assert_eq!(handle.progress().status, StreamStatus::Canceled);

    let summaries: Vec<u64> = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.record_type == RecordType::BlockSummary)
        .filter_map(|r| r.block_sequence_no)
        .collect();
    assert_eq!(
        summaries,
        (0..=tip).collect::<Vec<_>>(),
        "every block once, in order"
    );
    let controls = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.record_type == RecordType::Control)
        .count();
    assert_eq!(
        controls, 1,
        "CREATED only: a cancelled stream writes no COMPLETED"
    );
    assert_eq!(cursor.load().unwrap().last_block, Some(tip));
}

#[tokio::test]
async fn a_restarted_worker_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = ledger_with_history(dir.path());
    let cursor = Cursor::new(dir.path().join("cursor.json"));
    let first = MemorySink::default();
    let (worker, handle) = Worker::new(
        config(0, None),
        ledger.clone(),
        cursor.clone(),
        Box::new(first.clone()),
        options(),
    );
    let task = tokio::spawn(worker.run());
    let tip = ledger.digest().tip.sequence_no;
    wait_until(&handle, "history", |h| {
        h.progress().last_delivered_block == Some(tip)
    })
    .await;
    handle.cancel();
    task.await.unwrap().unwrap();

    ledger
        .transact(|tx| tx.insert("Vehicle", ion("{after: true}")))
        .unwrap();
    let second = MemorySink::default();
    let (worker, handle) = Worker::new(
        config(0, None),
        ledger.clone(),
        cursor,
        Box::new(second.clone()),
        options(),
    );
    let task = tokio::spawn(worker.run());
    wait_until(&handle, "the new block", |h| {
        h.progress().last_delivered_block == Some(tip + 1)
    })
    .await;
    handle.cancel();
    task.await.unwrap().unwrap();
    let resent: Vec<(RecordType, Option<u64>)> = second
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.record_type, r.block_sequence_no))
        .collect();
    assert_eq!(
        resent,
        vec![
            (RecordType::BlockSummary, Some(tip + 1)),
            (RecordType::RevisionDetails, Some(tip + 1))
        ],
        "no second CREATED, nothing already delivered"
    );
}
