//! Import of journal exports: round trips through every importable format, refusals of
//! tampered, incomplete and JSON exports (leaving nothing behind), the consistency proof from
//! a digest taken before the export, and the published QLDB block through the import checks.

use std::fs;
use std::path::Path;

use ion_rs::Element;
use quill_export::engine::{ledger_creation_millis, new_export_id};
use quill_export::{
    import_ledger, run_export, write_started_manifest, DirSink, DirSource, ExportError,
    ExportOptions, ExportSpec, ImportTarget, OutputFormat,
};
use quill_ledger::{check_import_block, BlockAddress, Ledger, LedgerError, LedgerOptions};
use quill_verify::Hash;

/// Statements that leave history, indexes, deletes, a dropped table and several blocks per
/// hour-object behind.
const SETUP: &[&str] = &[
    "CREATE TABLE Vehicle",
    "CREATE INDEX ON Vehicle (VIN)",
    "CREATE TABLE Person",
    "CREATE TABLE Scratch",
    "INSERT INTO Person {'GovId': 'P-1', 'Name': 'Ada', 'Born': `1815-12-10`}",
    "DROP TABLE Scratch",
];

fn run(ledger: &Ledger, statement: &str) -> Vec<Element> {
    let mut tx = ledger.begin().unwrap();
    let rows = quill_partiql::execute(&mut tx, statement, &[]).unwrap();
    tx.commit().unwrap();
    rows
}

fn query(ledger: &Ledger, statement: &str) -> Vec<Element> {
    let mut tx = ledger.begin().unwrap();
    let mut rows = quill_partiql::execute(&mut tx, statement, &[]).unwrap();
    tx.abort();
    rows.sort_by_key(|row| row.to_string());
    rows
}

fn source_ledger(dir: &Path, vehicles: usize) -> Ledger {
    let ledger = Ledger::create(dir, "dmv", LedgerOptions::default()).unwrap();
    for statement in SETUP {
        run(&ledger, statement);
    }
    for n in 0..vehicles {
        run(
            &ledger,
            &format!(
                "INSERT INTO Vehicle {{'VIN': 'V{n}', 'Price': 12.50, 'Tag': 'x', 'At': `2020-01-0{}T`}}",
                n % 9 + 1
            ),
        );
        if n % 3 == 0 {
            run(
                &ledger,
                &format!("UPDATE Vehicle AS v SET v.Price = {n}.25e0 WHERE v.VIN = 'V{n}'"),
            );
        }
        if n % 5 == 0 {
            run(
                &ledger,
                &format!("DELETE FROM Vehicle AS v WHERE v.VIN = 'V{n}'"),
            );
        }
    }
    ledger
}

/// Exports the whole journal of `ledger` to `root` in small objects; returns the data keys.
fn export(ledger: &Ledger, root: &Path, format: OutputFormat) -> Vec<String> {
    let spec = ExportSpec {
        ledger_name: ledger.name().to_owned(),
        export_id: new_export_id(),
        inclusive_start_millis: ledger_creation_millis(ledger).unwrap(),
        // Exclusive: a block committed in this very millisecond is included.
        exclusive_end_millis: quill_export::time::now_millis() + 1,
        bucket: "local".into(),
        prefix: "qldb/".into(),
        object_encryption_type: "NO_ENCRYPTION".into(),
        output_format: Some(format),
    };
    let sink = DirSink::new(root).unwrap();
    write_started_manifest(&spec, &sink).unwrap();
    let options = ExportOptions {
        max_object_bytes: 4096,
    };
    run_export(ledger, &spec, options, &sink, &mut |_, _| {})
        .unwrap()
        .keys
}

fn import(root: &Path, data_dir: &Path) -> Result<Ledger, ExportError> {
    let source = DirSource::new(root).unwrap();
    import_ledger(
        &source,
        "",
        ImportTarget {
            data_dir,
            ledger: "moved",
            options: LedgerOptions::default(),
            before_publish: Box::new(|dir| {
                fs::write(dir.join("sidecar"), b"written before publishing")
                    .map_err(LedgerError::Io)
            }),
        },
        &mut |_| {},
    )
    .map(|(ledger, summary)| {
        assert_eq!(summary.blocks, ledger.digest().tip.sequence_no + 1);
        ledger
    })
}

/// Nothing of a refused import is left: no ledger, no staging directory.
fn assert_nothing_left(data_dir: &Path) {
    let ledgers = data_dir.join("ledgers");
    let left: Vec<_> = match fs::read_dir(&ledgers) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(left.is_empty(), "left behind: {left:?}");
}

