//! An export made after REDACT_REVISION reads the erased journal: the redacted revision
//! carries `dataHash` and not the value, the redacting block carries `redactionInfo`, and the
//! export still verifies block by block and along the chain.

use std::fs;
use std::path::Path;

use ion_rs::Element;
use quill_export::engine::new_export_id;
use quill_export::verify::{completed_manifests, verify_export};
use quill_export::{run_export, write_started_manifest, DirSink, ExportOptions, ExportSpec};
use quill_ledger::{Ledger, LedgerOptions};

const MARKER: &str = "export-redaction-marker-e21";

fn files_containing(dir: &Path, needle: &[u8]) -> usize {
    let mut found = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found += 1;
            }
        }
    }
    found
}

#[test]
fn exports_after_a_redaction_hold_the_data_hash_only() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "redacted", LedgerOptions::default()).unwrap();
    let secret = Element::read_one(format!("{{Name: \"{MARKER}\"}}").as_bytes()).unwrap();
    let (table_id, id) = ledger
        .transact(|tx| {
            Ok((
                tx.create_table("Person", None)?,
                tx.insert("Person", secret.clone())?,
            ))
        })
        .unwrap();
    ledger
        .transact(|tx| tx.update("Person", &id, Element::read_one("{Name: \"x\"}").unwrap()))
        .unwrap();
    let old = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap()[0]
        .block_address
        .clone();
    let mut tx = ledger.begin().unwrap();
    tx.redact_revision(&old, &table_id, &id).unwrap();
    tx.commit().unwrap();

    let out = tempfile::tempdir().unwrap();
    let sink = DirSink::new(out.path()).unwrap();
    let spec = ExportSpec {
        ledger_name: "redacted".into(),
        export_id: new_export_id(),
        inclusive_start_millis: 0,
        exclusive_end_millis: 7_258_118_400_000,
        bucket: "local".into(),
        prefix: "exports/".into(),
        object_encryption_type: "NO_ENCRYPTION".into(),
        output_format: None,
    };
    write_started_manifest(&spec, &sink).unwrap();
    let summary = run_export(
        &ledger,
        &spec,
        ExportOptions::default(),
        &sink,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(files_containing(out.path(), MARKER.as_bytes()), 0);
    let manifests = completed_manifests(out.path()).unwrap();
    let verified = verify_export(out.path(), &manifests[0]).unwrap();
    assert_eq!(verified.blocks, ledger.digest().tip.sequence_no + 1);

    let blocks: Vec<Element> = summary
        .keys
        .iter()
        .flat_map(|key| Element::read_all(fs::read(out.path().join(key)).unwrap()).unwrap())
        .collect();
    let field = |block: &Element, name: &str| block.as_struct().unwrap().get(name).cloned();
    let redacted = &blocks[old.sequence_no as usize];
    let revision = field(redacted, "revisions").unwrap();
    let revision = revision.as_sequence().unwrap().get(0).unwrap().clone();
    assert!(field(&revision, "data").is_none());
    assert_eq!(
        field(&revision, "dataHash").unwrap().as_blob(),
        Some(quill_verify::ion_hash(&secret).as_bytes().as_slice())
    );
    assert!(field(blocks.last().unwrap(), "redactionInfo").is_some());
}
