//! The statement budget (`ExecuteLimits::result_bytes_max`): a statement stops as soon as what
//! it holds (rows it scanned or joined, sort and group buffers, projected rows) exceeds it,
//! with a typed error that leaves the transaction usable and unchanged.

mod eval_support;

use eval_support::{ion, Db};
use ion_rs::{v1_0, Element, WriteConfig};
use quill_partiql::value::ion_binary_size_estimate;
use quill_partiql::{execute_with_limits, ExecuteLimits, PartiqlError};

const DOCUMENTS: usize = 20;
const PAYLOAD_CHARS: usize = 10_000;

/// A table of `DOCUMENTS` documents of about 10 KB each.
fn big_table() -> Db {
    let db = Db::new();
    db.q("CREATE TABLE Big");
    for n in 0..DOCUMENTS {
        db.qp(
            "INSERT INTO Big ?",
            &[ion(&format!(
                "{{n: {n}, payload: \"{}\"}}",
                "x".repeat(PAYLOAD_CHARS)
            ))],
        );
    }
    db
}

fn budget(result_bytes_max: usize) -> ExecuteLimits {
    ExecuteLimits { result_bytes_max }
}

#[test]
fn select_over_the_budget_fails_and_leaves_the_transaction_usable() {
    let db = big_table();
    db.tx(|tx| {
        let small = budget(5 * PAYLOAD_CHARS);
        let error = execute_with_limits(tx, "SELECT * FROM Big", &[], small).unwrap_err();
        assert!(
            matches!(error, PartiqlError::ResultTooLarge { limit } if limit == 5 * PAYLOAD_CHARS),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("result budget of 50000 bytes"),
            "{error}"
        );
        // The failed statement left the transaction open and unchanged: it still reads,
        // writes, and sees its own write.
        let rows = execute_with_limits(tx, "SELECT * FROM Big WHERE n < 2", &[], small).unwrap();
        assert_eq!(rows.len(), 2);
        execute_with_limits(tx, "INSERT INTO Big {'n': 100}", &[], small).unwrap();
        let rows = execute_with_limits(tx, "SELECT n FROM Big WHERE n = 100", &[], small).unwrap();
        assert_eq!(rows, vec![ion("{n: 100}")]);
    });
    // A budget that fits the whole table serves it in one result.
    db.tx(|tx| {
        let rows = execute_with_limits(tx, "SELECT * FROM Big", &[], budget(1 << 20)).unwrap();
        assert_eq!(rows.len(), DOCUMENTS + 1);
    });
    // The default budget (64 MiB) is far above this table.
    assert_eq!(db.q("SELECT * FROM Big").len(), DOCUMENTS + 1);
}

