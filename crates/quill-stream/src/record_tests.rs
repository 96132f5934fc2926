//! The records built around a block's stored Ion must mean exactly what the records built from
//! the block's `Element` mean, for any block a ledger commits.

use ion_rs::{Element, List, Struct};
use proptest::prelude::*;
use quill_ledger::{Ledger, LedgerOptions};

use super::*;

const ARN: &str = "arn:aws:qldb:us-east-1:000000000000:stream/records/IiPT4brpZCqCq3f4MTHbYy";

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z][a-zA-Z0-9_]{0,16}",
        // System symbols' texts are written by id, without a local table entry.
        1 => prop::sample::select(vec!["name", "imports", "symbols", "max_id", "$ion_symbol_table"])
            .prop_map(str::to_owned),
    ]
}

fn scalar() -> impl Strategy<Value = Element> {
    prop_oneof![
        any::<i64>().prop_map(Element::int),
        "[ -~é€]{0,40}".prop_map(Element::string),
        field_name().prop_map(|s| Element::symbol(s.as_str())),
        any::<bool>().prop_map(Element::boolean),
        (-1.0e12f64..1.0e12).prop_map(Element::float),
        (any::<i32>(), -6i64..6).prop_map(|(c, e)| Element::decimal(ion_rs::Decimal::new(c, e))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Element::blob),
        Just(Element::null(ion_rs::IonType::Null)),
        Just(Element::null(ion_rs::IonType::String)),
    ]
}

fn value() -> impl Strategy<Value = Element> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| Element::from(List::from(items))),
            prop::collection::vec((field_name(), inner.clone()), 0..5)
                .prop_map(|fields| { Element::from(Struct::from_iter(fields)) }),
            (field_name(), inner).prop_map(|(note, value)| {
                let value: Element = value;
                value.with_annotations([note.as_str()])
            }),
        ]
    })
}

fn document() -> impl Strategy<Value = Element> {
    prop::collection::vec((field_name(), value()), 0..6)
        .prop_map(|fields| Element::from(Struct::from_iter(fields)))
}

#[derive(Debug, Clone)]
enum Op {
    CreateTable,
    CreateIndex(usize, String),
    Insert(usize, Element),
    Update(usize, Element),
    Delete(usize),
    /// Redacts the oldest revision of a document (alone in its transaction).
    Redact(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::CreateTable),
        1 => (any::<usize>(), "[a-z]{1,6}").prop_map(|(t, f)| Op::CreateIndex(t, f)),
        5 => (any::<usize>(), document()).prop_map(|(t, d)| Op::Insert(t, d)),
        3 => (any::<usize>(), document()).prop_map(|(i, d)| Op::Update(i, d)),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Redact),
    ]
}

/// What the test knows of the ledger: (table name, table id), and (table index, document id).
#[derive(Default)]
struct Model {
    tables: Vec<(String, String)>,
    documents: Vec<(usize, String)>,
}

fn apply(ledger: &Ledger, model: &mut Model, ops: &[Op]) {
    if let [Op::Redact(i)] = ops {
        redact(ledger, model, *i);
        return;
    }
    let mut tx = ledger.begin().unwrap();
    let mut created = Vec::new();
    let mut inserted = Vec::new();
    for op in ops {
        let outcome = match op {
            Op::CreateTable => {
                let name = format!("T{}", model.tables.len() + created.len());
                tx.record_statement(&format!("CREATE TABLE {name}"), &[])
                    .and_then(|()| tx.create_table(&name, None))
                    .map(|id| created.push((name, id)))
            }
            Op::CreateIndex(t, field) => {
                let (name, _) = &model.tables[t % model.tables.len()];
                tx.record_statement(&format!("CREATE INDEX ON {name} ({field})"), &[])
                    .and_then(|()| tx.create_index(name, field))
                    .map(drop)
            }
            Op::Insert(t, document) => {
                let t = t % model.tables.len();
                let name = &model.tables[t].0;
                tx.record_statement(
                    &format!("INSERT INTO {name} ?"),
                    std::slice::from_ref(document),
                )
                .and_then(|()| tx.insert(name, document.clone()))
                .map(|id| inserted.push((t, id)))
            }
            Op::Update(i, document) if !model.documents.is_empty() => {
                let (t, id) = &model.documents[i % model.documents.len()];
                let name = &model.tables[*t].0;
                tx.record_statement(
                    &format!("UPDATE {name} SET x = ?"),
                    std::slice::from_ref(document),
                )
                .and_then(|()| tx.update(name, id, document.clone()))
            }
            Op::Delete(i) if !model.documents.is_empty() => {
                let (t, id) = &model.documents[i % model.documents.len()];
                let name = &model.tables[*t].0;
                tx.record_statement(&format!("DELETE FROM {name}"), &[])
                    .and_then(|()| tx.delete(name, id))
            }
            _ => Ok(()),
        };
        // An operation the ledger refuses (a deleted document, a duplicate index) aborts the
        // transaction: the blocks that do commit are what is compared.
        if outcome.is_err() {
            return;
        }
    }
    if tx.commit().is_ok() {
        model.tables.extend(created);
        model.documents.extend(inserted);
    }
}

