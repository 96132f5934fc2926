"""Fixtures for the pyqldb integration suite: each server fixture starts the REAL `quill serve`
binary on a free loopback port with its own temporary data directory, and stops it (SIGTERM,
then SIGKILL after a grace period) when the tests that use it are done.

The binary is `$QUILL_BIN`, else `<repo>/target/debug/quill` (`scripts/test.sh` builds it).
"""

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# botocore >= 1.40.61 no longer ships the qldb models; the repository keeps them. They go first
# on AWS_DATA_PATH (a path list), so a caller's own AWS_DATA_PATH cannot hide them.
AWS_MODELS = REPO / "testdata" / "aws-models"
os.environ["AWS_DATA_PATH"] = os.pathsep.join(
    [str(AWS_MODELS), *filter(None, os.environ.get("AWS_DATA_PATH", "").split(os.pathsep))])
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import boto3  # noqa: E402  (after AWS_DATA_PATH is set)
from botocore.config import Config  # noqa: E402
from pyqldb.driver.qldb_driver import QldbDriver  # noqa: E402

from postgres_cluster import PostgresServer, free_port  # noqa: E402

REGION = "us-east-1"
DUMMY_KEY = "AKIDQUILLDUMMY"
DUMMY_SECRET = "dummy-secret"
TEST_KEY = "AKIDQUILLTEST"
TEST_SECRET = "quill-test-secret-key"
# The S3 server of the export tests (moto): its bucket and credentials.
BUCKET = "quill-exports"
S3_KEY = "testing"
S3_SECRET = "testing"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


def quill_binary():
    path = Path(os.environ.get("QUILL_BIN", REPO / "target" / "debug" / "quill"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build -p quill` (scripts/test.sh does)")
    return path


def listening_url(process, prefix):
    """The URL a child process prints on its first stdout line (`<prefix>URL`) once it is
    ready; None if it prints something else or nothing within START_TIMEOUT_S."""
    found = {}
    reader = threading.Thread(
        target=lambda: found.update(line=process.stdout.readline().decode()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    line = found.get("line", "")
    return line[len(prefix):].strip() if line.startswith(prefix) else None


# QUILL_TEST_BACKEND=postgres runs every server with its ledgers in PostgreSQL (`--storage`):
# one database per data directory (a restarted server finds its ledgers again), on one
# cluster started on first use. scripts/test.sh runs the driver suites that way too.
BACKEND = os.environ.get("QUILL_TEST_BACKEND", "files")
if BACKEND not in ("files", "postgres"):
    raise RuntimeError(f"QUILL_TEST_BACKEND={BACKEND!r}: expected `files` or `postgres`")
_backend_cluster = []
_backend_databases = {}


def storage_args(data_dir):
    """`--storage URL` for a server of `data_dir` under QUILL_TEST_BACKEND=postgres."""
    if BACKEND == "files":
        return []
    if not _backend_cluster:
        _backend_cluster.append(PostgresServer())
    key = Path(data_dir).resolve()
    if key not in _backend_databases:
        name = f"quill_{len(_backend_databases) + 1}"
        _backend_databases[key] = _backend_cluster[0].create_database(name)
    return ["--storage", _backend_databases[key]]


def backend_sql(data_dir, sql):
    """Runs SQL on the database of the servers of `data_dir` under QUILL_TEST_BACKEND=postgres;
    returns psql's unaligned rows."""
    url = storage_args(data_dir)[1]
    return _backend_cluster[0].psql(sql, database=url.rsplit("/", 1)[1])


# For tests of the embedded backend's files (their layout, corruption, erasure on disk).
files_backend_only = pytest.mark.skipif(
    BACKEND != "files", reason="inspects the embedded backend's files under --data-dir")


@pytest.fixture(scope="session", autouse=True)
def _close_backend_cluster():
    yield
    for cluster in _backend_cluster:
        cluster.close()


class QuillServer:
    """One `quill serve` process."""

    def __init__(self, data_dir, extra_args=(), key=DUMMY_KEY, secret=DUMMY_SECRET):
        self.data_dir = Path(data_dir)
        self.key = key
        self.secret = secret
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self._log = open(self.log_path, "wb")
        if "--storage" not in extra_args:
            extra_args = [*storage_args(self.data_dir), *extra_args]
        args = [str(quill_binary()), "serve", "--data-dir", str(self.data_dir),
                "--listen", "127.0.0.1:0", *extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log,
                                         stdin=subprocess.DEVNULL)
        self.url = self._read_url()

    def _read_url(self):
        url = listening_url(self.process, "quill: listening on ")
        if url is None:
            self.stop()
            pytest.fail(f"quill serve did not start\n{self.log_path.read_text()}")
        return url

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def client(self, service, key=None, secret=None):
        """A boto3 client (`qldb` or `qldb-session`) for this server."""
        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=key or self.key, aws_secret_access_key=secret or self.secret,
            config=Config(retries={"max_attempts": 1}))

    def driver(self, ledger, key=None, secret=None, **options):
        return QldbDriver(ledger, endpoint_url=self.url, region_name=REGION,
                          aws_access_key_id=key or self.key,
                          aws_secret_access_key=secret or self.secret, **options)

    def create_ledger(self, name, deletion_protection=False):
        """CreateLedger, then DescribeLedger until ACTIVE."""
        qldb = self.client("qldb")
        qldb.create_ledger(Name=name, PermissionsMode="STANDARD",
                           DeletionProtection=deletion_protection)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if qldb.describe_ledger(Name=name)["State"] == "ACTIVE":
                return
            time.sleep(0.1)
        pytest.fail(f"ledger {name} never became ACTIVE")


def start_server(tmp_path_factory, name, extra_args=(), **kwargs):
    data_dir = tmp_path_factory.mktemp(name) / "data"
    return QuillServer(data_dir, extra_args, **kwargs)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A server with QLDB's defaults and no authentication (any signature accepted)."""
    quill = start_server(tmp_path_factory, "default")
    yield quill
    assert quill.stop() == 0, quill.log_path.read_text()


@pytest.fixture(scope="session")
def short_timeout_server(tmp_path_factory):
    """A server whose transactions expire after one second."""
    quill = start_server(tmp_path_factory, "short", ["--transaction-timeout", "1s"])
    yield quill
    assert quill.stop() == 0, quill.log_path.read_text()


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory):
    """A server that checks SigV4 signatures against a credentials file."""
    directory = tmp_path_factory.mktemp("auth")
    credentials = directory / "credentials"
    credentials.write_text(f"# test credentials\n{TEST_KEY} {TEST_SECRET}\n")
    quill = QuillServer(directory / "data", ["--auth", "credentials", "--credentials", str(credentials)],
                        key=TEST_KEY, secret=TEST_SECRET)
    yield quill
    assert quill.stop() == 0, quill.log_path.read_text()


_ledger_numbers = itertools.count(1)


@pytest.fixture
def ledger(server):
    """A fresh ledger on the default server."""
    name = f"ledger-{next(_ledger_numbers)}"
    server.create_ledger(name)
    return name


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (postgres_cluster.py) shared by the session: durable,
    127.0.0.1 only, database `quill`. Started on first use, removed at the end."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres):
    """`postgresql://postgres@127.0.0.1:PORT/quill`, for `quill serve --storage`."""
    return postgres.url


@pytest.fixture(scope="session")
def s3_url(tmp_path_factory):
    """A moto S3 server on a free loopback port, for the whole session."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start (see {log.name})")
            time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def s3(s3_url):
    client = boto3.client("s3", endpoint_url=s3_url, region_name=REGION,
                          aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET)
    client.create_bucket(Bucket=BUCKET)
    return client
