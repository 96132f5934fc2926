//! The `quill` commands on ledgers kept in PostgreSQL (`--storage URL`) and `quill migrate`,
//! driving the real binary against a throwaway PostgreSQL (`quill-pgtest`): one server for this
//! test binary, one database per test.

use std::net::TcpListener;

mod common;
#[path = "common/workspace.rs"]
mod workspace;

use common::Listening;

use workspace::{base64_of, parse_ion, Workspace};

/// A new, empty PostgreSQL database named `name` for one test.
fn postgres_url(name: &str) -> String {
    quill_pgtest::PgServer::shared()
        .and_then(|server| server.create_database(name))
        .expect("a PostgreSQL database")
}

/// The names `quill ledger list` prints.
fn listed_names(work: &Workspace, storage: &[&str]) -> Vec<String> {
    let listed = work.ok(&[&["ledger", "list"][..], storage].concat());
    parse_ion(&listed)
        .iter()
        .map(|ledger| {
            let name = ledger.as_struct().and_then(|s| s.get("name"));
            name.and_then(|n| n.as_text())
                .unwrap_or_else(|| panic!("no name in {listed}"))
                .to_owned()
        })
        .collect()
}

/// `quill digest`'s output: (base64 digest, tip sequence number).
fn digest_of(output: &str) -> (String, i64) {
    let parsed = parse_ion(output);
    let digest = parsed[0].as_struct().expect("a struct");
    let bytes = digest.get("digest").unwrap().as_blob().unwrap();
    let tip = digest.get("digestTipAddress").unwrap().as_struct().unwrap();
    (
        base64_of(bytes),
        tip.get("sequenceNo").unwrap().as_i64().unwrap(),
    )
}