const QUERIES: &[&str] = &[
    "SELECT * FROM Vehicle",
    "SELECT * FROM Person",
    "SELECT v.VIN, v.Price FROM Vehicle AS v WHERE v.VIN = 'V3'",
    "SELECT * FROM information_schema.user_tables",
    "SELECT h.metadata.version, h.data FROM history(Vehicle) AS h",
    "SELECT * FROM _ql_committed_Vehicle",
];

#[test]
fn round_trips_keep_blocks_digests_and_query_results() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 40);
    let before = original.digest();
    for format in [OutputFormat::IonText, OutputFormat::IonBinary] {
        let root = work.path().join(format!("export-{}", format.name()));
        let keys = export(&original, &root, format);
        assert!(keys.len() > 2, "small objects: {keys:?}");
        let data_dir = work.path().join(format!("data-{}", format.name()));
        let imported = import(&root, &data_dir).unwrap();
        assert_eq!(imported.strand_id(), original.strand_id());
        assert_eq!(imported.digest(), before, "{}", format.name());
        assert!(data_dir.join("ledgers/moved/sidecar").exists());
        for seq in 0..=before.tip.sequence_no {
            assert_eq!(
                imported.block(seq).unwrap(),
                original.block(seq).unwrap(),
                "block {seq}"
            );
        }
        for statement in QUERIES {
            assert_eq!(
                query(&imported, statement),
                query(&original, statement),
                "{statement}"
            );
        }
        // Proofs against the digest taken before the export work on the imported ledger.
        let proof = imported.block_proof(7, before.tip.sequence_no).unwrap();
        let block7 = imported.block(7).unwrap();
        let hash = quill_verify::verify_block(&block7).unwrap();
        quill_verify::verify_proof(&hash, &proof, &before.digest).unwrap();

        // New commits chain on after the last imported block.
        run(&imported, "INSERT INTO Vehicle {'VIN': 'after-import'}");
        let after = imported.digest();
        assert_eq!(after.tip.sequence_no, before.tip.sequence_no + 1);
        let new_block = imported.block(after.tip.sequence_no).unwrap();
        let previous = new_block
            .as_struct()
            .and_then(|b| b.get("previousBlockHash"))
            .and_then(Element::as_blob)
            .and_then(Hash::from_slice);
        let last_imported =
            quill_verify::verify_block(&original.block(before.tip.sequence_no).unwrap()).unwrap();
        assert_eq!(previous, Some(last_imported));
        assert_eq!(
            imported.verify(&mut |_, _| {}).unwrap(),
            after.tip.sequence_no + 1
        );

        // The digest from before the export is a prefix of the current one.
        let proof = imported
            .consistency_proof(before.tip.sequence_no, after.tip.sequence_no)
            .unwrap();
        quill_verify::verify_digest_consistency(
            before.tip.sequence_no,
            &before.digest,
            after.tip.sequence_no,
            &after.digest,
            &proof,
        )
        .unwrap();
        // A forged proof, or a forged old digest, fails.
        let mut forged = proof.clone();
        forged[0].0[5] ^= 1;
        assert!(quill_verify::verify_digest_consistency(
            before.tip.sequence_no,
            &before.digest,
            after.tip.sequence_no,
            &after.digest,
            &forged,
        )
        .is_err());
        let mut other_digest = before.digest;
        other_digest.0[0] ^= 0x80;
        assert!(quill_verify::verify_digest_consistency(
            before.tip.sequence_no,
            &other_digest,
            after.tip.sequence_no,
            &after.digest,
            &proof,
        )
        .is_err());
        drop(imported);
        // Reopened, the ledger needs no recovery.
        let reopened =
            Ledger::open(&data_dir.join("ledgers/moved"), LedgerOptions::default()).unwrap();
        assert_eq!(reopened.recovery_report(), Default::default());
        assert_eq!(reopened.digest(), after);
    }
}

#[test]
fn an_existing_ledger_is_never_overwritten() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 2);
    let root = work.path().join("export");
    export(&original, &root, OutputFormat::IonText);
    let data_dir = work.path().join("data");
    let first = import(&root, &data_dir).unwrap().digest();
    let error = import(&root, &data_dir).err().unwrap();
    assert!(error.to_string().contains("already exists"), "{error}");
    let kept = Ledger::open(&data_dir.join("ledgers/moved"), LedgerOptions::default()).unwrap();
    assert_eq!(kept.digest(), first);
}

/// The data object holding block `seq`, and the byte range of that block in it (Ion text).
fn object_of_block(root: &Path, keys: &[String], seq: u64) -> (std::path::PathBuf, String) {
    for key in keys {
        let path = root.join(key);
        let text = fs::read_to_string(&path).unwrap();
        if text.contains(&format!("sequenceNo: {seq}}}")) {
            return (path, text);
        }
    }
    panic!("no object holds block {seq}");
}

