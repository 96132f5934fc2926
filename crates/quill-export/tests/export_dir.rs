//! Exports a real ledger to a directory in every format and re-verifies what was written:
//! object names against their contents, every block's hashes (quill-verify) and the chain.

use std::fs;
use std::path::Path;

use base64::Engine as _;
use ion_rs::Element;
use quill_export::engine::{block_range, new_export_id};
use quill_export::format::to_json;
use quill_export::verify::{completed_manifests, verify_export};
use quill_export::{
    run_export, write_started_manifest, DirSink, ExportOptions, ExportSpec, OutputFormat,
};
use quill_ledger::{Ledger, LedgerOptions};
use quill_verify::{dot, Hash};

const BLOCKS: u64 = 1_050;

fn ledger_with_blocks(dir: &Path) -> Ledger {
    let ledger = Ledger::create(dir, "vehicles", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| tx.create_table("Vehicle", None))
        .unwrap();
    while ledger.digest().tip.sequence_no + 1 < BLOCKS {
        let n = ledger.digest().tip.sequence_no;
        let doc = format!(r#"{{VIN: "V{n}", Owner: {{Name: "}} {{", Note: "o"}}, Price: 12.50}}"#);
        ledger
            .transact(|tx| tx.insert("Vehicle", Element::read_one(doc.as_bytes()).unwrap()))
            .unwrap();
    }
    ledger
}

fn spec(format: Option<OutputFormat>, start: i64, end: i64) -> ExportSpec {
    ExportSpec {
        ledger_name: "vehicles".into(),
        export_id: new_export_id(),
        inclusive_start_millis: start,
        exclusive_end_millis: end,
        bucket: "local".into(),
        prefix: "exports/run1".into(),
        object_encryption_type: "NO_ENCRYPTION".into(),
        output_format: format,
    }
}

fn read_values(format: OutputFormat, bytes: &[u8]) -> Vec<Element> {
    match format {
        OutputFormat::Json => panic!("JSON objects are not Ion"),
        _ => Element::read_all(bytes).unwrap().into_iter().collect(),
    }
}

fn hash_field(block: &Element, name: &str) -> Option<Hash> {
    let bytes = block.as_struct()?.get(name)?.as_blob()?;
    Some(Hash(bytes.try_into().unwrap()))
}

fn b64_hash(value: &serde_json::Value) -> Option<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str()?)
        .unwrap();
    Some(Hash(bytes.try_into().unwrap()))
}