#[test]
fn unordered_paging_counts_only_the_page_and_ordered_paging_counts_what_it_sorts() {
    let db = big_table();
    db.tx(|tx| {
        // The scan holds the table (about 200 KB) before any row is projected, so the budget
        // must fit it; what decides the rest is which projected rows are kept.
        let fits_the_table = budget(30 * PAYLOAD_CHARS);
        let rows = execute_with_limits(
            tx,
            "SELECT * FROM Big LIMIT 2 OFFSET 3",
            &[],
            fits_the_table,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let rows = execute_with_limits(
            tx,
            "SELECT b AS x, b AS y FROM Big AS b LIMIT 2",
            &[],
            fits_the_table,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        // ORDER BY projects every row (here twice the table) before the page is cut.
        let error = execute_with_limits(
            tx,
            "SELECT b AS x, b AS y FROM Big AS b ORDER BY b.n LIMIT 2",
            &[],
            fits_the_table,
        )
        .unwrap_err();
        assert!(
            matches!(error, PartiqlError::ResultTooLarge { .. }),
            "{error:?}"
        );
        // Small projections of the same rows fit, ordered or grouped.
        let rows = execute_with_limits(
            tx,
            "SELECT b.n FROM Big AS b ORDER BY b.n",
            &[],
            fits_the_table,
        )
        .unwrap();
        assert_eq!(rows.len(), DOCUMENTS);
        let rows = execute_with_limits(
            tx,
            "SELECT COUNT(*) AS c FROM Big GROUP BY n",
            &[],
            fits_the_table,
        )
        .unwrap();
        assert_eq!(rows.len(), DOCUMENTS);
        // A LIMIT does not save a scan that holds more than the budget.
        let error = execute_with_limits(
            tx,
            "SELECT * FROM Big LIMIT 2",
            &[],
            budget(5 * PAYLOAD_CHARS),
        )
        .unwrap_err();
        assert!(
            matches!(error, PartiqlError::ResultTooLarge { .. }),
            "{error:?}"
        );
    });
}

#[test]
fn joins_groups_and_sorts_count_what_they_hold_and_leave_the_transaction_intact() {
    let db = big_table();
    // The table is about 200 KB; its cross join holds 400 rows of two documents (8 MB).
    let small = budget(1 << 20);
    db.tx(|tx| {
        for statement in [
            "SELECT COUNT(*) AS c FROM Big AS a, Big AS b",
            "SELECT a.n AS n, COUNT(*) AS c FROM Big AS a, Big AS b GROUP BY a.n",
            "SELECT a.n AS x, b.n AS y FROM Big AS a, Big AS b ORDER BY a.n LIMIT 1",
            "SELECT a.n FROM Big AS a, Big AS b, Big AS c WHERE c.n = 0",
            "SELECT VALUE (SELECT COUNT(*) AS c FROM Big AS x, Big AS y) FROM Big AS b \
             WHERE b.n = 0",
        ] {
            let error = execute_with_limits(tx, statement, &[], small).unwrap_err();
            assert!(
                matches!(error, PartiqlError::ResultTooLarge { limit } if limit == 1 << 20),
                "{statement}: {error:?}"
            );
            assert!(error.to_string().contains("result budget of 1048576 bytes"));
        }
        // A join that keeps only matching pairs holds only those, and fits.
        let rows = execute_with_limits(
            tx,
            "SELECT a.n FROM Big AS a, Big AS b WHERE a.n = b.n",
            &[],
            small,
        )
        .unwrap();
        assert_eq!(rows.len(), DOCUMENTS);
        // Nothing the failed statements held is still charged: a statement that needs most of
        // the budget runs, and the transaction still writes and reads its own writes.
        let rows = execute_with_limits(tx, "SELECT * FROM Big", &[], budget(450_000)).unwrap();
        assert_eq!(rows.len(), DOCUMENTS);
        execute_with_limits(tx, "INSERT INTO Big {'n': 100}", &[], small).unwrap();
        let rows =
            execute_with_limits(tx, "SELECT VALUE n FROM Big WHERE n = 100", &[], small).unwrap();
        assert_eq!(rows, vec![ion("100")]);
    });
    // The transaction committed with its one write, and the same join fits a larger budget.
    db.tx(|tx| {
        let rows = execute_with_limits(
            tx,
            "SELECT COUNT(*) AS c FROM Big AS a, Big AS b",
            &[],
            budget(64 << 20),
        )
        .unwrap();
        let count = (DOCUMENTS + 1) * (DOCUMENTS + 1);
        assert_eq!(rows, vec![ion(&format!("{{c: {count}}}"))]);
    });
}

#[test]
fn rows_with_large_subquery_results_are_charged_whole() {
    let db = big_table();
    db.tx(|tx| {
        // One output row embedding the whole table goes over, like the table itself.
        let error = execute_with_limits(
            tx,
            "SELECT (SELECT * FROM Big) AS everything FROM Big AS b WHERE b.n = 0",
            &[],
            budget(5 * PAYLOAD_CHARS),
        )
        .unwrap_err();
        assert!(
            matches!(error, PartiqlError::ResultTooLarge { .. }),
            "{error:?}"
        );
    });
}

#[test]
fn the_size_estimate_tracks_the_binary_encoding() {
    let values = [
        "null",
        "true",
        "0",
        "-1",
        "123456789012",
        "170141183460469231731687303715884105727",
        "1.5e0",
        "12.50",
        "2017-02-28T23:59:59.999Z",
        "\"\"",
        "\"short\"",
        "some_symbol",
        "{{aGVsbG8=}}",
        "[1, 2, [3, \"four\"], (a b)]",
        "{VIN: \"1N4AL11D75C109151\", Year: 2011, Owners: {PrimaryOwner: {PersonId: \"abc\"}}}",
        "tag::{a: 1}",
    ];
    for text in values {
        let element = ion(text);
        let encoded = element
            .encode_as(WriteConfig::<v1_0::Binary>::new())
            .unwrap();
        let estimate = ion_binary_size_estimate(&element);
        // The encoding adds the version marker and the symbol table's framing; field names
        // and symbols themselves are counted.
        assert!(
            estimate <= encoded.len() && encoded.len() <= estimate + 32,
            "{text}: estimate {estimate}, encoded {}",
            encoded.len()
        );
    }
    // A large string is sized to the byte with its length header.
    let large = Element::string("y".repeat(100_000));
    let encoded = large.encode_as(WriteConfig::<v1_0::Binary>::new()).unwrap();
    assert_eq!(ion_binary_size_estimate(&large) + 4, encoded.len());
}
