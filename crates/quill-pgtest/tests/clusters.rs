//! The kit against real PostgreSQL clusters. Each test starts its own (about a second each); none
//! is skipped when PostgreSQL is missing: they fail, naming `scripts/setup.sh postgres`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use quill_pgtest::{multi_host_url, PgServer, PgTestError, SKIP_MOUNT_ENV};

fn rows(client: &mut Client, query: &str) -> Vec<String> {
    client
        .query(query, &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn setting(client: &mut Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .unwrap()
        .get(0)
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_small_tablespace_runs_out_of_disk_grows_and_is_unmounted_when_dropped() {
    let server = PgServer::shared().unwrap();
    let tablespace = match server.small_tablespace("small", 1 << 20) {
        Ok(tablespace) => tablespace,
        Err(e) if std::env::var_os(SKIP_MOUNT_ENV).is_some() => {
            eprintln!("skipped ({SKIP_MOUNT_ENV} is set): {e}");
            return;
        }
        Err(e) => panic!(
            "{e}\n(set {SKIP_MOUNT_ENV}=1 to skip this test where mounting a tmpfs is impossible)"
        ),
    };
    let location = tablespace.location().to_owned();
    let url = tablespace.create_database("in_small").unwrap();
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE t (b bytea); ALTER TABLE t ALTER b SET STORAGE EXTERNAL")
        .unwrap();
    assert_eq!(
        rows(
            &mut client,
            "SELECT tablespace::text FROM pg_tables WHERE tablename = 't'"
        ),
        ["small"],
        "tables go to the small tablespace by default"
    );
    let fill = "INSERT INTO t SELECT convert_to(repeat('x', 256 * 1024), 'UTF8')";
    let full = (0..8)
        .find_map(|_| client.batch_execute(fill).err())
        .expect("1 MiB fills up");
    assert_eq!(
        full.code(),
        Some(&postgres::error::SqlState::DISK_FULL),
        "{full:?}"
    );
    tablespace.resize(4 << 20).unwrap();
    client.batch_execute(fill).unwrap();
    drop(client);

    drop(tablespace);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(location.to_str().unwrap()), "{mounts}");
    assert!(!location.exists());
    let mut client = server.client().unwrap();
    assert!(rows(
        &mut client,
        "SELECT spcname::text FROM pg_tablespace WHERE spcname = 'small'"
    )
    .is_empty());
}

#[test]
fn a_started_cluster_is_durable_loopback_only_and_serves_its_url() {
    let server = PgServer::start().unwrap();
    assert!(
        server.url().starts_with("postgresql://postgres@127.0.0.1:"),
        "{}",
        server.url()
    );
    assert!(server.url().ends_with(&format!(":{}/quill", server.port())));

    let mut client = Client::connect(&server.url(), NoTls).unwrap();
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(database, "quill");
    for (name, value) in [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("wal_level", "replica"),
        ("listen_addresses", "127.0.0.1"),
    ] {
        assert_eq!(setting(&mut client, name), value, "{name}");
    }
    client
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('written')")
        .unwrap();
    assert_eq!(
        rows(&mut server.client().unwrap(), "SELECT v FROM t"),
        ["written"]
    );
}

#[test]
fn extra_settings_apply() {
    let server = PgServer::start_with(&[("max_connections", "150")]).unwrap();
    assert_eq!(
        setting(&mut server.client().unwrap(), "max_connections"),
        "150"
    );
}

#[test]
fn a_killed_cluster_leaves_nothing_running_and_comes_back_with_its_commits() {
    let mut server = PgServer::start().unwrap();
    let port = server.port();
    let mut client = server.client().unwrap();
    client
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')")
        .unwrap();
    // An open session too: its backend must go with the postmaster.
    let mut idle = server.client().unwrap();
    idle.batch_execute("BEGIN; INSERT INTO t VALUES ('never committed')")
        .unwrap();

    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(!listening(port), "something still listens on {port}");
    assert!(
        client.batch_execute("SELECT 1").is_err(),
        "a session survived the kill"
    );
    assert!(matches!(server.kill(), Err(PgTestError::NotRunning { .. })));

    server.start_again().unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(
        rows(&mut server.client().unwrap(), "SELECT v FROM t"),
        ["committed"]
    );
    assert!(matches!(
        server.start_again(),
        Err(PgTestError::Running { .. })
    ));

    server.stop().unwrap();
    assert!(!listening(port));
    server.start_again().unwrap();
    assert_eq!(
        rows(&mut server.client().unwrap(), "SELECT v FROM t"),
        ["committed"]
    );
}

#[test]
fn dropping_a_cluster_removes_its_directory() {
    let server = PgServer::start().unwrap();
    let (data, port) = (server.data_dir().to_path_buf(), server.port());
    drop(server);
    assert!(!data.exists(), "{} is still there", data.display());
    assert!(!listening(port));
}

#[test]
fn a_synchronous_standby_takes_over_with_every_commit_and_the_multi_host_url_follows() {
    let mut primary = PgServer::start().unwrap();
    let standby = PgServer::start_standby(&primary, true).unwrap();
    assert_ne!(standby.port(), primary.port());
    let url = multi_host_url(&[&primary, &standby]);
    assert_eq!(
        url,
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/quill?target_session_attrs=read-write",
            primary.port(),
            standby.port()
        )
    );

    let mut writer = Client::connect(&url, NoTls).unwrap();
    let port: i32 = writer
        .query_one("SELECT inet_server_port()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        port,
        i32::from(primary.port()),
        "read-write picks the primary"
    );
    writer
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('acknowledged')")
        .unwrap();
    let mut reader = standby.client().unwrap();
    assert_eq!(setting(&mut reader, "transaction_read_only"), "on");
    // Synchronous: the commit above returned only once the standby had it (remote_flush).
    assert_eq!(rows(&mut reader, "SELECT v FROM t"), ["acknowledged"]);

    primary.kill().unwrap();
    standby.promote().unwrap();
    assert_eq!(
        rows(&mut standby.client().unwrap(), "SELECT v FROM t"),
        ["acknowledged"]
    );

    let mut writer = Client::connect(&url, NoTls).unwrap();
    let port: i32 = writer
        .query_one("SELECT inet_server_port()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        port,
        i32::from(standby.port()),
        "read-write follows the promotion"
    );
    writer
        .batch_execute("INSERT INTO t VALUES ('after failover')")
        .unwrap();
    assert_eq!(
        rows(&mut writer, "SELECT v FROM t ORDER BY v"),
        ["acknowledged", "after failover"]
    );
}

#[test]
fn an_asynchronous_standby_streams_without_holding_commits() {
    let primary = PgServer::start().unwrap();
    let standby = PgServer::start_standby(&primary, false).unwrap();
    let mut client = primary.client().unwrap();
    assert_eq!(setting(&mut client, "synchronous_standby_names"), "");
    let state: String = client
        .query_one("SELECT sync_state FROM pg_stat_replication", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "async");
    drop(standby);
    // With no synchronous standby configured, the primary commits after the standby is gone.
    client
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .unwrap();
}

#[test]
fn the_shared_cluster_is_one_and_hands_out_databases() {
    let server = PgServer::shared().unwrap();
    assert_eq!(PgServer::shared().unwrap().port(), server.port());
    let url = server.create_database("shared_one").unwrap();
    assert_eq!(
        url,
        format!(
            "postgresql://postgres@127.0.0.1:{}/shared_one",
            server.port()
        )
    );
    let mut client = Client::connect(&url, NoTls).unwrap();
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(database, "shared_one");
    for bad in ["", "Upper", "semi;colon", "with space"] {
        assert!(
            matches!(
                server.create_database(bad),
                Err(PgTestError::DatabaseName(_))
            ),
            "{bad:?}"
        );
    }
}

/// Set in the copy of this test binary that the test below starts and SIGKILLs.
const DOOMED: &str = "QUILL_PGTEST_DOOMED_PROCESS";

#[test]
fn the_cluster_of_a_test_process_that_dies_is_shut_down_and_removed() {
    if std::env::var_os(DOOMED).is_some() {
        let server = PgServer::shared().unwrap();
        println!("cluster {} {}", server.port(), server.data_dir().display());
        thread::sleep(Duration::from_secs(600));
        return;
    }
    let name = "the_cluster_of_a_test_process_that_dies_is_shut_down_and_removed";
    let mut doomed = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env(DOOMED, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(doomed.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find(|line| line.starts_with("cluster "))
        .expect("the doomed process printed no cluster");
    let mut fields = line.split(' ').skip(1);
    let port: u16 = fields.next().unwrap().parse().unwrap();
    let data = PathBuf::from(fields.next().unwrap());
    assert!(listening(port) && data.exists());

    doomed.kill().unwrap(); // SIGKILL: no destructor, no exit handler
    doomed.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listening(port) || data.exists() {
        assert!(
            Instant::now() < deadline,
            "the cluster on {port} outlived its test process"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
