"""Journal streams to NATS JetStream (a Quill extension), end to end: the real `quill serve`
streams to a real `nats-server -js` (Debian's, started here on a free loopback port with a file
store in a temporary directory), streams are created with `quill stream create --to nats://…`,
and messages are read back with nats-py. Checks: QLDB's records one per message, `Nats-Msg-Id`
deduplication keys, no gap and block order through a SIGKILL of Quill under load, and a
stopped nats-server: the stream turns IMPAIRED, commits go on, and it catches up after the
restart (the file store keeps the JetStream stream)."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import nats
import pytest
from amazon.ion import simpleion
from nats.js.api import StorageType, StreamConfig

from conftest import QuillServer, quill_binary, start_server

WAIT_S = 30
JS_STREAM = "JOURNAL"
DUPLICATE_WINDOW_S = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_server_binary():
    # Debian installs it in /usr/sbin (scripts/setup.sh), not on every PATH.
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(found).exists():
        pytest.fail("nats-server is not installed: run scripts/setup.sh nats")
    return found


class NatsServer:
    """One `nats-server -js` on loopback whose JetStream file store survives restarts."""

    def __init__(self, directory):
        self.port = free_port()
        self.store = directory / "jetstream"
        self.log_path = directory / "nats.log"
        self.process = None
        self.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, self.log_path.read_text()
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def run(self, work):
        """Runs `work(js)` against a fresh connection."""
        async def session():
            connection = await nats.connect(f"nats://{self.address}", connect_timeout=5,
                                            allow_reconnect=False)
            try:
                return await work(connection.jetstream())
            finally:
                await connection.close()
        return asyncio.run(session())

    def add_stream(self, name, subject):
        async def add(js):
            await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE,
                                             duplicate_window=DUPLICATE_WINDOW_S))
        self.run(add)

    def messages(self, name):
        """Every message of the JetStream stream `name`: (Nats-Msg-Id, record type header,
        decoded record), in stream order."""
        async def read(js):
            last = (await js.stream_info(name)).state.last_seq
            out = []
            for seq in range(1, last + 1):
                message = await js.get_msg(name, seq)
                headers = message.headers or {}
                out.append((headers.get("Nats-Msg-Id"), headers.get("Quill-Record-Type"),
                            simpleion.loads(message.data)))
            return out
        return self.run(read)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quill(tmp_path_factory):
    server = start_server(tmp_path_factory, "nats-streaming")
    yield server
    assert server.stop() == 0, server.log_path.read_text()


def quill_stream(server, *args):
    """`quill stream …` against `server`; its JSON reply."""
    done = subprocess.run([str(quill_binary()), "stream", *args, "--endpoint", server.url],
                          capture_output=True, timeout=WAIT_S, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def create_stream(server, ledger, url, *extra):
    return quill_stream(server, "create", "--ledger", ledger, "--to", url, "--start", "2020-01-01T00:00:00Z",
                        *extra)["StreamId"]


def describe(server, ledger, stream_id):
    return quill_stream(server, "describe", "--ledger", ledger, stream_id)["Stream"]


def write(server, ledger, *statements):
    driver = server.driver(ledger)
    for statement, *params in statements:
        driver.execute_lambda(lambda tx: tx.execute_statement(statement, *params))
    driver.close()


def tip_of(server, ledger):
    digest = server.client("qldb").get_digest(Name=ledger)
    return simpleion.loads(digest["DigestTipAddress"]["IonText"])["sequenceNo"]


def wait_for(what, check, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def summary_seqs(messages):
    return [r["payload"]["blockAddress"]["sequenceNo"] for _, _, r in messages if r["recordType"] == "BLOCK_SUMMARY"]


def messages_up_to(nats_server, name, tip):
    def check():
        messages = nats_server.messages(name)
        return messages if set(summary_seqs(messages)) >= set(range(tip + 1)) else None
    return wait_for(f"blocks 0..{tip} in JetStream", check)


def assert_no_gap_in_order(seqs, tip):
    assert set(seqs) == set(range(tip + 1)), "no block missing"
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen), "block order kept (duplicates allowed)"
    for previous, current in zip(seqs, seqs[1:]):
        assert current <= previous + 1, f"gap between {previous} and {current}"


def test_records_reach_jetstream_one_per_message_with_dedup_ids(quill, nats_server):
    ledger = "nats-records"
    quill.create_ledger(ledger)
    write(quill, ledger, ("CREATE TABLE Car",), ("INSERT INTO Car ?", {"VIN": "A", "Year": 2011}))
    nats_server.add_stream("RECORDS", "quill.records")
    stream_id = create_stream(quill, ledger, f"nats://{nats_server.address}/quill.records", "--name", "records")
    write(quill, ledger, ("UPDATE Car SET Year = 2012 WHERE VIN = 'A'",), ("DELETE FROM Car WHERE VIN = 'A'",))
    tip = tip_of(quill, ledger)
    messages = messages_up_to(nats_server, "RECORDS", tip)

    msg_id, record_type, first = messages[0]
    assert (record_type, first["recordType"], first["payload"]["controlRecordType"]) == ("CONTROL", "CONTROL", "CREATED")
    assert msg_id == f"{stream_id}/CREATED"
    assert all(r["qldbStreamArn"].endswith(f"/{ledger}/{stream_id}") for _, _, r in messages)
    qldb = quill.client("qldb")
    revisions = 0
    for msg_id, record_type, record in messages[1:]:
        assert record_type == record["recordType"]
        payload = record["payload"]
        if record["recordType"] == "BLOCK_SUMMARY":
            address = payload["blockAddress"]
            assert msg_id == f'{address["strandId"]}/{address["sequenceNo"]}'
            text = f'{{strandId:"{address["strandId"]}",sequenceNo:{address["sequenceNo"]}}}'
            block = simpleion.loads(qldb.get_block(Name=ledger, BlockAddress={"IonText": text})["Block"]["IonText"])
            assert payload["blockHash"] == block["blockHash"]
        else:
            assert record["recordType"] == "REVISION_DETAILS"
            metadata = payload["revision"]["metadata"]
            assert msg_id == f'{metadata["id"]}/{metadata["version"]}'
            revisions += 1
    assert_no_gap_in_order(summary_seqs(messages), tip)
    summaries = [r["payload"] for _, _, r in messages if r["recordType"] == "BLOCK_SUMMARY"]
    assert revisions == sum(len(s["revisionSummaries"]) for s in summaries), "one message per revision"
    assert len({m[0] for m in messages}) == len(messages), "JetStream kept no duplicate"

    described = describe(quill, ledger, stream_id)
    assert described["Status"] == "ACTIVE"
    assert described["NatsConfiguration"] == {"Url": f"nats://{nats_server.address}/quill.records"}
    listed = quill_stream(quill, "list", "--ledger", ledger)["Streams"]
    assert [s["StreamId"] for s in listed] == [stream_id]
    # The Kinesis API sees only Kinesis streams.
    assert quill.client("qldb").list_journal_kinesis_streams_for_ledger(LedgerName=ledger)["Streams"] == []

    quill_stream(quill, "cancel", "--ledger", ledger, stream_id)
    wait_for("CANCELED", lambda: describe(quill, ledger, stream_id)["Status"] == "CANCELED")
    assert not any(r["recordType"] == "CONTROL" and r["payload"]["controlRecordType"] == "COMPLETED"
                   for _, _, r in nats_server.messages("RECORDS"))


def test_an_end_time_completes_the_nats_stream(quill, nats_server):
    ledger = "nats-ending"
    quill.create_ledger(ledger)
    write(quill, ledger, ("CREATE TABLE T",), ("INSERT INTO T ?", {"n": 1}))
    nats_server.add_stream("ENDING", "quill.ending")
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    stream_id = create_stream(quill, ledger, f"nats://{nats_server.address}/quill.ending", "--end", end)
    wait_for("COMPLETED", lambda: describe(quill, ledger, stream_id)["Status"] == "COMPLETED")
    messages = nats_server.messages("ENDING")
    assert messages[-1][0] == f"{stream_id}/COMPLETED"
    assert messages[-1][2]["payload"]["controlRecordType"] == "COMPLETED"


def test_bad_nats_destinations_are_invalid_parameters(quill):
    ledger = "nats-validated"
    quill.create_ledger(ledger)
    for url in ["nats://127.0.0.1:4222", "nats://127.0.0.1:4222/a.*", "http://127.0.0.1:4222/s"]:
        done = subprocess.run([str(quill_binary()), "stream", "create", "--ledger", ledger, "--to", url,
                               "--endpoint", quill.url], capture_output=True, timeout=WAIT_S)
        assert done.returncode != 0
        assert b"400" in done.stderr and b"NatsConfiguration.Url" in done.stderr, done.stderr


def test_no_jetstream_stream_impairs_until_one_captures_the_subject(quill, nats_server):
    ledger = "nats-missing"
    quill.create_ledger(ledger)
    stream_id = create_stream(quill, ledger, f"nats://{nats_server.address}/quill.later")
    described = wait_for("IMPAIRED", lambda: (lambda s: s if s["Status"] == "IMPAIRED" else None)(
        describe(quill, ledger, stream_id)))
    assert "no JetStream stream captures" in described["QuillDelivery"]["LastError"]
    nats_server.add_stream("LATER", "quill.later")
    wait_for("ACTIVE", lambda: describe(quill, ledger, stream_id)["Status"] == "ACTIVE")
    messages_up_to(nats_server, "LATER", tip_of(quill, ledger))


class Load:
    """Commits single-insert transactions on another thread until stopped."""

    def __init__(self, server, ledger):
        self.stop_event = threading.Event()
        self.committed = 0
        self.latencies = []
        self.thread = threading.Thread(target=self._run, args=(server, ledger))
        self.thread.start()

    def _run(self, server, ledger):
        driver = server.driver(ledger)
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                driver.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO T ?", {"n": self.committed}))
                self.latencies.append(time.monotonic() - started)
                self.committed += 1
        except Exception:  # the server was killed under the driver
            pass

    def stop(self):
        self.stop_event.set()
        self.thread.join()


def test_sigkill_while_streaming_to_nats_under_load_loses_no_block(tmp_path, nats_server):
    nats_server.add_stream("KILLED", "quill.killed")
    server = QuillServer(tmp_path / "data")
    ledger = "killed"
    server.create_ledger(ledger)
    write(server, ledger, ("CREATE TABLE T",))
    create_stream(server, ledger, f"nats://{nats_server.address}/quill.killed")
    load = Load(server, ledger)
    time.sleep(1.5)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    load.stop()
    server._log.close()

    server = QuillServer(tmp_path / "data")
    write(server, ledger, ("INSERT INTO T ?", {"after": True}))
    tip = tip_of(server, ledger)
    assert tip > 10, "the load committed blocks before the kill"
    messages = messages_up_to(nats_server, "KILLED", tip)
    assert_no_gap_in_order(summary_seqs(messages), tip)
    ids = [m[0] for m in messages]
    assert len(set(ids)) == len(ids), "the resent batch was deduplicated by Nats-Msg-Id"
    assert server.stop() == 0, server.log_path.read_text()


def test_a_stopped_nats_server_impairs_the_stream_and_it_catches_up(tmp_path):
    target = NatsServer(tmp_path)
    try:
        target.add_stream("OUTAGE", "quill.outage")
        server = QuillServer(tmp_path / "data")
        ledger = "outage"
        server.create_ledger(ledger)
        write(server, ledger, ("CREATE TABLE T",))
        stream_id = create_stream(server, ledger, f"nats://{target.address}/quill.outage")
        messages_up_to(target, "OUTAGE", tip_of(server, ledger))

        baseline = Load(server, ledger)
        time.sleep(2)
        baseline.stop()
        target.stop()
        during = Load(server, ledger)
        wait_for("IMPAIRED", lambda: describe(server, ledger, stream_id)["Status"] == "IMPAIRED")
        time.sleep(2)
        during.stop()
        described = describe(server, ledger, stream_id)
        assert described["Status"] == "IMPAIRED"
        assert described["QuillDelivery"]["BlocksBehind"] > 0
        assert during.committed > 10, "commits go on while the target is down"
        # Commits do not wait for the stream: the outage leaves their latency alone (loosely:
        # the machine is shared and a busy run varies).
        median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        assert median(during.latencies) < 3 * median(baseline.latencies) + 0.01, (
            median(during.latencies), median(baseline.latencies))

        target.start()
        tip = tip_of(server, ledger)
        wait_for("ACTIVE", lambda: describe(server, ledger, stream_id)["Status"] == "ACTIVE", timeout=60)
        messages = messages_up_to(target, "OUTAGE", tip)
        assert_no_gap_in_order(summary_seqs(messages), tip)
        assert server.stop() == 0, server.log_path.read_text()
    finally:
        target.stop()