/// The base64 digest on the line of `quill migrate`'s output starting with `label`.
fn migrated_digest(output: &str, label: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {output}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

#[test]
fn ledgers_in_postgres_are_administered_verified_and_proven() {
    let work = Workspace::new();
    let url = postgres_url("administered");
    let name = "shop".to_owned();
    let storage = ["--storage", url.as_str()];
    let created = work.ok(&[&["ledger", "create", &name][..], &storage].concat());
    let created = parse_ion(&created);
    let created = created[0].as_struct().expect("a struct");
    assert_eq!(
        created.get("deletionProtection").and_then(|e| e.as_bool()),
        Some(true)
    );
    assert!(listed_names(&work, &storage).contains(&name));

    let shell = |script: &str| {
        work.ok(&[&["shell", "--ledger", &name, "-e", script][..], &storage].concat())
    };
    let inserted = parse_ion(&shell("CREATE TABLE V; INSERT INTO V {'VIN': 'X1'};"));
    let document_id = inserted[1]
        .as_struct()
        .unwrap()
        .get("documentId")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    let selected = shell("SELECT VIN FROM V;");
    assert!(selected.contains("X1"), "{selected}");

    let verified = work.ok(&[&["verify", "--ledger", &name][..], &storage].concat());
    assert!(
        verified.starts_with(&format!("verified 3 blocks of ledger {name}")),
        "{verified}"
    );
    let (digest, tip) =
        digest_of(&work.ok(&[&["digest", "--ledger", &name][..], &storage].concat()));
    assert_eq!(tip, 2);
    let verified_digest = verified.split_once('\n').unwrap().1;
    assert_eq!(digest_of(verified_digest), (digest.clone(), 2));

    let described = work.ok(&[&["ledger", "describe", &name][..], &storage].concat());
    let described = parse_ion(&described);
    let tables = described[0].as_struct().unwrap().get("tables").unwrap();
    assert_eq!(tables.as_sequence().unwrap().len(), 1, "{described:?}");
    let strand = described[0]
        .as_struct()
        .unwrap()
        .get("strandId")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    // Each statement of the script is a transaction: CREATE TABLE is block 1, the INSERT block 2.
    let block = format!("{{strandId:\"{strand}\",sequenceNo:2}}");
    let revision = work.ok(&[
        &["revision", "--ledger", &name, "--block", &block][..],
        &["--document-id", &document_id],
        &storage,
    ]
    .concat());
    assert!(revision.trim_end().ends_with("verified"), "{revision}");
    let consistent = work.ok(&[
        &["consistency", "--ledger", &name, "--from-digest", &digest][..],
        &["--from-tip", "2"],
        &storage,
    ]
    .concat());
    assert!(consistent.trim_end().ends_with("verified"), "{consistent}");

    let refused = work.fails(&[&["ledger", "delete", &name][..], &storage].concat());
    assert!(refused.contains("deletion protection"), "{refused}");
    work.ok(&[&["ledger", "delete", &name, "--force"][..], &storage].concat());
    assert!(!listed_names(&work, &storage).contains(&name));
    let gone = work.fails(&[&["verify", "--ledger", &name][..], &storage].concat());
    assert!(
        gone.contains(&format!("no ledger {name} in PostgreSQL")),
        "{gone}"
    );
}

#[test]
fn a_creation_that_stopped_half_way_is_listed_as_creating_and_can_be_redone() {
    let work = Workspace::new();
    let url = postgres_url("half_way");
    let storage = ["--storage", url.as_str()];
    // The row and genesis block of a creation that stopped before its control record.
    let store = quill_ledger::PostgresStore::connect(&url).expect("connect");
    drop(quill_ledger::Ledger::create_in(&store, "orders", Default::default()).expect("create"));
    let listed = parse_ion(&work.ok(&[&["ledger", "list"][..], &storage].concat()));
    let state = listed[0].as_struct().unwrap().get("state").unwrap();
    assert_eq!(state.as_text(), Some("CREATING"), "{listed:?}");

    let created = parse_ion(&work.ok(&[&["ledger", "create", "orders"][..], &storage].concat()));
    let state = created[0].as_struct().unwrap().get("state").unwrap();
    assert_eq!(state.as_text(), Some("ACTIVE"), "{created:?}");
    let listed = parse_ion(&work.ok(&[&["ledger", "list"][..], &storage].concat()));
    assert_eq!(listed, created);
    let refused = work.fails(&[&["ledger", "create", "orders"][..], &storage].concat());
    assert!(
        refused.contains("Ledger already exists: orders"),
        "{refused}"
    );
}

/// Genesis, CREATE TABLE and this many inserts: more blocks than one copy chunk (512).
const INSERTS: usize = 520;

#[test]
fn migrate_moves_a_long_chain_with_the_same_digest() {
    let work = Workspace::new();
    let url = postgres_url("migrated");
    let name = "inventory".to_owned();
    let exported_name = "reimported".to_owned();
    let data_dir = work.data_dir_text();
    let embedded = ["--data-dir", data_dir.as_str()];
    let storage = ["--storage", url.as_str()];
    work.ok(&[&["ledger", "create", &name][..], &embedded].concat());
    // One statement, one autocommitted transaction, one block.
    let mut script = String::from("CREATE TABLE Item; CREATE INDEX ON Item (n);");
    for n in 0..INSERTS {
        script.push_str(&format!("INSERT INTO Item {{'n': {n}, 'sku': 'sku-{n}'}};"));
    }
    work.ok(&[&["shell", "--ledger", &name, "-e", &script][..], &embedded].concat());
    let embedded_digest =
        digest_of(&work.ok(&[&["digest", "--ledger", &name][..], &embedded].concat()));
    assert_eq!(embedded_digest.1, INSERTS as i64 + 2);

    let migrated = work.ok(&[
        "migrate", "--from", &data_dir, "--to", &url, "--ledger", &name,
    ]);
    assert!(
        migrated.contains(&format!("migrated ledger {name}: {} blocks", INSERTS + 3)),
        "{migrated}"
    );
    assert_eq!(
        migrated_digest(&migrated, "embedded digest:"),
        embedded_digest.0
    );
    assert_eq!(
        migrated_digest(&migrated, "PostgreSQL digest:"),
        embedded_digest.0
    );

    let verified = work.ok(&[&["verify", "--ledger", &name][..], &storage].concat());
    assert!(
        verified.starts_with(&format!("verified {} blocks", INSERTS + 3)),
        "{verified}"
    );
    assert_eq!(
        digest_of(&work.ok(&[&["digest", "--ledger", &name][..], &storage].concat())),
        embedded_digest
    );
    // Derived state is rebuilt from the copied blocks, indexes included.
    let found = work.ok(&[
        &[
            "shell",
            "--ledger",
            &name,
            "-e",
            "SELECT sku FROM Item WHERE n = 517;",
        ][..],
        &storage,
    ]
    .concat());
    assert!(found.contains("sku-517"), "{found}");
    // The control record came along: deletion protection is still on.
    let described = work.ok(&[&["ledger", "describe", &name][..], &storage].concat());
    let described = parse_ion(&described);
    let control = described[0].as_struct().unwrap().get("ledger").unwrap();
    let protection = control.as_struct().unwrap().get("deletionProtection");
    assert_eq!(
        protection.and_then(|e| e.as_bool()),
        Some(true),
        "{described:?}"
    );

    // A second migration is refused, naming the ledger, and changes nothing.
    let refused = work.fails(&[
        "migrate", "--from", &data_dir, "--to", &url, "--ledger", &name,
    ]);
    assert!(
        refused.contains(&format!("ledger {name} already exists")),
        "{refused}"
    );
    assert!(refused.contains("nothing was migrated"), "{refused}");

    // Export from PostgreSQL, then import the export into PostgreSQL: the same chain.
    let exports = work.path().join("exports");
    let exports_text = exports.to_str().unwrap();
    work.ok(&[
        &["export", "--ledger", &name, "--to", exports_text][..],
        &storage,
    ]
    .concat());
    let reverified = work.ok(&["verify-export", exports_text]);
    assert!(
        reverified.starts_with(&format!("verified {} blocks", INSERTS + 3)),
        "{reverified}"
    );
    let imported = work.ok(&[
        &["import", "--from", exports_text, "--ledger", &exported_name][..],
        &storage,
    ]
    .concat());
    assert_eq!(
        migrated_digest(&imported, "PostgreSQL digest:"),
        embedded_digest.0
    );
    let reimported =
        digest_of(&work.ok(&[&["digest", "--ledger", &exported_name][..], &storage].concat()));
    assert_eq!(reimported, embedded_digest);
}

#[test]
fn migrate_refuses_a_missing_ledger_before_copying_anything_and_moves_every_ledger_by_default() {
    let work = Workspace::new();
    let url = postgres_url("every_ledger");
    let storage = ["--storage", url.as_str()];
    let data_dir = work.data_dir_text();
    for name in ["orders", "payments"] {
        work.ok(&["ledger", "create", name, "--data-dir", &data_dir]);
    }
    let refused = work.fails(&[
        "migrate", "--from", &data_dir, "--to", &url, "--ledger", "orders", "--ledger", "absent",
    ]);
    assert!(refused.contains("no ledger absent in"), "{refused}");
    assert_eq!(listed_names(&work, &storage), Vec::<String>::new());

    let migrated = work.ok(&["migrate", "--from", &data_dir, "--to", &url]);
    assert!(migrated.contains("migrated 2 ledger(s)"), "{migrated}");
    assert_eq!(listed_names(&work, &storage), ["orders", "payments"]);
    for name in ["orders", "payments"] {
        let embedded = ["--data-dir", data_dir.as_str()];
        assert_eq!(
            digest_of(&work.ok(&[&["digest", "--ledger", name][..], &storage].concat())),
            digest_of(&work.ok(&[&["digest", "--ledger", name][..], &embedded].concat()))
        );
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn an_unreachable_postgres_fails_clearly_without_showing_the_password() {
    let work = Workspace::new();
    let port = closed_port();
    let url = format!("postgresql://quill:s3cret-pw@127.0.0.1:{port}/quill?connect_timeout=2");
    let data_dir = work.data_dir_text();
    work.ok(&["ledger", "create", "local", "--data-dir", &data_dir]);
    for args in [
        vec!["verify", "--ledger", "local", "--storage", &url],
        vec!["ledger", "list", "--storage", &url],
        vec!["migrate", "--from", &data_dir, "--to", &url],
    ] {
        let error = work.fails(&args);
        assert!(
            error.contains(&format!("postgresql://quill:***@127.0.0.1:{port}/quill")),
            "{args:?}: {error}"
        );
        assert!(
            error.contains("cannot connect to PostgreSQL"),
            "{args:?}: {error}"
        );
        assert!(!error.contains("s3cret-pw"), "{args:?}: {error}");
    }
}

#[test]
fn storage_and_data_dir_are_exclusive_and_storage_takes_a_postgres_url() {
    let work = Workspace::new();
    let both = work.quill(&[
        "verify",
        "--ledger",
        "x",
        "--data-dir",
        "d",
        "--storage",
        "postgres://db/quill",
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let error = work.fails(&["digest", "--ledger", "x", "--storage", "mysql://db/quill"]);
    assert!(
        error.contains("--storage takes a PostgreSQL URL"),
        "{error}"
    );
    // `log-key` takes `--storage` too (tests/postgres_tlog.rs), checked the same way.
    let error = work.fails(&["log-key", "--storage", "mysql://db/quill"]);
    assert!(
        error.contains("--storage takes a PostgreSQL URL"),
        "{error}"
    );
}

#[test]
fn a_read_only_standby_is_refused_clearly() {
    let work = Workspace::new();
    let primary = quill_pgtest::PgServer::start().expect("a primary");
    let standby = quill_pgtest::PgServer::start_standby(&primary, false).expect("a standby");
    let url = standby.url();
    for args in [
        vec!["ledger", "create", "orders", "--storage", &url],
        vec!["verify", "--ledger", "orders", "--storage", &url],
    ] {
        let error = work.fails(&args);
        assert!(error.contains("read-only"), "{args:?}: {error}");
        assert!(error.contains(&url), "{args:?}: {error}");
    }
}

/// `quill serve --storage` keeps each ledger's derived state in `--data-dir/cache/<ledger>`:
/// restarted after a SIGKILL, and after a graceful stop, it serves the ledger from that cache
/// (caught up, not rebuilt) instead of replaying it from PostgreSQL.
#[test]
fn a_restarted_server_serves_from_its_cache_without_replaying_the_ledger() {
    let work = Workspace::new();
    let url = postgres_url("serve_restart");
    let data = work.path().join("server").to_str().unwrap().to_owned();
    work.ok(&["ledger", "create", "shop", "--storage", &url]);
    let serve = |run: u32| {
        let log = work.path().join(format!("serve-{run}.log"));
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--storage",
            &url,
            "--data-dir",
            &data,
        ];
        (Listening::start_logging(&args, &log), log)
    };
    let shell =
        |server: &Listening, statements: &str| common::shell_ok(&server.address, statements);
    let count = |server: &Listening| shell(server, "SELECT COUNT(*) AS c FROM Item;");

    let (server, _) = serve(1);
    shell(
        &server,
        "CREATE TABLE Item; INSERT INTO Item {'n': 1}; INSERT INTO Item {'n': 2};",
    );
    let cache = std::path::Path::new(&data).join("cache").join("shop");
    assert!(cache.join("cache.ion").exists() && cache.join("state.redb").exists());
    drop(server); // SIGKILL

    let (server, log) = serve(2);
    assert!(count(&server).contains("c: 2"), "{}", count(&server));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("derived state caught up from PostgreSQL"),
        "{text}"
    );
    assert!(!text.contains("building it again"), "{text}");
    shell(&server, "INSERT INTO Item {'n': 3};");
    server.terminate();

    let (server, log) = serve(3);
    assert!(count(&server).contains("c: 3"), "{}", count(&server));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("caught_up=0"), "{text}");
    assert!(!text.contains("building it again"), "{text}");
}
