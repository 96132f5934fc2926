//! Throwaway PostgreSQL clusters for tests: a fresh cluster in a temporary directory, listening on
//! a free 127.0.0.1 port only (its unix socket in that directory), durable (`fsync=on`,
//! `synchronous_commit=on`), trusting every local connection, with a database `quill` owned by
//! the superuser `postgres`. Streaming standbys (synchronous or not), promotion, SIGKILL of a
//! whole cluster and restarts on the same port are what failover and "PostgreSQL returns" tests
//! need. Every postmaster runs under a small shell guard (`guard.sh`) that shuts it down and
//! removes its directory should the test process die without doing so; [`PgServer::shared`]
//! relies on it.
//!
//! [`PgServer::small_tablespace`] puts a tablespace on a small tmpfs of its own (root only), so
//! that what is stored there runs out of disk while the rest of the cluster has room.
//!
//! The server binaries are Debian's (`scripts/setup.sh postgres`): the highest version under
//! `/usr/lib/postgresql/*/bin`, or the directory `PG_BIN` names. PostgreSQL refuses to run as
//! root, so a root test process runs them as the `postgres` system user of the Debian package,
//! which then owns the cluster's directory.
//!
//! ```no_run
//! let server = quill_pgtest::PgServer::start()?;
//! let mut client = server.client()?;
//! client.batch_execute("CREATE TABLE t (v int)")?;
//! println!("{}", server.url()); // postgresql://postgres@127.0.0.1:PORT/quill
//! # Ok::<(), quill_pgtest::PgTestError>(())
//! ```

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use tempfile::TempDir;

/// The superuser every cluster is created with (trusted without a password).
pub const USER: &str = "postgres";
/// The database every primary is created with.
pub const DATABASE: &str = "quill";

/// Set (to anything) to skip the tests that need [`PgServer::small_tablespace`] where mounting
/// a tmpfs is impossible (not root, or no mount permission); without it they fail, so that CI
/// cannot lose them silently.
pub const SKIP_MOUNT_ENV: &str = "QUILL_TEST_SKIP_MOUNT";

/// How long a cluster may take to accept connections (crash recovery included); generous
/// because CI shares two cores with builds.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the processes of a SIGKILLed cluster may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// Attempts at a free port: another process may take the one picked before postgres binds it.
const PORT_ATTEMPTS: usize = 5;

/// Settings of every cluster, appended to its `postgresql.conf`. A standby copies them from its
/// primary with the rest of the data directory.
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("wal_level", "replica"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("hot_standby", "on"),
    // Crash recovery first syncs the data directory, which initdb --no-sync left unsynced: one
    // syncfs() instead of an fsync() per file (7 s → 1.3 s on a busy two-core machine).
    ("recovery_init_sync_method", "syncfs"),
];

/// See its header; run by `sh`.
const GUARD: &str = include_str!("guard.sh");

/// Loopback only, no password: these clusters exist for tests on one machine.
const PG_HBA: &str = "\
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";

#[derive(Debug, thiserror::Error)]
pub enum PgTestError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres, pg_ctl, pg_basebackup) in {searched}: \
         run `scripts/setup.sh postgres` (Debian package postgresql) or set PG_BIN"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "running as root, and PostgreSQL refuses to: there is no `postgres` system user to run it \
         as (run `scripts/setup.sh postgres`, which installs Debian's postgresql package)"
    )]
    NoPostgresUser,
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error("postgres exited while starting ({status}); its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("timed out after {timeout:?} waiting until {what}; the server log:\n{log}")]
    Timeout {
        what: String,
        timeout: Duration,
        log: String,
    },
    #[error("the server on port {port} is still running: stop or kill it first")]
    Running { port: u16 },
    #[error("the server on port {port} is not running")]
    NotRunning { port: u16 },
    #[error(
        "database and tablespace names here are made of a-z, 0-9 and _ (so neither SQL nor URLs \
         need quoting): {0:?}"
    )]
    DatabaseName(String),
    #[error(
        "mounting the tmpfs of a small tablespace needs root, and this process runs as uid {uid}"
    )]
    MountNeedsRoot { uid: u32 },
    #[error("pg_promote() did not promote the standby on port {port}")]
    NotPromoted { port: u16 },
    #[error("SQL on the test cluster: {0}")]
    Sql(#[from] postgres::Error),
}