#[test]
fn a_tampered_block_is_refused_by_name_and_nothing_is_left() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 10);
    let root = work.path().join("export");
    let keys = export(&original, &root, OutputFormat::IonText);
    // One byte of one document: the VIN in block 17's revision data.
    let target = 17;
    let (path, text) = object_of_block(&root, &keys, target);
    let start = text
        .find(&format!("sequenceNo: {target}}}"))
        .expect("the block's address");
    let offset = start + text[start..].find("VIN: \"V").expect("a VIN in the block") + 6;
    let mut bytes = text.into_bytes();
    bytes[offset] = if bytes[offset] == b'9' {
        b'8'
    } else {
        bytes[offset] + 1
    };
    fs::write(&path, bytes).unwrap();
    let data_dir = work.path().join("data");
    let error = import(&root, &data_dir).err().unwrap();
    match &error {
        ExportError::BlockRejected {
            block_address,
            detail,
        } => {
            assert_eq!(block_address.sequence_no, target, "{detail}");
            assert_eq!(block_address.strand_id, original.strand_id());
        }
        other => panic!("expected a refusal naming block {target}, got {other}"),
    }
    assert!(
        error.to_string().contains(&format!("sequenceNo:{target}")),
        "{error}"
    );
    assert_nothing_left(&data_dir);
}

#[test]
fn a_reordered_or_truncated_chain_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 10);
    let root = work.path().join("export");
    let keys = export(&original, &root, OutputFormat::IonText);
    // Block 9 replaced by block 8 (each verifies alone; the chain does not).
    let (path, text) = object_of_block(&root, &keys, 9);
    let eight = original.block(8).unwrap();
    let nine = original.block(9).unwrap();
    let values: Vec<Element> = Element::read_all(text.as_bytes())
        .unwrap()
        .into_iter()
        .map(|b| if b == nine { eight.clone() } else { b })
        .collect();
    let body = OutputFormat::IonText.encode(&values).unwrap();
    fs::write(&path, body).unwrap();
    let data_dir = work.path().join("data");
    let error = import(&root, &data_dir).err().unwrap();
    assert!(
        error.to_string().contains("sequenceNo:9"),
        "names block 9: {error}"
    );
    assert_nothing_left(&data_dir);
}

#[test]
fn an_incomplete_export_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 10);
    let root = work.path().join("export");
    let keys = export(&original, &root, OutputFormat::IonBinary);
    let missing = &keys[1];
    let first_missing = missing
        .rsplit('/')
        .next()
        .and_then(|name| name.split('.').nth(1))
        .and_then(|range| range.split('-').next())
        .unwrap()
        .to_owned();
    fs::remove_file(root.join(missing)).unwrap();
    let data_dir = work.path().join("data");
    let error = import(&root, &data_dir).err().unwrap();
    assert!(matches!(error, ExportError::ImportRefused(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains(missing.as_str()), "{message}");
    assert!(
        message.contains(&format!("sequenceNo {first_missing}")),
        "{message}"
    );
    assert_nothing_left(&data_dir);

    // Without its completed manifest an export is unfinished.
    let manifest = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain(
            fs::read_dir(root.join("qldb"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .find(|p| p.to_string_lossy().ends_with(".completed.manifest"))
        .unwrap();
    fs::remove_file(manifest).unwrap();
    let error = import(&root, &data_dir).err().unwrap();
    assert!(
        error.to_string().contains("no completed manifest"),
        "{error}"
    );
    assert_nothing_left(&data_dir);
}

#[test]
fn json_exports_are_refused_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 2);
    let root = work.path().join("export");
    export(&original, &root, OutputFormat::Json);
    let data_dir = work.path().join("data");
    let error = import(&root, &data_dir).err().unwrap();
    let message = error.to_string();
    assert!(message.contains("JSON"), "{message}");
    assert!(message.contains("ION_TEXT or ION_BINARY"), "{message}");
    assert_nothing_left(&data_dir);
}

#[test]
fn overlapping_exports_merge_and_must_agree() {
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 6);
    let root = work.path().join("export");
    export(&original, &root, OutputFormat::IonText);
    run(&original, "INSERT INTO Person {'GovId': 'P-2'}");
    // A second, longer export of the same ledger into the same place.
    export(&original, &root, OutputFormat::IonBinary);
    let data_dir = work.path().join("data");
    let imported = import(&root, &data_dir).unwrap();
    assert_eq!(imported.digest(), original.digest());
}

/// The published QLDB block (AWS CLI example, Set A) goes through the import's block checks:
/// its hashes verify under QLDB's rules at its own address and chain position, and any
/// change to it is refused naming it.
#[test]
fn the_published_qldb_block_passes_the_import_checks() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/vectors/qldb-cli-examples.ion"
    );
    let vectors = Element::read_all(fs::read(path).unwrap()).unwrap();
    let set_a = vectors
        .iter()
        .find(|v| v.annotations().iter().any(|a| a.text() == Some("set_a")))
        .expect("set A");
    let block = set_a.as_struct().unwrap().get("block").unwrap().clone();
    let fields = block.as_struct().unwrap();
    let previous = fields
        .get("previousBlockHash")
        .and_then(Element::as_blob)
        .and_then(Hash::from_slice);
    let address = BlockAddress {
        strand_id: "KmA3ZZca7vAIiJAK9S5Iwl".into(),
        sequence_no: 100,
    };
    let hash = check_import_block(&block, &address, previous).unwrap();
    assert_eq!(
        hash.to_base64(),
        "NoChM92yKRuJAb/jeLd1VnYn4DHiWIf071ACfic9uHc="
    );
    // Out of place, or after another block, it is refused.
    let elsewhere = BlockAddress {
        sequence_no: 101,
        ..address.clone()
    };
    assert!(check_import_block(&block, &elsewhere, previous).is_err());
    assert!(check_import_block(&block, &address, Some(Hash([7; 32]))).is_err());
    // One changed value in the revision's data: refused, naming block 100.
    let tampered = Element::read_one(
        block
            .to_string()
            .replacen("1N4AL11D75C109151", "1N4AL11D75C109152", 1)
            .as_bytes(),
    )
    .unwrap();
    assert_ne!(tampered, block);
    match check_import_block(&tampered, &address, previous) {
        Err(LedgerError::ImportRejected { block_address, .. }) => {
            assert_eq!(block_address, address)
        }
        other => panic!("a tampered block must be refused: {other:?}"),
    }
}

