"""QLDB journal streams to Kinesis, end to end: the real `quill serve` streams to a real
Kinesis-compatible server (`moto_server`, started here on a free loopback port), records are
read back with boto3, deaggregated with `aws-kinesis-agg` (as the AWS Lambda samples do) and
decoded as Ion; hashes are checked against GetBlock / GetRevision."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from amazon.ion import simpleion
from aws_kinesis_agg.deaggregator import deaggregate_records
from botocore.exceptions import ClientError

from conftest import REGION, QuillServer, start_server

ROLE_ARN = "arn:aws:iam::123456789012:role/quill-stream"
WAIT_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A moto Kinesis server on loopback."""
    port = free_port()
    # Installed beside the interpreter running the tests (tests/python/requirements.txt).
    binary = Path(sys.executable).parent / "moto_server"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture(scope="module")
def streaming_server(tmp_path_factory, moto):
    """A Quill server whose Kinesis endpoint is moto (standard SDK environment variables)."""
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL_KINESIS": moto, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"})
    try:
        quill = start_server(tmp_path_factory, "streaming")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield quill
    assert quill.stop() == 0, quill.log_path.read_text()


def kinesis(moto):
    return boto3.client("kinesis", endpoint_url=moto, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def create_kinesis_stream(moto, name):
    client = kinesis(moto)
    client.create_stream(StreamName=name, ShardCount=1)
    return client.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]


def read_user_records(moto, name):
    """Every user record in the stream, deaggregated, decoded, in arrival order."""
    client = kinesis(moto)
    shard = client.describe_stream(StreamName=name)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamName=name, ShardId=shard,
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    raw = []
    while iterator:
        page = client.get_records(ShardIterator=iterator, Limit=10000)
        raw.extend(page["Records"])
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
    # The Lambda event shape the AWS QLDB stream samples hand to aws-kinesis-agg.
    events = [{
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": r["SequenceNumber"],
        "eventName": "aws:kinesis:record", "invokeIdentityArn": ROLE_ARN, "awsRegion": REGION,
        "eventSourceARN": "arn", "kinesis": {
            "kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
            "sequenceNumber": r["SequenceNumber"], "approximateArrivalTimestamp": 0.0,
            "data": base64.b64encode(r["Data"]).decode()}} for r in raw]
    return raw, [simpleion.loads(base64.b64decode(e["kinesis"]["data"])) for e in deaggregate_records(events)]


def write(server, ledger, *statements):
    driver = server.driver(ledger)
    for statement, *params in statements:
        driver.execute_lambda(lambda tx: tx.execute_statement(statement, *params))
    driver.close()


def tip_of(server, ledger):
    digest = server.client("qldb").get_digest(Name=ledger)
    return simpleion.loads(digest["DigestTipAddress"]["IonText"])["sequenceNo"]


def wait_for(what, check):
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def summaries_up_to(moto, name, tip):
    def check():
        raw, records = read_user_records(moto, name)
        seqs = {r["payload"]["blockAddress"]["sequenceNo"] for r in records if r["recordType"] == "BLOCK_SUMMARY"}
        return (raw, records) if seqs >= set(range(tip + 1)) else None
    return wait_for(f"blocks 0..{tip} in Kinesis", check)


def start_stream(server, ledger, kinesis_arn, name, start=None, end=None, aggregation=True):
    request = {"LedgerName": ledger, "RoleArn": ROLE_ARN, "StreamName": name,
               "InclusiveStartTime": start or datetime(2020, 1, 1, tzinfo=timezone.utc),
               "KinesisConfiguration": {"StreamArn": kinesis_arn, "AggregationEnabled": aggregation}}
    if end is not None:
        request["ExclusiveEndTime"] = end
    return server.client("qldb").stream_journal_to_kinesis(**request)["StreamId"]


def status_of(server, ledger, stream_id):
    return server.client("qldb").describe_journal_kinesis_stream(LedgerName=ledger, StreamId=stream_id)["Stream"]