type Result<T> = std::result::Result<T, PgTestError>;

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> PgTestError {
    let what = what.into();
    move |source| PgTestError::Io { what, source }
}

/// Where the server binaries are and which user runs them.
#[derive(Debug, Clone)]
struct Install {
    bin: PathBuf,
    /// `(uid, gid)` of the `postgres` user when this process is root; `None` runs them as us.
    run_as: Option<(u32, u32)>,
}

impl Install {
    fn find() -> Result<Install> {
        let bin = match std::env::var_os("PG_BIN") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                has_server_binaries(&dir).then_some(dir).ok_or_else(|| {
                    PgTestError::BinariesNotFound {
                        searched: "PG_BIN".into(),
                    }
                })?
            }
            None => debian_bin_dir()?,
        };
        let run_as = if effective_uid()? == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        Ok(Install { bin, run_as })
    }

    /// A server binary, run as the cluster's owner, from `cwd` (which the owner can enter: a
    /// root test's working directory may be closed to it).
    fn command(&self, program: &str, cwd: &Path) -> Command {
        self.command_in_path(self.bin.join(program), cwd)
    }

    /// A program found on PATH (or at a path), run as [`Install::command`] runs the binaries.
    fn command_in_path(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(cwd).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Runs a command to completion; its output goes into the error when it fails.
    fn run(&self, command: &mut Command) -> Result<()> {
        let description = format!("{command:?}");
        let output = command
            .output()
            .map_err(io_error(format!("running {description}")))?;
        if output.status.success() {
            return Ok(());
        }
        Err(PgTestError::CommandFailed {
            command: description,
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }

    /// A new temporary directory for one cluster, owned by the user that runs it.
    fn cluster_dir(&self) -> Result<TempDir> {
        let dir = tempfile::Builder::new()
            .prefix("quill-pg.")
            .tempdir()
            .map_err(io_error("creating a temporary directory"))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io_error(format!("chown {}", dir.path().display())))?;
        }
        Ok(dir)
    }
}

/// This process's effective user: /proc/self belongs to it.
fn effective_uid() -> Result<u32> {
    Ok(fs::metadata("/proc/self")
        .map_err(io_error("reading /proc/self"))?
        .uid())
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_ctl", "pg_basebackup"]
        .iter()
        .all(|name| dir.join(name).is_file())
}