fn redact(ledger: &Ledger, model: &Model, i: usize) {
    if model.documents.is_empty() {
        return;
    }
    let (t, id) = &model.documents[i % model.documents.len()];
    let table_id = &model.tables[*t].1;
    let mut tx = ledger.begin().unwrap();
    let Ok(history) = tx.history(table_id, Some(id), None, None) else {
        return;
    };
    if let Some(oldest) = history.first() {
        if tx
            .redact_revision(&oldest.block_address.clone(), table_id, id)
            .is_ok()
        {
            tx.commit().unwrap();
        }
    }
}

/// Checks every block of `ledger`: the records built around its stored Ion equal, as Ion
/// values with their fields in the same order, the records built from its `Element`.
/// Returns the size of each record, built both ways.
fn check_blocks(ledger: &Ledger) -> Vec<(usize, usize)> {
    let blocks = ledger
        .stored_blocks(0, ledger.digest().tip.sequence_no + 1)
        .unwrap();
    let mut sizes = Vec::new();
    for stored in &blocks {
        let element = ledger.block(stored.address.sequence_no).unwrap();
        assert_eq!(stored.to_element().unwrap(), element);
        let expected = block_records(ARN, &element).unwrap();
        let pieces = stored.pieces().unwrap().expect("a compact frame");
        let spliced = spliced_records(ARN, &stored.address, &pieces)
            .unwrap()
            .expect("the stored Ion is copied, not decoded");
        assert_eq!(spliced.len(), expected.len());
        for (new, old) in spliced.iter().zip(&expected) {
            assert_eq!(new.record_type, old.record_type);
            assert_eq!(new.block_sequence_no, old.block_sequence_no);
            assert_eq!(new.dedupe_key, old.dedupe_key);
            sizes.push((new.ion.len(), old.ion.len()));
            let decoded = Element::read_all(&new.ion).unwrap();
            let decoded: Vec<&Element> = decoded.iter().collect();
            let [decoded] = decoded[..] else {
                panic!("one value per record: {decoded:?}");
            };
            let old = Element::read_one(&old.ion).unwrap();
            assert_eq!(decoded, &old);
            assert_eq!(decoded.to_string(), old.to_string(), "same field order");
        }
        let via_block = StreamBlock::read(stored).unwrap();
        assert_eq!(via_block.records(ARN).unwrap(), spliced);
        assert_eq!(
            via_block.millis().unwrap(),
            block_position(&element).unwrap().1
        );
    }
    sizes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn stored_records_mean_what_element_records_mean(
        transactions in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..10)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(dir.path(), "records", LedgerOptions::default()).unwrap();
        let mut model = Model::default();
        apply(&ledger, &mut model, &[Op::CreateTable]);
        for ops in &transactions {
            apply(&ledger, &mut model, ops);
        }
        check_blocks(&ledger);
    }
}

/// One ledger with every kind of block, so the property's cases cannot all miss one.
#[test]
fn every_kind_of_block_is_spliced() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "records", LedgerOptions::default()).unwrap();
    let mut model = Model::default();
    let doc = |text: &str| Element::read_one(text.as_bytes()).unwrap();
    let ops = [
        vec![Op::CreateTable, Op::CreateTable],
        vec![Op::CreateIndex(0, "VIN".into())],
        vec![
            Op::Insert(
                0,
                doc("{VIN: \"1N4AL11D75C109151\", owner: {name: \"Ann\"}}"),
            ),
            Op::Insert(1, doc("{tags: [a, b::c], n: null.int}")),
        ],
        vec![
            Op::Update(0, doc("{VIN: \"1N4AL11D75C109151\", price: 90.25}")),
            Op::Delete(1),
        ],
        vec![Op::Redact(0)],
    ];
    for ops in &ops {
        apply(&ledger, &mut model, ops);
    }
    let blocks = ledger.digest().tip.sequence_no + 1;
    assert_eq!(blocks, 6, "one block per transaction");
    let sizes = check_blocks(&ledger);
    // 6 summaries, 2 inserts, an update and a deletion.
    assert_eq!(sizes.len(), 10);
    // A second symbol table and names the stored Ion already has cost a few bytes more.
    for (new, old) in sizes {
        assert!(
            new <= old + 64,
            "{new} bytes where Element records take {old}"
        );
    }
    let redacted = ledger.block(3).unwrap();
    assert!(redacted.to_string().contains("dataHash"), "{redacted}");
    let redacting = ledger.block(5).unwrap();
    assert!(
        redacting.to_string().contains("redactionInfo"),
        "{redacting}"
    );
}