/// Reads an export back as QLDB's readers do: the completed manifest's keys in order, each
/// object's name against its first and last block. Returns the blocks' sequence numbers.
fn check_export(root: &Path, spec: &ExportSpec, ledger: &Ledger) -> Vec<u64> {
    let format = spec.format();
    let started = fs::read(root.join(spec.started_manifest_key())).unwrap();
    let completed_key = spec.completed_manifest_key(ledger.strand_id());
    let completed = fs::read(root.join(&completed_key)).unwrap();
    let keys: Vec<String> = match format {
        OutputFormat::Json => {
            let started: serde_json::Value = serde_json::from_slice(&started).unwrap();
            assert_eq!(started["exportId"], spec.export_id.as_str());
            assert_eq!(started["outputFormat"], "JSON");
            let manifest: serde_json::Value = serde_json::from_slice(&completed).unwrap();
            manifest["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect()
        }
        _ => {
            let started = Element::read_one(started).unwrap();
            let started = started.as_struct().unwrap();
            assert_eq!(
                started.get("exportId").and_then(Element::as_string),
                Some(spec.export_id.as_str())
            );
            assert_eq!(
                started.get("outputFormat").and_then(Element::as_string),
                spec.output_format.map(OutputFormat::name)
            );
            let manifest = Element::read_one(completed).unwrap();
            manifest
                .as_struct()
                .unwrap()
                .get("keys")
                .and_then(Element::as_sequence)
                .unwrap()
                .elements()
                .map(|k| k.as_string().unwrap().to_owned())
                .collect()
        }
    };
    let mut sequence = Vec::new();
    let mut previous: Option<Hash> = None;
    for key in &keys {
        assert!(
            key.starts_with(&format!("exports/run1/{}/", spec.export_id)),
            "{key}"
        );
        let name = key.rsplit('/').next().unwrap();
        let (strand, rest) = name.split_once('.').unwrap();
        assert_eq!(strand, ledger.strand_id());
        let (range, extension) = rest.split_once('.').unwrap();
        assert_eq!(extension, format.extension());
        let (first, last) = range.split_once('-').unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        let bytes = fs::read(root.join(key)).unwrap();
        let mut seqs = Vec::new();
        match format {
            OutputFormat::Json => {
                for line in std::str::from_utf8(&bytes).unwrap().lines() {
                    let block: serde_json::Value = serde_json::from_str(line).unwrap();
                    let seq = block["blockAddress"]["sequenceNo"].as_u64().unwrap();
                    assert_eq!(block, to_json(&ledger.block(seq).unwrap()));
                    // Ion hashes cannot be recomputed from JSON; the chain can.
                    let entries = b64_hash(&block["entriesHash"]).unwrap();
                    let claimed_previous = b64_hash(&block["previousBlockHash"]);
                    assert_eq!(claimed_previous, previous);
                    let expected = claimed_previous.map_or(entries, |p| dot(&entries, &p));
                    assert_eq!(b64_hash(&block["blockHash"]), Some(expected));
                    previous = Some(expected);
                    seqs.push(seq);
                }
            }
            _ => {
                if format == OutputFormat::IonText {
                    // The AWS DMV Python reader splits objects on "} {" (the documents hold
                    // that text too, in a string).
                    let text = std::str::from_utf8(&bytes).unwrap();
                    let pieces = text.split("} {").count() as u64;
                    assert_eq!(pieces, last - first + 1, "{key}");
                }
                for block in read_values(format, &bytes) {
                    let hash = quill_verify::verify_quill_block(&block).unwrap();
                    assert_eq!(hash_field(&block, "previousBlockHash"), previous);
                    previous = Some(hash);
                    let address = block.as_struct().unwrap().get("blockAddress").unwrap();
                    let seq = address.as_struct().unwrap().get("sequenceNo").unwrap();
                    let seq = seq.as_i64().unwrap() as u64;
                    assert_eq!(block, ledger.block(seq).unwrap());
                    seqs.push(seq);
                }
            }
        }
        assert_eq!((seqs[0], *seqs.last().unwrap()), (first, last), "{key}");
        sequence.extend(seqs);
    }
    sequence
}

#[test]
fn whole_journal_in_every_format_reverifies() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with_blocks(&dir.path().join("ledger"));
    for format in [
        None,
        Some(OutputFormat::IonText),
        Some(OutputFormat::IonBinary),
        Some(OutputFormat::Json),
    ] {
        let out = tempfile::tempdir().unwrap();
        let sink = DirSink::new(out.path()).unwrap();
        // Year 2200: after every block.
        let spec = spec(format, 0, 7_258_118_400_000);
        write_started_manifest(&spec, &sink).unwrap();
        let mut last_progress = (0, 0);
        let summary = run_export(
            &ledger,
            &spec,
            ExportOptions {
                max_object_bytes: 64 << 10,
            },
            &sink,
            &mut |done, total| last_progress = (done, total),
        )
        .unwrap();
        assert_eq!(summary.blocks, BLOCKS);
        assert_eq!(last_progress, (BLOCKS, BLOCKS));
        assert!(summary.keys.len() > 3, "{format:?}: {:?}", summary.keys);
        let sequence = check_export(out.path(), &spec, &ledger);
        assert_eq!(sequence, (0..BLOCKS).collect::<Vec<_>>(), "{format:?}");

        let manifests = completed_manifests(out.path()).unwrap();
        assert_eq!(manifests.len(), 1);
        let verified = verify_export(out.path(), &manifests[0]).unwrap();
        assert_eq!(verified.blocks, BLOCKS);
        assert_eq!(verified.range, Some((0, BLOCKS - 1)));
        assert_eq!(verified.objects, summary.keys.len());

        // One changed byte in a hash anywhere breaks verification.
        let victim = out.path().join(&summary.keys[1]);
        let mut bytes = fs::read(&victim).unwrap();
        let at = match format {
            Some(OutputFormat::Json) => {
                let text = String::from_utf8(bytes.clone()).unwrap();
                text.find("\"blockHash\":\"").unwrap() + 14
            }
            _ => bytes.len() / 2,
        };
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        fs::write(&victim, bytes).unwrap();
        assert!(
            verify_export(out.path(), &manifests[0]).is_err(),
            "{format:?}"
        );
    }
}