/// The `bin` directory of the highest PostgreSQL version under /usr/lib/postgresql.
fn debian_bin_dir() -> Result<PathBuf> {
    const ROOT: &str = "/usr/lib/postgresql";
    let not_found = || PgTestError::BinariesNotFound {
        searched: format!("{ROOT}/*/bin"),
    };
    let versions = fs::read_dir(ROOT).map_err(|_| not_found())?;
    let names: Vec<String> = versions
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    let mut candidates = names
        .iter()
        .filter(|name| has_server_binaries(&Path::new(ROOT).join(name).join("bin")))
        .collect::<Vec<_>>();
    candidates.sort_by_key(|name| version_key(name));
    candidates
        .last()
        .map(|name| Path::new(ROOT).join(name).join("bin"))
        .ok_or_else(not_found)
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`: numeric order, so 10 sorts after 9.6.
fn version_key(name: &str) -> Vec<u32> {
    name.split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    passwd_entry(&passwd, "postgres").ok_or(PgTestError::NoPostgresUser)
}

fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] if *name == user => {
                Some((uid.parse().ok()?, gid.parse().ok()?))
            }
            _ => None,
        }
    })
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("binding 127.0.0.1:0 to find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_error("reading a bound port"))?
        .port())
}

/// One PostgreSQL cluster (primary or standby) and, while it runs, its postmaster. Dropping it
/// shuts the server down (immediately: its data is thrown away) and removes its directory.
#[derive(Debug)]
pub struct PgServer {
    install: Install,
    /// `data/` (the cluster), the unix socket and `server.log`.
    dir: TempDir,
    /// `dir/data`, canonical, as the cluster's processes see it as their working directory.
    data: PathBuf,
    port: u16,
    /// The guard shell running the postmaster; it exits with the postmaster. Dropping it closes
    /// its stdin, which tells it the test process is done with the cluster.
    postmaster: Option<Child>,
}

impl PgServer {
    /// A new primary cluster with the default settings.
    pub fn start() -> Result<PgServer> {
        PgServer::start_with(&[])
    }

    /// A new primary cluster with `settings` (name, value as in postgresql.conf, e.g.
    /// `("max_connections", "200")`) on top of the defaults.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<PgServer> {
        let install = Install::find()?;
        let dir = install.cluster_dir()?;
        let data = dir.path().join("data");
        install.run(
            install
                .command("initdb", dir.path())
                .arg("--pgdata")
                .arg(&data)
                .args([
                    "--username",
                    USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                ])
                // The cluster is thrown away with the test; its server runs with fsync=on.
                .arg("--no-sync"),
        )?;
        let mut config = String::from("\n# quill-pgtest\n");
        for (name, value) in SETTINGS.iter().chain(settings) {
            config.push_str(&format!("{name} = {value}\n"));
        }
        append(&data.join("postgresql.conf"), &config)?;
        fs::write(data.join("pg_hba.conf"), PG_HBA).map_err(io_error("writing pg_hba.conf"))?;
        let mut server = PgServer::new(install, dir)?;
        server.launch_on_a_free_port()?;
        server
            .connect("postgres")?
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
        Ok(server)
    }

    /// One cluster for the whole test binary, started by the first caller (and again by the
    /// next one if that failed). It is never dropped: when the process exits, its guard shuts
    /// it down and removes it. Tests that share it can each use a database of their own
    /// ([`PgServer::create_database`]).
    pub fn shared() -> Result<&'static PgServer> {
        static SHARED: Mutex<Option<&'static PgServer>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = *shared {
            return Ok(server);
        }
        let server: &'static PgServer = Box::leak(Box::new(PgServer::start()?));
        *shared = Some(server);
        Ok(server)
    }

    /// A streaming standby of `primary` in a new directory on another port: `pg_basebackup -R`
    /// with a replication slot (the primary keeps the WAL it has not received). Returns once
    /// the primary's `pg_stat_replication` shows it streaming; with `synchronous`, the primary's
    /// `synchronous_standby_names` is set to it (replacing any earlier one) and reloaded, and
    /// this returns once its `sync_state` is `sync`, so every commit on the primary then waits
    /// for it. A synchronous standby that is gone blocks the primary's commits.
    pub fn start_standby(primary: &PgServer, synchronous: bool) -> Result<PgServer> {
        static STANDBYS: AtomicU32 = AtomicU32::new(0);
        // Names the walreceiver's connection (application_name) and the slot: lower case,
        // digits and `_`, so neither needs quoting.
        let name = format!(
            "standby_{}_{}",
            std::process::id(),
            STANDBYS.fetch_add(1, Ordering::Relaxed)
        );
        let install = primary.install.clone();
        let dir = install.cluster_dir()?;
        let data = dir.path().join("data");
        install.run(
            install
                .command("pg_basebackup", dir.path())
                .arg("--pgdata")
                .arg(&data)
                .arg("--dbname")
                .arg(format!(
                    "host=127.0.0.1 port={} user={USER} application_name={name}",
                    primary.port
                ))
                .args([
                    "--write-recovery-conf",
                    "--wal-method=stream",
                    "--checkpoint=fast",
                ])
                .args(["--create-slot", "--slot", &name, "--no-sync"]),
        )?;
        // The copy carries the primary's synchronous_standby_names if an earlier standby set
        // it; once promoted, this cluster would wait for a standby it does not have.
        append(
            &data.join("postgresql.auto.conf"),
            "synchronous_standby_names = ''\n",
        )?;
        let mut standby = PgServer::new(install, dir)?;
        standby.launch_on_a_free_port()?;

        let mut client = primary.connect("postgres")?;
        primary.wait_for_standby(&mut client, &name, "async")?;
        if synchronous {
            // Two statements: ALTER SYSTEM cannot run in the implicit transaction of a batch.
            client.batch_execute(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{name}'"
            ))?;
            client.batch_execute("SELECT pg_reload_conf()")?;
            primary.wait_for_standby(&mut client, &name, "sync")?;
        }
        Ok(standby)
    }

    fn new(install: Install, dir: TempDir) -> Result<PgServer> {
        let data = dir.path().join("data");
        let data = data
            .canonicalize()
            .map_err(io_error(format!("resolving {}", data.display())))?;
        Ok(PgServer {
            install,
            dir,
            data,
            port: 0,
            postmaster: None,
        })
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `postgresql://postgres@127.0.0.1:PORT/quill`.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// Creates the database `name` (a-z, 0-9, _) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        check_name(name)?;
        self.connect("postgres")?
            .batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url_of(name))
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// A client of the `quill` database.
    pub fn client(&self) -> Result<Client> {
        self.connect(DATABASE)
    }

    /// A tablespace `name` (a-z, 0-9, _) on a tmpfs of `size_bytes` mounted for it alone (the
    /// size is rounded up to whole pages): what is stored there runs out of disk (SQLSTATE
    /// 53100, disk_full) once the tmpfs is full, while the rest of the cluster, its WAL
    /// included, keeps its room. Mounting needs root: [`PgTestError::MountNeedsRoot`]
    /// otherwise. Dropping the returned guard drops the databases it created, then the
    /// tablespace, and unmounts the tmpfs.
    pub fn small_tablespace(&self, name: &str, size_bytes: u64) -> Result<SmallTablespace<'_>> {
        check_name(name)?;
        let Some((uid, gid)) = self.install.run_as else {
            return Err(PgTestError::MountNeedsRoot {
                uid: effective_uid()?,
            });
        };
        // In the cluster's directory: should the test process die without dropping the
        // guard, the postmaster's guard (guard.sh) removing that directory empties the tmpfs
        // too (only the empty mount remains).
        let mount_point = self.dir.path().join(format!("tablespace_{name}"));
        fs::create_dir(&mount_point)
            .map_err(io_error(format!("creating {}", mount_point.display())))?;
        let mounted = self.install.run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size_bytes},mode=0700,uid={uid},gid={gid}"))
                .arg("tmpfs")
                .arg(&mount_point),
        );
        if let Err(e) = mounted {
            let _ = fs::remove_dir(&mount_point);
            return Err(e);
        }
        let mut tablespace = SmallTablespace {
            server: self,
            name: name.to_owned(),
            mount_point,
            created: false,
            databases: Mutex::new(Vec::new()),
        };
        let location = tablespace.mount_point.display().to_string();
        self.connect("postgres")?.batch_execute(&format!(
            "CREATE TABLESPACE {name} LOCATION '{}'",
            location.replace('\'', "''")
        ))?;
        tablespace.created = true;
        Ok(tablespace)
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the postmaster this handle started is running.
    pub fn is_running(&mut self) -> bool {
        self.postmaster
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILLs the postmaster and every process of the cluster, as a crash would: no shutdown
    /// checkpoint, nothing left listening, the data directory as the crash left it
    /// (`start_again` recovers it). Its shared memory segment is removed too, as a reboot would.
    pub fn kill(&mut self) -> Result<()> {
        let guard = self
            .postmaster
            .take()
            .ok_or(PgTestError::NotRunning { port: self.port })?;
        let (postmaster, shared_memory) = self.pid_file();
        // Every child of a postmaster makes itself a session leader, so no process group holds
        // them all; all of them work in the data directory, though. The postmaster goes first,
        // so that it starts no new process.
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let mut survivors = processes_working_in(&self.data);
            if survivors.is_empty() {
                break;
            }
            survivors.sort_by_key(|pid| Some(*pid) != postmaster);
            if Instant::now() > deadline {
                return Err(self.timeout(format!("the processes {survivors:?} exit"), KILL_TIMEOUT));
            }
            for pid in survivors {
                // Fails when the process is already gone, which is what we want anyway.
                let _ = self
                    .install
                    .command("pg_ctl", self.dir.path())
                    .args(["kill", "KILL", &pid.to_string()])
                    .output();
            }
            thread::sleep(POLL);
        }
        reap(guard, "waiting for the guard of the killed postmaster")?;
        if let Some(id) = shared_memory {
            self.install.run(Command::new("ipcrm").args(["-m", &id]))?;
        }
        Ok(())
    }

    /// Fast shutdown (`pg_ctl stop -m fast`): sessions are ended, a shutdown checkpoint written.
    pub fn stop(&mut self) -> Result<()> {
        self.shut_down("fast")
    }

    /// Starts the cluster again on the same port and data directory, after `kill` or `stop`,
    /// and waits until it accepts connections (after crash recovery, if it was killed).
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Err(PgTestError::Running { port: self.port });
        }
        self.spawn_postmaster()?;
        self.wait_until_ready().map(drop)
    }

    /// Promotes this standby (`pg_promote()`, which waits for the end of recovery) and returns
    /// once it accepts writes.
    pub fn promote(&self) -> Result<()> {
        let mut client = self.connect("postgres")?;
        let promoted: bool = client.query_one("SELECT pg_promote(true, 60)", &[])?.get(0);
        if !promoted {
            return Err(PgTestError::NotPromoted { port: self.port });
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while client
            .query_one("SELECT pg_is_in_recovery()", &[])?
            .get::<_, bool>(0)
        {
            if Instant::now() > deadline {
                return Err(self.timeout("the promoted standby leaves recovery", READY_TIMEOUT));
            }
            thread::sleep(POLL);
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn connect(&self, database: &str) -> Result<Client> {
        Ok(postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5))
            .connect(NoTls)?)
    }

    fn timeout(&self, what: impl Into<String>, timeout: Duration) -> PgTestError {
        PgTestError::Timeout {
            what: what.into(),
            timeout,
            log: self.log(),
        }
    }

    /// Starts the postmaster on a free port, trying another when one was taken meanwhile.
    fn launch_on_a_free_port(&mut self) -> Result<()> {
        let mut attempt = 1;
        loop {
            self.port = free_port()?;
            self.spawn_postmaster()?;
            match self.wait_until_ready() {
                Err(PgTestError::Exited { log, .. })
                    if attempt < PORT_ATTEMPTS && log.contains("could not bind") =>
                {
                    attempt += 1;
                }
                result => return result.map(drop),
            }
        }
    }

    fn spawn_postmaster(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io_error("opening server.log"))?;
        let stderr = log
            .try_clone()
            .map_err(io_error("duplicating server.log"))?;
        let child = self
            .install
            .command_in_path("sh", self.dir.path())
            .args(["-c", GUARD, "guard"])
            .arg(self.dir.path())
            .arg(self.install.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(io_error("starting postgres"))?;
        self.postmaster = Some(child);
        Ok(())
    }

    /// Waits until the server accepts connections; fails early if the postmaster exits.
    fn wait_until_ready(&mut self) -> Result<Client> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(postmaster) = self.postmaster.as_mut() {
                if let Some(status) = postmaster
                    .try_wait()
                    .map_err(io_error("checking on the postmaster"))?
                {
                    self.postmaster = None;
                    return Err(PgTestError::Exited {
                        status,
                        log: self.log(),
                    });
                }
            }
            if let Ok(client) = self.connect("postgres") {
                return Ok(client);
            }
            if Instant::now() > deadline {
                return Err(self.timeout("postgres accepts connections", READY_TIMEOUT));
            }
            thread::sleep(POLL);
        }
    }

    fn wait_for_standby(&self, client: &mut Client, name: &str, sync_state: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let query = "SELECT count(*) FROM pg_stat_replication \
                     WHERE application_name = $1 AND state = 'streaming' AND sync_state = $2";
        while client
            .query_one(query, &[&name, &sync_state])?
            .get::<_, i64>(0)
            == 0
        {
            if Instant::now() > deadline {
                return Err(self.timeout(
                    format!("standby {name} streams (sync_state {sync_state})"),
                    READY_TIMEOUT,
                ));
            }
            thread::sleep(POLL);
        }
        Ok(())
    }

    fn shut_down(&mut self, mode: &str) -> Result<()> {
        if self.postmaster.is_none() {
            return Ok(());
        }
        self.install.run(
            self.install
                .command("pg_ctl", self.dir.path())
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", mode, "-w", "-t", "60"]),
        )?;
        if let Some(guard) = self.postmaster.take() {
            reap(guard, "waiting for the guard of the stopped postmaster")?;
        }
        Ok(())
    }

    /// The postmaster's pid and the id of its System V shared memory segment, from
    /// `postmaster.pid` (its first line, and the second field of its seventh).
    fn pid_file(&self) -> (Option<u32>, Option<String>) {
        let pid_file = fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        let mut lines = pid_file.lines();
        let pid = lines.next().and_then(|line| line.trim().parse().ok());
        let shared_memory = lines.nth(5).and_then(|line| line.split_whitespace().nth(1));
        (pid, shared_memory.map(str::to_string))
    }
}