// ---- Blocks written by QLDB -----------------------------------------------------------------

const QLDB_STRAND: &str = "QldbStrand000000000001";

/// A block in QLDB's shape: opaque system entries around the revisions root and the
/// `transactionInfo` hash (or none of them for a block without revisions), hash-only system
/// revisions, no `catalogChanges`.
struct QldbBlock<'a> {
    statements: &'a [&'a str],
    /// (document id, table id, table name, version, data or None for a delete).
    revisions: &'a [(&'a str, &'a str, &'a str, u64, Option<&'a str>)],
    system_revision: bool,
}

fn qldb_block(seq: u64, previous: Option<Hash>, spec: &QldbBlock<'_>) -> (Element, Hash) {
    let time = format!("2019-09-16T19:37:{:02}.{:03}Z", seq % 60, seq * 7 % 1000);
    let tx = format!("Txn{seq:019}");
    let opaque = |n: u8| Hash::sha256(&[n, seq as u8]);
    let statements: Vec<String> = spec
        .statements
        .iter()
        .map(|s| {
            format!(
                "{{statement: {s:?}, startTime: {time}, statementDigest: {{{{{}}}}}}}",
                quill_verify::statement_digest(s, &[]).to_base64()
            )
        })
        .collect();
    let documents: Vec<String> = spec
        .revisions
        .iter()
        .map(|(doc, table_id, table, _, _)| {
            format!("{doc}: {{tableName: {table:?}, tableId: {table_id:?}, statements: [0]}}")
        })
        .collect();
    let info = Element::read_one(format!(
        "{{statements: [{}], documents: {{{}}}}}",
        statements.join(", "),
        documents.join(", ")
    ))
    .unwrap();
    let mut revision_texts = Vec::new();
    let mut revision_hashes = Vec::new();
    if spec.system_revision {
        let hash = opaque(9);
        revision_texts.push(format!("{{hash: {{{{{}}}}}}}", hash.to_base64()));
        revision_hashes.push(hash);
    }
    for (doc, _, _, version, data) in spec.revisions {
        let metadata = format!("{{id: {doc:?}, version: {version}, txTime: {time}, txId: {tx:?}}}");
        let metadata_element = Element::read_one(metadata.as_bytes()).unwrap();
        let data_element = data.map(|d| Element::read_one(d.as_bytes()).unwrap());
        let hash = quill_verify::revision_hash(&metadata_element, data_element.as_ref());
        revision_hashes.push(hash);
        let data_field = data.map(|d| format!("data: {d}, ")).unwrap_or_default();
        revision_texts.push(format!(
            "{{blockAddress: {{strandId: {QLDB_STRAND:?}, sequenceNo: {seq}}}, hash: {{{{{}}}}}, \
             {data_field}metadata: {metadata}}}",
            hash.to_base64()
        ));
    }
    let mut entries = vec![opaque(1)];
    if !revision_hashes.is_empty() {
        entries.push(quill_verify::revisions_root(&revision_hashes));
    }
    entries.push(opaque(2));
    if seq > 0 {
        entries.push(quill_verify::ion_hash(&info));
    }
    let entries_hash = quill_verify::merkle_root(&entries).unwrap();
    let hash = quill_verify::block_hash(&entries_hash, previous.as_ref());
    let b64 = |h: &Hash| format!("{{{{{}}}}}", h.to_base64());
    let text =
        format!(
        "{{blockAddress: {{strandId: {QLDB_STRAND:?}, sequenceNo: {seq}}}, transactionId: {tx:?}, \
         blockTimestamp: {time}, blockHash: {}, entriesHash: {}, {}entriesHashList: [{}], \
         {}revisions: [{}]}}",
        b64(&hash),
        b64(&entries_hash),
        previous.map(|p| format!("previousBlockHash: {}, ", b64(&p))).unwrap_or_default(),
        entries.iter().map(b64).collect::<Vec<_>>().join(", "),
        if seq > 0 { format!("transactionInfo: {info}, ") } else { String::new() },
        revision_texts.join(", ")
    );
    let block = Element::read_one(text.as_bytes()).unwrap();
    assert_eq!(quill_verify::verify_block(&block).unwrap(), hash);
    (block, hash)
}

