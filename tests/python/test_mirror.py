"""pyqldb against `quill mirror --listen`: the mirror copies a served ledger (its witnessed log
and its blocks) and answers the unchanged driver from its copy, read-only. A SELECT returns the
origin's documents, GetDigest the origin's digest, and an INSERT fails cleanly with a
BadRequestException without changing the copy."""

import json
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from pyqldb.driver.qldb_driver import QldbDriver

from conftest import DUMMY_KEY, DUMMY_SECRET, REGION, QuillServer, quill_binary
from test_notary import Process, checked_output

LEDGER = "shop"
SYNC_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def origin_and_mirror(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mirror")
    data_dir = directory / "data"
    data_dir.mkdir()
    log_vkey = checked_output("log-key", "--data-dir", data_dir, "--ledger", LEDGER)
    policy = directory / "policy"
    policy.write_text(f"log {log_vkey}\nquorum none\n")
    origin = QuillServer(data_dir, ["--public-log", "--checkpoint-interval", "100ms"])
    mirror = None
    try:
        origin.create_ledger(LEDGER)
        mirror = Process([quill_binary(), "mirror", "--from", origin.url, "--ledger", LEDGER,
                          "--data-dir", directory / "mirror", "--policy", policy,
                          "--interval", "100ms", "--listen", "127.0.0.1:0"],
                         directory / "mirror.log", "quill: listening on ")
        yield origin, mirror
    finally:
        if mirror is not None:
            mirror.stop()
        assert origin.stop() == 0, origin.log_path.read_text()


def driver(url):
    return QldbDriver(LEDGER, endpoint_url=url, region_name=REGION,
                      aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_SECRET)


def digest(url):
    answer = boto3.client("qldb", endpoint_url=url, region_name=REGION,
                          aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_SECRET,
                          config=Config(retries={"max_attempts": 1})).get_digest(Name=LEDGER)
    return answer["Digest"], answer["DigestTipAddress"]["IonText"]


def wait_until_mirrored(origin, mirror):
    """Waits until the mirror's copy is at the origin's tip (same GetDigest)."""
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    expected = digest(origin.url)
    while True:
        with urllib.request.urlopen(f"{mirror.url}/mirror/status", timeout=10) as response:
            status = json.loads(response.read())
        assert status["halted"] is None, status
        if status["blocks"] > 0 and digest(mirror.url) == expected:
            return
        assert time.monotonic() < deadline, f"the mirror did not catch up: {status}"
        time.sleep(0.1)


def rows(url, statement):
    qldb = driver(url)
    try:
        return sorted(json.dumps(dict(row), sort_keys=True, default=str)
                      for row in qldb.execute_lambda(lambda tx: list(tx.execute_statement(statement))))
    finally:
        qldb.close()


def test_pyqldb_queries_the_mirror_and_cannot_write_to_it(origin_and_mirror):
    origin, mirror = origin_and_mirror
    writer = driver(origin.url)
    writer.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Car"))
    for vin, year in (("A", 2011), ("B", 2012), ("C", 2013)):
        writer.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO Car ?", {"VIN": vin, "Year": year}))
    writer.execute_lambda(lambda tx: tx.execute_statement("UPDATE Car SET Year = 2020 WHERE VIN = 'B'"))
    writer.close()
    wait_until_mirrored(origin, mirror)

    selected = rows(mirror.url, "SELECT VIN, Year FROM Car")
    assert selected == rows(origin.url, "SELECT VIN, Year FROM Car")
    assert len(selected) == 3 and any('"Year": 2020' in row for row in selected), selected
    history = "SELECT h.data.VIN, h.metadata.version FROM history(Car) AS h"
    assert rows(mirror.url, history) == rows(origin.url, history)

    reader = driver(mirror.url)
    with pytest.raises(ClientError) as refused:
        reader.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO Car ?", {"VIN": "D", "Year": 2014}))
    error = refused.value.response["Error"]
    assert error["Code"] == "BadRequestException", error
    assert "read-only mirror" in error["Message"], error
    # The session still works, and the copy did not change.
    assert len(reader.execute_lambda(lambda tx: list(tx.execute_statement("SELECT * FROM Car")))) == 3
    reader.close()
    assert digest(mirror.url) == digest(origin.url)