/// Waits for a guard whose postmaster is stopping, then closes its stdin. Not the other way
/// round (`Child::wait` closes stdin first): `pg_ctl stop` returns once `postmaster.pid` is
/// gone, a moment before the postmaster exits, and a guard seeing end-of-file while its
/// postmaster still runs takes the test process for dead and removes the cluster's directory.
fn reap(mut guard: Child, what: &'static str) -> Result<()> {
    let pipe = guard.stdin.take();
    guard.wait().map_err(io_error(what))?;
    drop(pipe);
    Ok(())
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.postmaster.is_some() && self.shut_down("immediate").is_err() {
            let _ = self.kill();
        }
    }
}

/// Database and tablespace names here are made of a-z, 0-9 and _, so that neither SQL nor URLs
/// need quoting.
fn check_name(name: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if name.is_empty() || !name.chars().all(plain) {
        return Err(PgTestError::DatabaseName(name.to_string()));
    }
    Ok(())
}

/// A tablespace on a tmpfs of its own (see [`PgServer::small_tablespace`]).
#[derive(Debug)]
pub struct SmallTablespace<'a> {
    server: &'a PgServer,
    name: String,
    /// Where the tmpfs is mounted (in the cluster's directory); removed once unmounted.
    mount_point: PathBuf,
    /// Whether `CREATE TABLESPACE` succeeded (so dropping it is due).
    created: bool,
    /// Databases created by [`SmallTablespace::create_database`], dropped before it.
    databases: Mutex<Vec<String>>,
}