def test_history_and_new_commits_reach_kinesis_as_qldb_records(streaming_server, moto):
    server, ledger = streaming_server, "streamed"
    server.create_ledger(ledger)
    write(server, ledger, ("CREATE TABLE Car",), ("INSERT INTO Car ?", {"VIN": "A", "Year": 2011}))
    kinesis_arn = create_kinesis_stream(moto, "journal")
    stream_id = start_stream(server, ledger, kinesis_arn, "history")
    write(server, ledger, ("UPDATE Car SET Year = 2012 WHERE VIN = 'A'",), ("DELETE FROM Car WHERE VIN = 'A'",))
    tip = tip_of(server, ledger)
    raw, records = summaries_up_to(moto, "journal", tip)
    assert any(r["Data"][:4] == b"\xf3\x89\x9a\xc2" for r in raw), "aggregated (KPL) records"

    arn = f"arn:aws:qldb:{REGION}:"
    assert records[0]["recordType"] == "CONTROL"
    assert records[0]["payload"]["controlRecordType"] == "CREATED"
    assert all(r["qldbStreamArn"].startswith(arn) and r["qldbStreamArn"].endswith(f"/{ledger}/{stream_id}")
               for r in records)
    qldb = server.client("qldb")
    summaries = {}
    details = {}
    for r in records:
        if r["recordType"] == "BLOCK_SUMMARY":
            summaries.setdefault(r["payload"]["blockAddress"]["sequenceNo"], r["payload"])
        elif r["recordType"] == "REVISION_DETAILS":
            revision = r["payload"]["revision"]
            details.setdefault((revision["metadata"]["id"], revision["metadata"]["version"]), r["payload"])
    assert sorted(summaries) == list(range(tip + 1)), "one summary per block"
    order = [r["payload"]["blockAddress"]["sequenceNo"] for r in records if r["recordType"] == "BLOCK_SUMMARY"]
    assert order == sorted(order), "block order"
    assert len(details) == sum(len(s["revisionSummaries"]) for s in summaries.values())
    for seq, summary in summaries.items():
        address = f'{{strandId:"{summary["blockAddress"]["strandId"]}",sequenceNo:{seq}}}'
        block = simpleion.loads(qldb.get_block(Name=ledger, BlockAddress={"IonText": address})["Block"]["IonText"])
        assert summary["blockHash"] == block["blockHash"]
        assert summary["entriesHash"] == block["entriesHash"]
    car = [d for d in details.values() if d["tableInfo"]["tableName"] == "Car"]
    assert len(car) == 3, "insert, update, delete"
    for detail in car:
        revision = detail["revision"]
        seq = revision["blockAddress"]["sequenceNo"]
        address = f'{{strandId:"{revision["blockAddress"]["strandId"]}",sequenceNo:{seq}}}'
        stored = simpleion.loads(qldb.get_revision(
            Name=ledger, BlockAddress={"IonText": address}, DocumentId=revision["metadata"]["id"])["Revision"]["IonText"])
        assert revision["hash"] == stored["hash"]
    assert "data" not in car[-1]["revision"], "the deletion has no data"

    described = status_of(server, ledger, stream_id)
    assert described["Status"] == "ACTIVE"
    assert described["KinesisConfiguration"] == {"StreamArn": kinesis_arn, "AggregationEnabled": True}
    listed = qldb.list_journal_kinesis_streams_for_ledger(LedgerName=ledger)["Streams"]
    assert [s["StreamId"] for s in listed] == [stream_id]

    qldb.cancel_journal_kinesis_stream(LedgerName=ledger, StreamId=stream_id)
    wait_for("CANCELED", lambda: status_of(server, ledger, stream_id)["Status"] == "CANCELED")
    _, records = read_user_records(moto, "journal")
    assert not any(r["recordType"] == "CONTROL" and r["payload"]["controlRecordType"] == "COMPLETED" for r in records)
    with pytest.raises(ClientError) as error:
        qldb.cancel_journal_kinesis_stream(LedgerName=ledger, StreamId=stream_id)
    assert error.value.response["Error"]["Code"] == "ResourcePreconditionNotMetException"


def test_an_end_time_completes_the_stream_with_a_completed_record(streaming_server, moto):
    server, ledger = streaming_server, "ending"
    server.create_ledger(ledger)
    write(server, ledger, ("CREATE TABLE T",), ("INSERT INTO T ?", {"n": 1}))
    kinesis_arn = create_kinesis_stream(moto, "ending")
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    stream_id = start_stream(server, ledger, kinesis_arn, "ending", end=end, aggregation=False)
    wait_for("COMPLETED", lambda: status_of(server, ledger, stream_id)["Status"] == "COMPLETED")
    raw, records = read_user_records(moto, "ending")
    assert all(r["Data"][:4] != b"\xf3\x89\x9a\xc2" for r in raw), "aggregation off"
    assert records[0]["payload"]["controlRecordType"] == "CREATED"
    assert records[-1]["recordType"] == "CONTROL"
    assert records[-1]["payload"]["controlRecordType"] == "COMPLETED"