const VEHICLE: &str = "TabVehicle000000000001";
/// A marker only the first revision of `DOC_A` holds, to find its bytes after redaction.
const QLDB_MARKER: &str = "qldb-redaction-marker-5c";
const QLDB_DOC_A_V0: &str = "{VIN: \"A\", Price: 90.25, Owner: \"qldb-redaction-marker-5c\"}";
const DOC_A: &str = "DocA000000000000000001";
const DOC_B: &str = "DocB000000000000000002";

/// A QLDB-written journal: genesis, CREATE TABLE, CREATE INDEX (DDL blocks name no table id),
/// two inserts with a system revision, an update, a delete.
fn qldb_journal() -> Vec<(Element, Hash)> {
    let specs = [
        QldbBlock {
            statements: &[],
            revisions: &[],
            system_revision: false,
        },
        QldbBlock {
            statements: &["CREATE TABLE Vehicle"],
            revisions: &[],
            system_revision: true,
        },
        QldbBlock {
            statements: &["CREATE INDEX ON Vehicle (VIN)"],
            revisions: &[],
            system_revision: true,
        },
        QldbBlock {
            statements: &["INSERT INTO Vehicle << {'VIN': 'A'}, {'VIN': 'B'} >>"],
            revisions: &[
                (DOC_A, VEHICLE, "Vehicle", 0, Some(QLDB_DOC_A_V0)),
                (
                    DOC_B,
                    VEHICLE,
                    "Vehicle",
                    0,
                    Some("{VIN: \"B\", Since: 2017-08-21}"),
                ),
            ],
            system_revision: true,
        },
        QldbBlock {
            statements: &["UPDATE Vehicle SET Price = 1 WHERE VIN = 'A'"],
            revisions: &[(DOC_A, VEHICLE, "Vehicle", 1, Some("{VIN: \"A\", Price: 1}"))],
            system_revision: false,
        },
        QldbBlock {
            statements: &["DELETE FROM Vehicle WHERE VIN = 'B'"],
            revisions: &[(DOC_B, VEHICLE, "Vehicle", 1, None)],
            system_revision: false,
        },
    ];
    let mut blocks: Vec<(Element, Hash)> = Vec::new();
    for (seq, spec) in specs.iter().enumerate() {
        let previous = blocks.last().map(|(_, h)| *h);
        blocks.push(qldb_block(seq as u64, previous, spec));
    }
    blocks
}

fn write_qldb_export(root: &Path, blocks: &[Element]) {
    let folder = "ExportFromQldb00000001/2019/09/16/19";
    let halves = [&blocks[..3], &blocks[3..]];
    let mut keys = Vec::new();
    let mut first = 0;
    for half in halves {
        let key = format!(
            "{folder}/{QLDB_STRAND}.{first}-{}.ion",
            first + half.len() - 1
        );
        fs::create_dir_all(root.join(folder)).unwrap();
        fs::write(root.join(&key), OutputFormat::IonText.encode(half).unwrap()).unwrap();
        first += half.len();
        keys.push(format!("{key:?}"));
    }
    fs::write(
        root.join(format!(
            "ExportFromQldb00000001.{QLDB_STRAND}.completed.manifest"
        )),
        format!("{{keys: [{}]}}", keys.join(", ")),
    )
    .unwrap();
}