impl SmallTablespace<'_> {
    /// The tablespace's name, for `TABLESPACE name` clauses.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its tmpfs is mounted.
    pub fn location(&self) -> &Path {
        &self.mount_point
    }

    /// Creates the database `name` (a-z, 0-9, _) whose tables, indexes and TOAST tables go to
    /// this tablespace by default (`default_tablespace`; its system catalogs stay in the
    /// default tablespace, so the database still works when this one is full). Returns its
    /// URL. It is dropped with the tablespace.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let url = self.server.create_database(name)?;
        self.databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_owned());
        self.server.connect("postgres")?.batch_execute(&format!(
            "ALTER DATABASE {name} SET default_tablespace = {}",
            self.name
        ))?;
        Ok(url)
    }

    /// Changes the tmpfs's size (growing it frees room without deleting anything).
    pub fn resize(&self, size_bytes: u64) -> Result<()> {
        self.server.install.run(
            Command::new("mount")
                .arg("-o")
                .arg(format!("remount,size={size_bytes}"))
                .arg(&self.mount_point),
        )
    }

    /// Drops the databases, then the tablespace (both must go before the tmpfs holding them).
    fn drop_in_postgres(&self) -> Result<()> {
        let mut client = self.server.connect("postgres")?;
        let databases = self
            .databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for database in databases.iter() {
            // FORCE: the test may still hold connections to it.
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))?;
        }
        if self.created {
            client.batch_execute(&format!("DROP TABLESPACE {}", self.name))?;
        }
        Ok(())
    }
}