def test_a_missing_target_impairs_the_stream_until_it_exists(streaming_server, moto):
    server, ledger = streaming_server, "impaired"
    server.create_ledger(ledger)
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/later"
    stream_id = start_stream(server, ledger, arn, "later")
    described = wait_for("IMPAIRED", lambda: (lambda s: s if s["Status"] == "IMPAIRED" else None)(
        status_of(server, ledger, stream_id)))
    assert described["ErrorCause"] == "KINESIS_STREAM_NOT_FOUND"
    started = time.monotonic()
    write(server, ledger, *[("CREATE TABLE T",)] + [("INSERT INTO T ?", {"n": n}) for n in range(20)])
    assert time.monotonic() - started < 20, "commits do not wait for the stream"
    create_kinesis_stream(moto, "later")
    wait_for("ACTIVE", lambda: status_of(server, ledger, stream_id)["Status"] == "ACTIVE")
    summaries_up_to(moto, "later", tip_of(server, ledger))


def test_requests_are_validated_as_qldb_does(streaming_server, moto):
    server, ledger = streaming_server, "validated"
    server.create_ledger(ledger)
    qldb = server.client("qldb")
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/any"
    bad = [
        {"StreamName": "bad--name"},
        {"InclusiveStartTime": datetime.now(timezone.utc) + timedelta(days=1)},
        {"ExclusiveEndTime": datetime(2019, 1, 1, tzinfo=timezone.utc)},
        {"KinesisConfiguration": {"StreamArn": "arn:aws:sqs:us-east-1:123456789012:queue-name"}},
    ]
    for change in bad:
        request = {"LedgerName": ledger, "RoleArn": ROLE_ARN, "StreamName": "ok",
                   "InclusiveStartTime": datetime(2020, 1, 1, tzinfo=timezone.utc),
                   "KinesisConfiguration": {"StreamArn": arn}, **change}
        with pytest.raises(ClientError) as error:
            qldb.stream_journal_to_kinesis(**request)
        assert error.value.response["Error"]["Code"] == "InvalidParameterException", change
    with pytest.raises(ClientError) as error:
        qldb.describe_journal_kinesis_stream(LedgerName=ledger, StreamId="A" * 22)
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as error:
        qldb.list_journal_kinesis_streams_for_ledger(LedgerName="no-such-ledger")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_sigkill_while_streaming_under_load_loses_no_block(tmp_path, moto):
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL_KINESIS": moto, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"})
    try:
        server = QuillServer(tmp_path / "data")
        ledger = "killed"
        server.create_ledger(ledger)
        write(server, ledger, ("CREATE TABLE T",))
        start_stream(server, ledger, create_kinesis_stream(moto, "killed"), "killed")

        stop = threading.Event()

        def load():
            driver = server.driver(ledger)
            n = 0
            try:
                while not stop.is_set():
                    driver.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO T ?", {"n": n}))
                    n += 1
            except Exception:  # the server was killed under the driver
                pass

        writer = threading.Thread(target=load)
        writer.start()
        time.sleep(1.5)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        stop.set()
        writer.join()
        server._log.close()

        server = QuillServer(tmp_path / "data")
        write(server, ledger, ("INSERT INTO T ?", {"after": True}))
        tip = tip_of(server, ledger)
        assert tip > 10, "the load committed blocks before the kill"
        _, records = summaries_up_to(moto, "killed", tip)
        seqs = [r["payload"]["blockAddress"]["sequenceNo"] for r in records if r["recordType"] == "BLOCK_SUMMARY"]
        assert set(seqs) == set(range(tip + 1)), "no block missing"
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen), "block order kept (duplicates allowed)"
        # A resend restarts at most from the cursor: every run of records is contiguous.
        for previous, current in zip(seqs, seqs[1:]):
            assert current <= previous + 1, f"gap between {previous} and {current}"
        assert server.stop() == 0, server.log_path.read_text()
    finally:
        os.environ.clear()
        os.environ.update(saved)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kinesis-consumer" / "consumer.py"


