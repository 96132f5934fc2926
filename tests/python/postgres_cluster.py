"""Throwaway PostgreSQL clusters for the suites that run `quill serve --storage postgres://…`:
the Python side of crates/quill-pgtest, with the same layout and settings.

A cluster is initdb'd into a fresh directory under the system temporary directory, listens on a
free 127.0.0.1 port only (its unix socket in that directory), runs durably (fsync=on,
synchronous_commit=on) and trusts local connections; it has a database `quill` owned by the
superuser `postgres`. The binaries are Debian's (`scripts/setup.sh postgres`): the highest
version under /usr/lib/postgresql/*/bin, or the directory PG_BIN names. PostgreSQL refuses to run
as root, so a root test process runs them as the Debian package's `postgres` user. Each
postmaster runs under quill-pgtest's guard.sh, which shuts it down and removes its directory if
the test process dies without doing so. `small_tablespace()` puts a tablespace on a small tmpfs
of its own (root only), so that what is stored there runs out of disk.
"""

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "postgres"
DATABASE = "quill"
READY_TIMEOUT_S = 60
KILL_TIMEOUT_S = 10
POLL_S = 0.02
PORT_ATTEMPTS = 5

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "on",
    "synchronous_commit": "on",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    # Crash recovery first syncs the data directory, which initdb --no-sync left unsynced: one
    # syncfs() instead of an fsync() per file.
    "recovery_init_sync_method": "syncfs",
}

# Loopback only, no password: these clusters exist for tests on one machine.
PG_HBA = """\
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""

SERVER_BINARIES = ("initdb", "postgres", "pg_ctl", "pg_isready")
GUARD = (Path(__file__).resolve().parents[2] / "crates" / "quill-pgtest" / "src" / "guard.sh").read_text()


class PostgresError(Exception):
    pass


def bin_dir():
    if "PG_BIN" in os.environ:
        candidates = [Path(os.environ["PG_BIN"])]
    else:
        def version(path):
            return [int(part) if part.isdigit() else 0 for part in path.parent.name.split(".")]
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for candidate in candidates:
        if all((candidate / name).is_file() for name in SERVER_BINARIES):
            return candidate
    raise PostgresError("no PostgreSQL server binaries in PG_BIN or /usr/lib/postgresql/*/bin: "
                        "run `scripts/setup.sh postgres` (Debian package postgresql)")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_working_in(directory):
    """Every process of a cluster (postmaster and children) works in its data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(directory):
                    pids.append(int(entry.name))
            except OSError:
                pass  # gone, or not ours to inspect
    return pids


def multi_host_url(servers, database=DATABASE):
    """A libpq URL naming every server, read-write: a client tries them in order and keeps the
    first that accepts writes, so it follows a failover to a promoted standby."""
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    return f"postgresql://{USER}@{hosts}/{database}?target_session_attrs=read-write"


_standby_numbers = itertools.count()