impl Drop for SmallTablespace<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.drop_in_postgres() {
            eprintln!(
                "quill-pgtest: cannot drop tablespace {} before unmounting it: {e}",
                self.name
            );
        }
        // Lazily: a server process may still have a file of it open; the tmpfs goes once it
        // closes them.
        let unmounted = self
            .server
            .install
            .run(Command::new("umount").arg("--lazy").arg(&self.mount_point));
        if unmounted.is_ok() {
            let _ = fs::remove_dir(&self.mount_point);
        }
    }
}

/// `postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/quill?target_session_attrs=read-write`: a
/// client tries the hosts in order and keeps the first that accepts writes, so it follows a
/// failover to a promoted standby.
pub fn multi_host_url(servers: &[&PgServer]) -> String {
    let hosts: Vec<String> = servers
        .iter()
        .map(|server| format!("127.0.0.1:{}", server.port))
        .collect();
    format!(
        "postgresql://{USER}@{}/{DATABASE}?target_session_attrs=read-write",
        hosts.join(",")
    )
}

/// Processes whose working directory is `dir` (those this process may inspect).
fn processes_working_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

fn append(path: &Path, text: &str) -> Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(io_error(format!("appending to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut names = vec!["15", "9.6", "10", "16"];
        names.sort_by_key(|name| version_key(name));
        assert_eq!(names, ["9.6", "10", "15", "16"]);
    }

    #[test]
    fn the_postgres_user_is_read_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
        assert_eq!(
            passwd_entry("postgres:x:bad:104::/:/bin/sh\n", "postgres"),
            None
        );
    }
}