def test_the_example_consumer_builds_the_read_model(streaming_server, moto):
    server, ledger = streaming_server, "consumed"
    server.create_ledger(ledger)
    kinesis_arn = create_kinesis_stream(moto, "consumed")
    start_stream(server, ledger, kinesis_arn, "consumed")
    write(server, ledger, ("CREATE TABLE Car",), ("INSERT INTO Car ?", {"VIN": "A", "Year": 2011}),
          ("INSERT INTO Car ?", {"VIN": "B", "Year": 2020}),
          ("UPDATE Car SET Year = 2012 WHERE VIN = 'A'",), ("DELETE FROM Car WHERE VIN = 'B'",))
    summaries_up_to(moto, "consumed", tip_of(server, ledger))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    output = subprocess.run([sys.executable, str(EXAMPLE), "--stream-name", "consumed", "--endpoint-url", moto,
                             "--once"], capture_output=True, env=env, check=True, timeout=WAIT_S).stdout
    model = json.loads(output)
    cars = [d for d in model["documents"].values() if d["table"] == "Car"]
    assert cars == [{"table": "Car", "version": 1, "data": {"VIN": "A", "Year": 2012}}]

    # Duplicates and older versions are ignored; a tampered revision is rejected.
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import consumer
    finally:
        sys.path.pop(0)
    _, records = read_user_records(moto, "consumed")
    details = [r["payload"] for r in records if r["recordType"] == "REVISION_DETAILS"]
    replay = consumer.ReadModel()
    for payload in details:
        assert replay.apply(payload) == "applied"
    assert all(replay.apply(payload) == "duplicate" for payload in details)
    assert [d["version"] for d in replay.documents.values() if d["table"] == "Car"] == [1]
    fresh = consumer.ReadModel()
    ordered = sorted(details, key=lambda p: -p["revision"]["metadata"]["version"])
    outcomes = [fresh.apply(p) for p in ordered]
    assert "stale" in outcomes, "an older version after a newer one is ignored"
    tampered = details[-1]
    tampered["revision"]["hash"] = bytes(32)
    with pytest.raises(ValueError):
        consumer.ReadModel().apply(tampered)


def test_deleting_a_ledger_ends_its_streams(streaming_server, moto):
    server, ledger = streaming_server, "deleted"
    qldb = server.client("qldb")
    qldb.create_ledger(Name=ledger, PermissionsMode="STANDARD", DeletionProtection=False)
    wait_for("ACTIVE", lambda: qldb.describe_ledger(Name=ledger)["State"] == "ACTIVE")
    start_stream(server, ledger, create_kinesis_stream(moto, "deleted"), "deleted")
    qldb.delete_ledger(Name=ledger)
    qldb.create_ledger(Name=ledger, PermissionsMode="STANDARD", DeletionProtection=False)
    wait_for("ACTIVE", lambda: qldb.describe_ledger(Name=ledger)["State"] == "ACTIVE")
    assert qldb.list_journal_kinesis_streams_for_ledger(LedgerName=ledger)["Streams"] == []


def test_stream_tags_through_the_tagging_api(streaming_server, moto):
    server, ledger = streaming_server, "tagged"
    server.create_ledger(ledger)
    qldb = server.client("qldb")
    kinesis_arn = create_kinesis_stream(moto, "tagged")
    stream_id = qldb.stream_journal_to_kinesis(
        LedgerName=ledger, RoleArn=ROLE_ARN, StreamName="tagged", Tags={"team": "cqrs"},
        InclusiveStartTime=datetime(2020, 1, 1, tzinfo=timezone.utc),
        KinesisConfiguration={"StreamArn": kinesis_arn})["StreamId"]
    arn = status_of(server, ledger, stream_id)["Arn"]
    assert qldb.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"team": "cqrs"}
    qldb.tag_resource(ResourceArn=arn, Tags={"env": "dev", "team": "search"})
    qldb.untag_resource(ResourceArn=arn, TagKeys=["env"])
    assert qldb.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"team": "search"}
    with pytest.raises(ClientError) as error:
        qldb.tag_resource(ResourceArn=arn, Tags={f"k{n}": "v" for n in range(201)})
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as error:
        qldb.list_tags_for_resource(ResourceArn=arn[:-22] + "A" * 22)
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # The ledger's own tags are another resource's.
    ledger_arn = qldb.describe_ledger(Name=ledger)["Arn"]
    assert qldb.list_tags_for_resource(ResourceArn=ledger_arn)["Tags"] == {}


def test_a_ledger_has_at_most_five_active_streams(streaming_server, moto):
    server, ledger = streaming_server, "limited"
    server.create_ledger(ledger)
    qldb = server.client("qldb")
    # Streams to a Kinesis stream that does not exist are IMPAIRED: still active.
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/nowhere"
    ids = [start_stream(server, ledger, arn, f"s{n}") for n in range(5)]
    with pytest.raises(ClientError) as error:
        start_stream(server, ledger, arn, "sixth")
    assert error.value.response["Error"]["Code"] == "LimitExceededException"
    qldb.cancel_journal_kinesis_stream(LedgerName=ledger, StreamId=ids[0])
    wait_for("CANCELED", lambda: status_of(server, ledger, ids[0])["Status"] == "CANCELED")
    start_stream(server, ledger, arn, "sixth")