fn block_millis(ledger: &Ledger, seq: u64) -> i64 {
    let block = ledger.block(seq).unwrap();
    let ts = block.as_struct().unwrap().get("blockTimestamp").unwrap();
    quill_export::time::timestamp_millis(&ts.as_timestamp().unwrap())
}

#[test]
fn a_time_range_exports_exactly_the_blocks_committed_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(
        &dir.path().join("ledger"),
        "vehicles",
        LedgerOptions::default(),
    )
    .unwrap();
    ledger
        .transact(|tx| tx.create_table("Vehicle", None))
        .unwrap();
    for n in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(3));
        let doc = Element::read_one(format!("{{n: {n}}}").as_bytes()).unwrap();
        ledger
            .transact(|tx| tx.insert("Vehicle", doc.clone()))
            .unwrap();
    }
    let start = block_millis(&ledger, 10);
    let end = block_millis(&ledger, 20);
    let expected: Vec<u64> = (0..32)
        .filter(|&s| (start..end).contains(&block_millis(&ledger, s)))
        .collect();
    assert_eq!(
        block_range(&ledger, start, end).unwrap(),
        expected[0]..expected.last().unwrap() + 1
    );
    let out = tempfile::tempdir().unwrap();
    let sink = DirSink::new(out.path()).unwrap();
    let spec = spec(None, start, end);
    write_started_manifest(&spec, &sink).unwrap();
    run_export(
        &ledger,
        &spec,
        ExportOptions::default(),
        &sink,
        &mut |_, _| {},
    )
    .unwrap();
    // check_export also insists the chain links, so give it the block before the range.
    let keys = {
        let manifest = fs::read(
            out.path()
                .join(spec.completed_manifest_key(ledger.strand_id())),
        );
        Element::read_one(manifest.unwrap()).unwrap()
    };
    let keys = keys
        .as_struct()
        .unwrap()
        .get("keys")
        .unwrap()
        .as_sequence()
        .unwrap()
        .clone();
    let mut seqs = Vec::new();
    for key in keys.elements() {
        let bytes = fs::read(out.path().join(key.as_string().unwrap())).unwrap();
        for block in Element::read_all(bytes).unwrap() {
            let address = block
                .as_struct()
                .unwrap()
                .get("blockAddress")
                .unwrap()
                .clone();
            seqs.push(
                address
                    .as_struct()
                    .unwrap()
                    .get("sequenceNo")
                    .unwrap()
                    .as_i64()
                    .unwrap() as u64,
            );
        }
    }
    assert_eq!(seqs, expected);

    // An empty range still completes, with an empty manifest.
    let empty = self::spec(
        Some(OutputFormat::IonText),
        end + 1_000_000,
        end + 2_000_000,
    );
    let summary = run_export(
        &ledger,
        &empty,
        ExportOptions::default(),
        &sink,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(summary.blocks, 0);
    let manifest = fs::read(
        out.path()
            .join(empty.completed_manifest_key(ledger.strand_id())),
    )
    .unwrap();
    assert_eq!(
        Element::read_one(manifest).unwrap(),
        Element::read_one("{keys: []}").unwrap()
    );
}