#[test]
fn blocks_written_by_qldb_are_kept_verbatim_and_their_proofs_hold() {
    let work = tempfile::tempdir().unwrap();
    let journal = qldb_journal();
    let blocks: Vec<Element> = journal.iter().map(|(b, _)| b.clone()).collect();
    let hashes: Vec<Hash> = journal.iter().map(|(_, h)| *h).collect();
    let qldb_digest = quill_verify::merkle_root(&hashes).unwrap();
    let root = work.path().join("export");
    write_qldb_export(&root, &blocks);
    let data_dir = work.path().join("data");
    let ledger = import(&root, &data_dir).unwrap();
    assert_eq!(ledger.strand_id(), QLDB_STRAND);
    let digest = ledger.digest();
    assert_eq!((digest.digest, digest.tip.sequence_no), (qldb_digest, 5));
    for (seq, block) in blocks.iter().enumerate() {
        assert_eq!(ledger.block(seq as u64).unwrap(), *block, "block {seq}");
        let read = ledger.block_hashes(seq as u64).unwrap();
        assert_eq!(read.hash, hashes[seq], "block {seq}");
        assert_eq!(read.previous_hash, seq.checked_sub(1).map(|p| hashes[p]));
        let proof = ledger.block_proof(seq as u64, 5).unwrap();
        quill_verify::verify_proof(&hashes[seq], &proof, &qldb_digest).unwrap();
    }
    // GetRevision proofs against the digest QLDB would have issued, system revision included.
    for (seq, document) in [(3, DOC_A), (3, DOC_B), (4, DOC_A), (5, DOC_B)] {
        let revision = ledger.revision(seq, document).unwrap().to_element();
        let proof = ledger.revision_proof(seq, document, 5).unwrap();
        quill_verify::verify_revision(&revision, &proof, &qldb_digest)
            .unwrap_or_else(|e| panic!("revision of {document} in block {seq}: {e}"));
    }
    // Tables, documents and the index are rebuilt from the revisions and statements.
    let rows = query(&ledger, "SELECT * FROM Vehicle");
    assert_eq!(
        rows,
        vec![Element::read_one("{VIN: \"A\", Price: 1}").unwrap()]
    );
    let tables = query(&ledger, "SELECT * FROM information_schema.user_tables");
    let text = tables[0].to_string();
    assert!(text.contains(VEHICLE) && text.contains("[VIN]"), "{text}");
    assert_eq!(
        query(
            &ledger,
            "SELECT h.metadata.version FROM history(Vehicle) AS h"
        )
        .len(),
        4
    );

    run(&ledger, "INSERT INTO Vehicle {'VIN': 'C'}");
    let after = ledger.digest();
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), 7);
    let proof = ledger.consistency_proof(5, after.tip.sequence_no).unwrap();
    quill_verify::verify_digest_consistency(5, &qldb_digest, 6, &after.digest, &proof).unwrap();
    drop(ledger);
    let reopened = Ledger::open(&data_dir.join("ledgers/moved"), LedgerOptions::default()).unwrap();
    assert_eq!(reopened.digest(), after);
    assert_eq!(reopened.block(3).unwrap(), blocks[3]);
}

#[test]
fn a_tampered_qldb_block_is_refused_by_name() {
    let work = tempfile::tempdir().unwrap();
    let mut blocks: Vec<Element> = qldb_journal().into_iter().map(|(b, _)| b).collect();
    blocks[4] = Element::read_one(
        blocks[4]
            .to_string()
            .replacen("Price: 1}", "Price: 2}", 1)
            .as_bytes(),
    )
    .unwrap();
    let root = work.path().join("export");
    write_qldb_export(&root, &blocks);
    let data_dir = work.path().join("data");
    match import(&root, &data_dir).err().unwrap() {
        ExportError::BlockRejected { block_address, .. } => {
            assert_eq!(block_address.sequence_no, 4);
            assert_eq!(block_address.strand_id, QLDB_STRAND);
        }
        other => panic!("expected block 4 refused, got {other}"),
    }
    assert_nothing_left(&data_dir);
}

/// The status of table `name` in information_schema.user_tables, or None.
fn table_status(ledger: &Ledger, name: &str) -> Option<String> {
    let rows = query(
        ledger,
        &format!("SELECT VALUE t.status FROM information_schema.user_tables AS t WHERE t.name = '{name}'"),
    );
    rows.first().and_then(|s| s.as_text()).map(str::to_owned)
}

