"""The throwaway PostgreSQL clusters the `--storage postgres://…` suites run against
(postgres_cluster.py), checked with Debian's psql: they fail, never skip, without PostgreSQL."""

import socket
import subprocess
import sys
import time
from pathlib import Path

from postgres_cluster import PostgresServer


def psql_url(url, sql):
    """psql given the fixture's URL itself, as `quill serve --storage URL` will be."""
    return subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL).stdout.strip()


def listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_session_cluster_is_durable_and_serves_its_url(postgres, postgres_url):
    assert postgres_url == f"postgresql://postgres@127.0.0.1:{postgres.port}/quill"
    assert psql_url(postgres_url, "SELECT current_database()") == "quill"
    settings = psql_url(postgres_url, "SELECT name || '=' || setting FROM pg_settings WHERE name "
                                      "IN ('fsync', 'synchronous_commit', 'listen_addresses') "
                                      "ORDER BY name")
    assert settings.splitlines() == ["fsync=on", "listen_addresses=127.0.0.1",
                                     "synchronous_commit=on"]
    psql_url(postgres_url, "CREATE TABLE fixture_check (v text); "
                           "INSERT INTO fixture_check VALUES ('written')")
    assert postgres.psql("SELECT v FROM fixture_check") == "written"


def test_a_killed_cluster_comes_back_with_its_commits():
    server = PostgresServer()
    try:
        server.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')")
        server.kill()
        assert not listening(server.port)
        server.start_again()
        assert server.psql("SELECT v FROM t") == "committed"
    finally:
        server.close()
    assert not server.dir.exists()
    assert not listening(server.port)


def test_the_cluster_of_a_test_process_that_dies_is_shut_down_and_removed():
    doomed = subprocess.Popen(
        [sys.executable, "-c", "import time; from postgres_cluster import PostgresServer; "
                               "server = PostgresServer(); print(server.port, server.dir, flush=True); "
                               "time.sleep(600)"],
        cwd=Path(__file__).parent, stdout=subprocess.PIPE, text=True)
    port, directory = doomed.stdout.readline().split()
    port, directory = int(port), Path(directory)
    assert listening(port) and directory.exists()
    doomed.kill()  # SIGKILL: no finaliser runs
    doomed.wait()
    deadline = time.monotonic() + 30
    while listening(port) or directory.exists():
        assert time.monotonic() < deadline, f"the cluster on {port} outlived its test process"
        time.sleep(0.05)
