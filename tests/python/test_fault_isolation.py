"""One ledger's failure is one ledger's problem: a ledger whose journal is corrupted on disk is
reported (log, /health, ListLedgers/DescribeLedger state) while the server keeps serving every
other ledger, through the real binary and the unchanged pyqldb driver."""

import json
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import QuillServer, files_backend_only


def health(server):
    with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def flip_byte_in_the_middle_of_the_journal(ledger_dir: Path):
    segments = sorted(p for p in (ledger_dir / "journal").iterdir() if p.suffix == ".qjs")
    assert segments, f"no journal segment under {ledger_dir}"
    data = bytearray(segments[-1].read_bytes())
    data[len(data) // 2] ^= 0x40
    segments[-1].write_bytes(bytes(data))


def fill(driver, count):
    driver.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Doc"))
    for i in range(count):
        driver.execute_lambda(
            lambda tx, i=i: tx.execute_statement("INSERT INTO Doc ?", {"i": i, "pad": "p" * 200}))


@files_backend_only
def test_a_corrupted_ledger_is_reported_and_the_others_keep_serving(tmp_path):
    data_dir = tmp_path / "data"
    quill = QuillServer(data_dir)
    try:
        for name in ("broken", "healthy"):
            quill.create_ledger(name)
            driver = quill.driver(name)
            fill(driver, 20)
            driver.close()
        assert health(quill)["status"] == "ok"
    finally:
        assert quill.stop() == 0, quill.log_path.read_text()

    flip_byte_in_the_middle_of_the_journal(data_dir / "ledgers" / "broken")

    quill = QuillServer(data_dir)
    try:
        report = health(quill)
        assert report["status"] == "degraded"
        assert report["ledgers"] == 2
        [failed] = report["failed_ledgers"]
        assert failed["name"] == "broken"
        assert "corrupt" in failed["reason"].lower(), failed

        qldb = quill.client("qldb")
        states = {entry["Name"]: entry["State"] for entry in qldb.list_ledgers()["Ledgers"]}
        assert states == {"broken": "FAILED", "healthy": "ACTIVE"}
        assert qldb.describe_ledger(Name="broken")["State"] == "FAILED"
        assert qldb.describe_ledger(Name="healthy")["State"] == "ACTIVE"

        # The healthy ledger reads and commits as before.
        driver = quill.driver("healthy")
        count = driver.execute_lambda(
            lambda tx: list(tx.execute_statement("SELECT COUNT(*) AS n FROM Doc")))
        assert count[0]["n"] == 20
        driver.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO Doc {'i': 20}"))
        driver.close()

        # The broken one refuses sessions with the reason, rather than "does not exist".
        session = quill.client("qldb-session")
        with pytest.raises(ClientError) as refused:
            session.send_command(StartSession={"LedgerName": "broken"})
        assert refused.value.response["Error"]["Code"] == "BadRequestException"
        assert "unavailable" in refused.value.response["Error"]["Message"]

        metrics = urllib.request.urlopen(quill.url + "/metrics", timeout=10).read().decode()
        assert "quill_ledgers_failed 1\n" in metrics

        # An operator can delete the failed ledger; the server is then healthy again.
        qldb.delete_ledger(Name="broken")
        assert health(quill)["status"] == "ok"
        assert [entry["Name"] for entry in qldb.list_ledgers()["Ledgers"]] == ["healthy"]
    finally:
        assert quill.stop() == 0, quill.log_path.read_text()
    assert "cannot open ledger; serving the others" in quill.log_path.read_text()
