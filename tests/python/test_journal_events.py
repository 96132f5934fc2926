"""The journal event tail (`GET /ledgers/{name}/journal/events`, Server-Sent Events) and
`quill tail`, against the real server: QLDB stream records per block, hashes equal to GetBlock,
exact resume from `Last-Event-ID`, live delivery of new commits, and SigV4 authentication."""

import http.client
import subprocess
import threading
from urllib.parse import urlparse

from amazon.ion import simpleion
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION, TEST_KEY, TEST_SECRET, quill_binary

READ_TIMEOUT_S = 20


def write_history(server, ledger):
    """CREATE TABLE, then an insert, an update and a delete: one block each."""
    driver = server.driver(ledger)
    driver.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Car"))
    driver.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO Car ?", {"VIN": "A", "Year": 2011}))
    driver.execute_lambda(lambda tx: tx.execute_statement("UPDATE Car SET Year = 2012 WHERE VIN = 'A'"))
    driver.execute_lambda(lambda tx: tx.execute_statement("DELETE FROM Car WHERE VIN = 'A'"))
    driver.close()


def tip_of(server, ledger):
    digest = server.client("qldb").get_digest(Name=ledger)
    return simpleion.loads(digest["DigestTipAddress"]["IonText"])["sequenceNo"]


class EventStream:
    """One SSE connection; `next_event()` returns (id, [records])."""

    def __init__(self, url, ledger, query="", headers=None):
        parsed = urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=READ_TIMEOUT_S)
        path = f"/ledgers/{ledger}/journal/events" + (f"?{query}" if query else "")
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()

    def next_event(self):
        event_id, records = None, []
        while True:
            line = self.response.readline().decode()
            assert line, "the server ended the stream"
            line = line.rstrip("\n")
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                records.append(simpleion.loads(line[6:]))
            elif line == "" and event_id is not None:
                return event_id, records

    def close(self):
        self.connection.close()


def test_tail_streams_every_block_as_qldb_records_and_resumes_exactly(server, ledger):
    write_history(server, ledger)
    tip = tip_of(server, ledger)
    qldb = server.client("qldb")

    events = EventStream(server.url, ledger, "from=0")
    assert events.response.status == 200
    assert events.response.getheader("content-type") == "text/event-stream"
    seen = [events.next_event() for _ in range(tip + 1)]
    events.close()
    assert [event_id for event_id, _ in seen] == list(range(tip + 1))
    revisions = 0
    for event_id, records in seen:
        summary = records[0]
        assert summary["recordType"] == "BLOCK_SUMMARY"
        assert summary["qldbStreamArn"].endswith(f":stream/{ledger}/journal-events")
        payload = summary["payload"]
        assert payload["blockAddress"]["sequenceNo"] == event_id
        address = f'{{strandId:"{payload["blockAddress"]["strandId"]}",sequenceNo:{event_id}}}'
        block = simpleion.loads(qldb.get_block(Name=ledger, BlockAddress={"IonText": address})["Block"]["IonText"])
        assert payload["blockHash"] == block["blockHash"]
        assert "revisions" not in payload
        details = records[1:]
        assert all(r["recordType"] == "REVISION_DETAILS" for r in details)
        assert [d["payload"]["revision"]["hash"] for d in details] == \
            [s["hash"] for s in payload["revisionSummaries"]]
        revisions += sum(1 for d in details if d["payload"]["tableInfo"]["tableName"] == "Car")
    assert revisions == 3, "insert, update and delete"

    # Resume after block 2: the next event is exactly block 3.
    resumed = EventStream(server.url, ledger, headers={"Last-Event-ID": "2"})
    assert resumed.next_event()[0] == 3
    resumed.close()

    # From the tip on, a new commit arrives live.
    live = EventStream(server.url, ledger, headers={"Last-Event-ID": str(tip)})
    driver = server.driver(ledger)
    driver.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO Car ?", {"VIN": "LIVE"}))
    driver.close()
    event_id, records = live.next_event()
    live.close()
    assert event_id == tip + 1
    assert records[1]["payload"]["revision"]["data"]["VIN"] == "LIVE"


def test_bad_resume_point_and_unknown_ledger_are_rejected(server, ledger):
    bad = EventStream(server.url, ledger, headers={"Last-Event-ID": "not-a-number"})
    assert bad.response.status == 400
    bad.close()
    missing = EventStream(server.url, "no-such-ledger", "from=0")
    assert missing.response.status == 404
    missing.close()


def test_quill_tail_prints_one_record_per_line(server, ledger):
    write_history(server, ledger)
    tip = tip_of(server, ledger)
    tail = subprocess.Popen(
        [str(quill_binary()), "tail", "--endpoint", server.url, "--ledger", ledger, "--from", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # A hung tail is killed, which ends its output and fails the test.
    watchdog = threading.Timer(READ_TIMEOUT_S, tail.kill)
    watchdog.start()
    try:
        summaries = []
        while len(summaries) < tip + 1:
            record = simpleion.loads(tail.stdout.readline().decode())
            if record["recordType"] == "BLOCK_SUMMARY":
                summaries.append(record["payload"]["blockAddress"]["sequenceNo"])
        assert summaries == list(range(tip + 1))
    finally:
        watchdog.cancel()
        tail.kill()
        tail.wait()


def test_tail_needs_a_signature_when_the_server_checks_them(auth_server):
    name = "events-auth"
    auth_server.create_ledger(name)
    unsigned = EventStream(auth_server.url, name, "from=0")
    assert unsigned.response.status in (401, 403)
    unsigned.close()

    path = f"/ledgers/{name}/journal/events"
    request = AWSRequest(method="GET", url=f"{auth_server.url}{path}?from=0")
    SigV4Auth(Credentials(TEST_KEY, TEST_SECRET), "qldb", REGION).add_auth(request)
    signed = EventStream(auth_server.url, name, "from=0", headers=dict(request.headers))
    assert signed.response.status == 200
    assert signed.next_event()[0] == 0
    signed.close()


def test_quill_tail_signs_with_environment_credentials(auth_server):
    name = "events-auth-cli"
    auth_server.create_ledger(name)
    env = {"AWS_ACCESS_KEY_ID": TEST_KEY, "AWS_SECRET_ACCESS_KEY": TEST_SECRET, "PATH": "/usr/bin:/bin"}
    tail = subprocess.Popen(
        [str(quill_binary()), "tail", "--endpoint", auth_server.url, "--ledger", name, "--from", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    watchdog = threading.Timer(READ_TIMEOUT_S, tail.kill)
    watchdog.start()
    try:
        record = simpleion.loads(tail.stdout.readline().decode())
        assert record["recordType"] == "BLOCK_SUMMARY"
        assert record["payload"]["blockAddress"]["sequenceNo"] == 0
    finally:
        watchdog.cancel()
        tail.kill()
        tail.wait()
