//! Stream records read blocks from the journal: after REDACT_REVISION, a redacted revision's
//! `REVISION_DETAILS` carries `dataHash` and no `data`, and the redacting block's
//! `BLOCK_SUMMARY` carries QLDB's `redactionInfo`.

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_stream::record::{block_records, RecordType};

const ARN: &str = "arn:aws:qldb:us-east-1:000000000000:stream/redaction/IiPT4brpZCqCq3f4MTHbYy";

fn payload(record: &[u8]) -> Element {
    let envelope = Element::read_one(record).unwrap();
    envelope
        .as_struct()
        .unwrap()
        .get("payload")
        .unwrap()
        .clone()
}

#[test]
fn redacted_revisions_stream_with_data_hash() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "redaction", LedgerOptions::default()).unwrap();
    let secret = Element::read_one(r#"{Name: "stream-secret-3a9"}"#).unwrap();
    let (table_id, id) = ledger
        .transact(|tx| {
            Ok((
                tx.create_table("Person", None)?,
                tx.insert("Person", secret.clone())?,
            ))
        })
        .unwrap();
    let other = Element::read_one(r#"{Name: "public"}"#).unwrap();
    ledger
        .transact(|tx| tx.update("Person", &id, other.clone()))
        .unwrap();
    let old = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap()[0]
        .block_address
        .clone();
    let mut tx = ledger.begin().unwrap();
    tx.redact_revision(&old, &table_id, &id).unwrap();
    let redacting = tx.commit().unwrap().block_address.unwrap();

    let records = block_records(ARN, &ledger.block(old.sequence_no).unwrap()).unwrap();
    let [summary, details] = records.as_slice() else {
        panic!("one summary and one revision: {records:?}");
    };
    assert_eq!(summary.record_type, RecordType::BlockSummary);
    assert_eq!(details.record_type, RecordType::RevisionDetails);
    let revision = payload(&details.ion);
    let revision = revision.as_struct().unwrap().get("revision").unwrap();
    let revision = revision.as_struct().unwrap();
    assert!(revision.get("data").is_none());
    assert_eq!(
        revision.get("dataHash").and_then(Element::as_blob),
        Some(quill_verify::ion_hash(&secret).as_bytes().as_slice())
    );

    let records = block_records(ARN, &ledger.block(redacting.sequence_no).unwrap()).unwrap();
    let summary = payload(&records[0].ion);
    let info = summary.as_struct().unwrap().get("redactionInfo").unwrap();
    let [entry] = info
        .as_struct()
        .unwrap()
        .get("revisions")
        .unwrap()
        .as_sequence()
        .unwrap()
        .elements()
        .collect::<Vec<_>>()[..]
    else {
        panic!("one redaction: {info}");
    };
    assert_eq!(
        entry
            .as_struct()
            .unwrap()
            .get("documentId")
            .and_then(Element::as_text),
        Some(id.as_str())
    );
}