class PostgresServer:
    """One cluster and its postmaster. `close()` shuts it down and removes its directory."""

    def __init__(self, settings=None, standby_of=None, synchronous=False):
        """A new cluster; with `standby_of`, a streaming standby of that primary (a base backup
        of it with its own replication slot), made its synchronous standby when `synchronous`."""
        self.bin = bin_dir()
        self.owner = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError("running as root, and PostgreSQL refuses to: there is no "
                                    "`postgres` user (run `scripts/setup.sh postgres`)") from None
        self.dir = Path(tempfile.mkdtemp(prefix="quill-pg.")).resolve()
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.postmaster = None
        self.port = None
        try:
            if self.owner:
                os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
            if standby_of is None:
                self._init(settings)
            else:
                self._copy(standby_of, synchronous)
        except BaseException:
            self.close()
            raise

    def _init(self, settings):
        # --no-sync: the cluster is thrown away with the tests; its server runs with fsync=on.
        self._run("initdb", "--pgdata", str(self.data), "--username", USER, "--auth=trust",
                  "--encoding=UTF8", "--no-locale", "--no-sync")
        lines = [f"{name} = {value}" for name, value in {**SETTINGS, **(settings or {})}.items()]
        with open(self.data / "postgresql.conf", "a") as config:
            config.write("\n# quill tests\n" + "\n".join(lines) + "\n")
        (self.data / "pg_hba.conf").write_text(PG_HBA)
        self._launch_on_a_free_port()
        self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")

    def _copy(self, primary, synchronous):
        # Names the walreceiver's connection (application_name) and its slot.
        name = f"standby_{os.getpid()}_{next(_standby_numbers)}"
        self._run("pg_basebackup", "--pgdata", str(self.data), "--dbname",
                  f"host=127.0.0.1 port={primary.port} user={USER} application_name={name}",
                  "--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast",
                  "--create-slot", "--slot", name, "--no-sync")
        # The copy carries the primary's synchronous_standby_names if an earlier standby set it;
        # once promoted, this cluster would wait for a standby it does not have.
        with open(self.data / "postgresql.auto.conf", "a") as config:
            config.write("synchronous_standby_names = ''\n")
        self._launch_on_a_free_port()
        primary._wait_for_standby(name, "async")
        if synchronous:
            primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'", "postgres")
            primary.psql("SELECT pg_reload_conf()", "postgres")
            primary._wait_for_standby(name, "sync")

    def _wait_for_standby(self, name, sync_state):
        deadline = time.monotonic() + READY_TIMEOUT_S
        query = (f"SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}' "
                 f"AND state = 'streaming' AND sync_state = '{sync_state}'")
        while self.psql(query, "postgres") == "0":
            if time.monotonic() > deadline:
                raise PostgresError(f"standby {name} did not stream ({sync_state}) within "
                                    f"{READY_TIMEOUT_S} s")
            time.sleep(POLL_S)

    def promote(self):
        """Promotes this standby; returns once it accepts writes."""
        if self.psql("SELECT pg_promote(true, 60)", "postgres") != "t":
            raise PostgresError(f"the standby on port {self.port} was not promoted")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.psql("SELECT pg_is_in_recovery()", "postgres") != "f":
            if time.monotonic() > deadline:
                raise PostgresError(f"the standby on port {self.port} stayed in recovery")
            time.sleep(POLL_S)

    @property
    def url(self):
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def create_database(self, name):
        """A new empty database on this cluster; returns its URL."""
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def small_tablespace(self, name, size_bytes):
        """A tablespace `name` on a tmpfs of `size_bytes` mounted for it alone (root only), as
        a context manager: see SmallTablespace."""
        return SmallTablespace(self, name, size_bytes)

    def psql(self, sql, database=DATABASE):
        """Runs SQL with psql (as this process's user, over TCP); returns its unaligned rows."""
        psql = self.bin / "psql" if (self.bin / "psql").is_file() else shutil.which("psql")
        result = subprocess.run(
            [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", USER, "-d", database, "-c", sql],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if result.returncode != 0:
            raise PostgresError(f"psql {sql!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def kill(self):
        """SIGKILLs the postmaster and every process of the cluster, as a crash would; its
        System V shared memory segment goes too, as in a reboot. `start_again()` recovers it."""
        if self.postmaster is None:
            raise PostgresError(f"the server on port {self.port} is not running")
        postmaster, shared_memory = self._pid_file()
        # Each child of a postmaster is its own session leader: no process group holds them all.
        # The postmaster goes first, so that it starts no new process.
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while survivors := processes_working_in(self.data):
            if time.monotonic() > deadline:
                raise PostgresError(f"processes {survivors} of the killed cluster are still there")
            for pid in sorted(survivors, key=lambda pid: pid != postmaster):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(POLL_S)
        self._release_guard()
        if shared_memory is not None:
            subprocess.run(["ipcrm", "-m", shared_memory], check=True, capture_output=True)

    def stop(self):
        """Fast shutdown."""
        self._shut_down("fast")

    def start_again(self):
        """Starts the cluster again on the same port and data directory (after crash recovery
        when it was killed)."""
        if self.postmaster is not None and self.postmaster.poll() is None:
            raise PostgresError(f"the server on port {self.port} is still running")
        self._spawn_postmaster()
        self._wait_until_ready()

    def close(self):
        try:
            if self.postmaster is not None and self.postmaster.poll() is None:
                try:
                    self._shut_down("immediate")
                except PostgresError:
                    self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _as_owner(self):
        if self.owner is None:
            return {}
        return {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}

    def _run(self, program, *args):
        # cwd: a directory the owner may enter (a root test's working directory may be closed).
        result = subprocess.run([str(self.bin / program), *args], capture_output=True, text=True,
                                cwd=self.dir, stdin=subprocess.DEVNULL, **self._as_owner())
        if result.returncode != 0:
            raise PostgresError(f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                                f"{result.stdout}{result.stderr}")

    def _launch_on_a_free_port(self):
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            self._spawn_postmaster()
            try:
                self._wait_until_ready()
                return
            except PostgresError:
                # Another process took the port between the probe and postgres's bind.
                if attempt == PORT_ATTEMPTS or "could not bind" not in self.log():
                    raise

    def _spawn_postmaster(self):
        # self.postmaster is the guard, which exits with the postmaster; its stdin is a pipe
        # that only this process holds.
        with open(self.log_path, "ab") as log:
            self.postmaster = subprocess.Popen(
                ["sh", "-c", GUARD, "guard", str(self.dir), str(self.bin / "postgres"),
                 "-D", str(self.data), "-p", str(self.port),
                 "-c", f"unix_socket_directories={self.dir}"],
                stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=self.dir, **self._as_owner())

    def _wait_until_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            status = self.postmaster.poll()
            if status is not None:
                self._release_guard()
                raise PostgresError(f"postgres exited while starting ({status}):\n{self.log()}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", USER, "-d", "postgres", "-t", "5"],
                stdin=subprocess.DEVNULL, capture_output=True)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres did not accept connections within "
                                    f"{READY_TIMEOUT_S} s:\n{self.log()}")
            time.sleep(POLL_S)

    def _shut_down(self, mode):
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")
        self._release_guard()

    def _release_guard(self):
        """Reaps the guard of a postmaster that is gone and closes its stdin, so that it
        exits without touching the directory."""
        self.postmaster.wait()
        self.postmaster.stdin.close()
        self.postmaster = None

    def _pid_file(self):
        """The postmaster's pid and its System V shared memory segment id: the first line of
        postmaster.pid, and the second field of its seventh."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None, None
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        shared_memory = lines[6].split()[1] if len(lines) > 6 and len(lines[6].split()) > 1 else None
        return pid, shared_memory


if __name__ == "__main__":
    # `python postgres_cluster.py COMMAND [ARGS…]`: runs COMMAND with QUILL_TEST_PG_URL naming a
    # throwaway cluster (scripts/test.sh runs the Node.js suite against PostgreSQL this way),
    # and exits with its status once the cluster is gone.
    import sys

    if len(sys.argv) < 2:
        sys.exit("usage: postgres_cluster.py COMMAND [ARGS...]")
    cluster = PostgresServer()
    try:
        status = subprocess.run(sys.argv[1:], env={**os.environ, "QUILL_TEST_PG_URL": cluster.url}).returncode
    finally:
        cluster.close()
    sys.exit(status)


class SmallTablespace:
    """A tablespace on a tmpfs of its own (quill-pgtest's `SmallTablespace`): what is stored in
    it runs out of disk (SQLSTATE 53100, disk_full) once the tmpfs is full, while the rest of
    the cluster, its WAL included, keeps its room. Mounting needs root. `close()` (or leaving
    the `with` block) drops the databases it created, then the tablespace, and unmounts it."""

    def __init__(self, cluster, name, size_bytes):
        if cluster.owner is None:
            raise PostgresError("mounting the tmpfs of a small tablespace needs root, and this "
                                f"process runs as uid {os.geteuid()}")
        self.cluster = cluster
        self.name = name
        self.databases = []
        self.created = False
        # In the cluster's directory: should this process die without closing it, the guard
        # removing that directory empties the tmpfs too (only the empty mount remains).
        self.mount_point = cluster.dir / f"tablespace_{name}"
        self.mount_point.mkdir()
        options = f"size={size_bytes},mode=0700,uid={cluster.owner.pw_uid},gid={cluster.owner.pw_gid}"
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.mount_point)],
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if mounted.returncode != 0:
            self.mount_point.rmdir()
            raise PostgresError(f"mounting a tmpfs on {self.mount_point} failed: {mounted.stderr.strip()}")
        try:
            location = str(self.mount_point).replace("'", "''")
            cluster.psql(f"CREATE TABLESPACE {name} LOCATION '{location}'", database="postgres")
            self.created = True
        except BaseException:
            self.close()
            raise

    def create_database(self, name):
        """A database whose tables, indexes and TOAST tables go to this tablespace by default
        (its system catalogs stay where they are, so it works when this one is full); returns
        its URL. It is dropped with the tablespace."""
        url = self.cluster.create_database(name)
        self.databases.append(name)
        self.cluster.psql(f'ALTER DATABASE "{name}" SET default_tablespace = {self.name}',
                          database="postgres")
        return url

    def close(self):
        try:
            for database in self.databases:
                self.cluster.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                                  database="postgres")
            if self.created:
                self.cluster.psql(f"DROP TABLESPACE {self.name}", database="postgres")
        finally:
            # Lazily: a server process may still have one of its files open.
            unmounted = subprocess.run(["umount", "--lazy", str(self.mount_point)],
                                       capture_output=True, stdin=subprocess.DEVNULL)
            if unmounted.returncode == 0:
                self.mount_point.rmdir()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()