#[test]
fn drop_and_undrop_table_in_qldb_blocks_are_inferred_from_their_statements() {
    let work = tempfile::tempdir().unwrap();
    let dml = |statement, revisions| QldbBlock {
        statements: statement,
        revisions,
        system_revision: false,
    };
    let ddl = |statement| QldbBlock {
        statements: statement,
        revisions: &[],
        system_revision: true,
    };
    let specs = [
        ddl(&[]),
        ddl(&["CREATE TABLE Vehicle"]),
        dml(
            &["INSERT INTO Vehicle ?"],
            &[(DOC_A, VEHICLE, "Vehicle", 0, Some("{VIN: \"A\"}"))],
        ),
        ddl(&["DROP TABLE Vehicle"]),
        ddl(&["UNDROP TABLE \"TabVehicle000000000001\""]),
    ];
    let mut blocks: Vec<Element> = Vec::new();
    let mut previous = None;
    for (seq, spec) in specs.iter().enumerate() {
        let (block, hash) = qldb_block(seq as u64, previous, spec);
        blocks.push(block);
        previous = Some(hash);
    }

    // Exported after the DROP: the table is there, INACTIVE, its documents out of reach by name.
    let dropped_export = work.path().join("dropped");
    write_qldb_export(&dropped_export, &blocks[..4]);
    let dropped = import(&dropped_export, &work.path().join("a")).unwrap();
    assert_eq!(
        table_status(&dropped, "Vehicle").as_deref(),
        Some("INACTIVE")
    );
    // The inferred catalog is kept beside the blocks, so a reopened ledger rebuilds it.
    drop(dropped);
    let dropped = Ledger::open(
        &work.path().join("a/ledgers/moved"),
        LedgerOptions::default(),
    )
    .unwrap();
    assert_eq!(
        table_status(&dropped, "Vehicle").as_deref(),
        Some("INACTIVE")
    );
    let mut tx = dropped.begin().unwrap();
    assert!(quill_partiql::execute(&mut tx, "SELECT * FROM Vehicle", &[]).is_err());
    tx.abort();
    // A new table may take the name; the dropped one keeps its id and history.
    run(&dropped, "CREATE TABLE Vehicle");
    let ids = query(
        &dropped,
        "SELECT VALUE t.tableId FROM information_schema.user_tables AS t",
    );
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&Element::string(VEHICLE)), "{ids:?}");

    // Exported after the UNDROP: ACTIVE again, with its document, and DROP works on from there.
    let undropped_export = work.path().join("undropped");
    write_qldb_export(&undropped_export, &blocks);
    let undropped = import(&undropped_export, &work.path().join("b")).unwrap();
    assert_eq!(
        table_status(&undropped, "Vehicle").as_deref(),
        Some("ACTIVE")
    );
    assert_eq!(
        query(&undropped, "SELECT * FROM Vehicle"),
        vec![Element::read_one("{VIN: \"A\"}").unwrap()]
    );
    run(&undropped, "DROP TABLE Vehicle");
    assert_eq!(
        table_status(&undropped, "Vehicle").as_deref(),
        Some("INACTIVE")
    );
    assert_eq!(undropped.verify(&mut |_, _| {}).unwrap(), 6);
}

/// How many files under `dir` hold `needle`.
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

/// The revision of `document_id` in `block` (GetBlock's shape).
fn revision_in(block: &Element, document_id: &str) -> Element {
    block
        .as_struct()
        .and_then(|b| b.get("revisions"))
        .and_then(Element::as_sequence)
        .and_then(|list| {
            list.elements().find(|r| {
                r.as_struct()
                    .and_then(|r| r.get("metadata"))
                    .and_then(Element::as_struct)
                    .and_then(|m| m.get("id"))
                    .and_then(Element::as_text)
                    == Some(document_id)
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("no revision of {document_id} in {block}"))
}

fn field(element: &Element, name: &str) -> Option<Element> {
    element.as_struct().unwrap().get(name).cloned()
}

#[test]
fn a_revision_redacted_before_the_export_is_imported_redacted() {
    const MARKER: &str = "import-redaction-marker-3a";
    let work = tempfile::tempdir().unwrap();
    let original = source_ledger(&work.path().join("original"), 4);
    let secret = Element::read_one(format!("{{Name: \"{MARKER}\"}}").as_bytes()).unwrap();
    let (table_id, id) = original
        .transact(|tx| {
            Ok((
                tx.create_table("Secret", None)?,
                tx.insert("Secret", secret.clone())?,
            ))
        })
        .unwrap();
    original
        .transact(|tx| tx.update("Secret", &id, Element::read_one("{Name: \"x\"}").unwrap()))
        .unwrap();
    let redacted_at = original
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap()[0]
        .block_address
        .clone();
    let mut tx = original.begin().unwrap();
    tx.redact_revision(&redacted_at, &table_id, &id).unwrap();
    tx.commit().unwrap();
    run(&original, "INSERT INTO Vehicle {'VIN': 'after-redaction'}");
    let before = original.digest();
    let data_hash = quill_verify::ion_hash(&secret);

    for format in [OutputFormat::IonText, OutputFormat::IonBinary] {
        let root = work.path().join(format!("export-{}", format.name()));
        export(&original, &root, format);
        let data_dir = work.path().join(format!("data-{}", format.name()));
        let imported = import(&root, &data_dir).unwrap();
        assert_eq!(imported.digest(), before, "{}", format.name());
        for seq in 0..=before.tip.sequence_no {
            assert_eq!(
                imported.block(seq).unwrap(),
                original.block(seq).unwrap(),
                "block {seq}"
            );
        }
        let history = imported
            .transact(|tx| tx.history(&table_id, Some(&id), None, None))
            .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].data, None);
        assert_eq!(history[0].data_hash, Some(data_hash));
        let shown = query(&imported, "SELECT * FROM history(Secret) AS h");
        assert!(
            shown.iter().any(|h| field(h, "dataHash").is_some()),
            "{shown:?}"
        );
        let block = imported.block(redacted_at.sequence_no).unwrap();
        let revision = revision_in(&block, &id);
        assert!(field(&revision, "data").is_none());
        assert_eq!(
            field(&revision, "dataHash").unwrap().as_blob(),
            Some(data_hash.as_bytes().as_slice())
        );
        assert_eq!(
            imported.verify(&mut |_, _| {}).unwrap(),
            before.tip.sequence_no + 1
        );
        drop(imported);
        assert_eq!(files_containing(&data_dir, MARKER.as_bytes()), 0);
    }
}

#[test]
fn redacting_a_revision_of_a_qldb_block_erases_it_and_keeps_every_hash() {
    let work = tempfile::tempdir().unwrap();
    let journal = qldb_journal();
    let hashes: Vec<Hash> = journal.iter().map(|(_, h)| *h).collect();
    let qldb_digest = quill_verify::merkle_root(&hashes).unwrap();
    let root = work.path().join("export");
    write_qldb_export(
        &root,
        &journal.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(),
    );
    let data_dir = work.path().join("data");
    let ledger = import(&root, &data_dir).unwrap();
    assert!(files_containing(&data_dir, QLDB_MARKER.as_bytes()) > 0);
    let address = BlockAddress {
        strand_id: QLDB_STRAND.into(),
        sequence_no: 3,
    };
    let mut tx = ledger.begin().unwrap();
    tx.redact_revision(&address, VEHICLE, DOC_A).unwrap();
    tx.commit().unwrap();
    let data_hash = quill_verify::ion_hash(&Element::read_one(QLDB_DOC_A_V0).unwrap());

    let check = |ledger: &Ledger| {
        let block = ledger.block(3).unwrap();
        assert_eq!(quill_verify::verify_block(&block).unwrap(), hashes[3]);
        let revision = revision_in(&block, DOC_A);
        assert!(field(&revision, "data").is_none(), "{revision}");
        assert_eq!(
            field(&revision, "dataHash").unwrap().as_blob(),
            Some(data_hash.as_bytes().as_slice())
        );
        // The other document of the block keeps its data.
        assert!(field(&revision_in(&block, DOC_B), "data").is_some());
        // Proofs against the digest QLDB issued still hold.
        let revision = ledger.revision(3, DOC_A).unwrap();
        assert_eq!(revision.data_hash, Some(data_hash));
        let proof = ledger.revision_proof(3, DOC_A, 5).unwrap();
        quill_verify::verify_revision(&revision.to_element(), &proof, &qldb_digest).unwrap();
        let history = ledger
            .transact(|tx| tx.history(VEHICLE, Some(DOC_A), None, None))
            .unwrap();
        assert_eq!(history[0].data_hash, Some(data_hash));
        assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), 7);
    };
    check(&ledger);
    let after = ledger.digest();
    drop(ledger);
    let reopened = Ledger::open(&data_dir.join("ledgers/moved"), LedgerOptions::default()).unwrap();
    assert_eq!(reopened.digest(), after);
    check(&reopened);
    // Erased once and for all: a second request is refused and changes nothing.
    let mut tx = reopened.begin().unwrap();
    assert!(matches!(
        tx.redact_revision(&address, VEHICLE, DOC_A),
        Err(LedgerError::InvalidInput(_))
    ));
    tx.abort();
    assert_eq!(reopened.digest(), after);
    drop(reopened);
    assert_eq!(files_containing(&data_dir, QLDB_MARKER.as_bytes()), 0);
}
