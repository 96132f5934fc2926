"""pyqldb 3.2.4 and boto3's QLDB clients, unchanged, against the real `quill serve` binary."""

import hashlib
import threading
import time
from decimal import Decimal

import pytest
from amazon.ion.equivalence import ion_equals
from amazon.ion.simpleion import dumps, loads
from botocore.exceptions import ClientError

from conftest import TEST_SECRET

EVERY_ION_TYPE = r"""{
  null_value: null, typed_null: null.int, flag: true, small: -7,
  big: 123456789012345678901234567890, float: 2.5e0, decimal: 12.340,
  timestamp: 2024-02-29T12:34:56.789Z, day: 2024-03-01T, symbol: 'a symbol', text: "héllo \u2603",
  clob: {{"clob text"}}, blob: {{aGVsbG8gd29ybGQ=}}, list: [1, "two", [3.0]],
  sexp: (a b 1), nested: {inner: {deeper: [{}]}}, annotated: note::"with annotation"
}"""


def run(driver, *statements):
    """Runs each (statement, *parameters) in one transaction; returns the rows of each."""
    def body(txn):
        return [list(txn.execute_statement(statement, *parameters)) for statement, *parameters in statements]
    return driver.execute_lambda(body)


def test_control_plane_lists_and_describes_ledgers(server, ledger):
    qldb = server.client("qldb")
    described = qldb.describe_ledger(Name=ledger)
    assert described["State"] == "ACTIVE"
    assert described["Arn"].endswith(f":ledger/{ledger}")
    names = [entry["Name"] for entry in qldb.list_ledgers()["Ledgers"]]
    assert ledger in names
    with pytest.raises(ClientError) as error:
        qldb.describe_ledger(Name="no-such-ledger")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_tables_indexes_and_every_ion_type_as_parameter(server, ledger):
    document = loads(EVERY_ION_TYPE)
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Things",), ("CREATE INDEX ON Things (small)",))
        assert "Things" in list(driver.list_tables())
        [[inserted]] = run(driver, ("INSERT INTO Things ?", document))
        assert len(inserted["documentId"]) == 22
        [rows] = run(driver, ("SELECT * FROM Things WHERE small = ?", -7))
        assert len(rows) == 1
        assert ion_equals(rows[0], document), dumps(rows[0], binary=False)
        # Each scalar type also works as a comparison parameter.
        for field in ["flag", "big", "float", "decimal", "timestamp", "symbol", "text", "blob"]:
            [matches] = run(driver, (f"SELECT VALUE small FROM Things WHERE {field} = ?", document[field]))
            assert list(matches) == [-7], field


def test_queries_page_over_two_thousand_results(server, ledger):
    documents_per_transaction = 40  # QLDB's limit on documents changed per transaction
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Big",))
        for batch in range(50):
            rows = [{"n": batch * documents_per_transaction + i, "pad": "x" * 100}
                    for i in range(documents_per_transaction)]
            run(driver, ("INSERT INTO Big ?", rows))
        [rows] = run(driver, ("SELECT n FROM Big",))
        assert sorted(row["n"] for row in rows) == list(range(2000))
        [[count]] = run(driver, ("SELECT COUNT(*) AS c FROM Big",))
        assert count["c"] == 2000


def test_update_delete_history_and_committed_view(server, ledger):
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Cars",))
        [[created]] = run(driver, ("INSERT INTO Cars ?", {"VIN": "1N4AL11D75C109151", "color": "red"}))
        document_id = created["documentId"]
        [[updated]] = run(driver, ("UPDATE Cars SET color = ? WHERE VIN = ?", "blue", "1N4AL11D75C109151"))
        assert updated["documentId"] == document_id
        [rows] = run(driver, ("SELECT color FROM Cars",))
        assert [row["color"] for row in rows] == ["blue"]
        [[committed]] = run(driver, ("SELECT * FROM _ql_committed_Cars",))
        assert committed["metadata"]["id"] == document_id
        assert committed["metadata"]["version"] == 1
        assert len(committed["hash"]) == 32
        assert set(committed["blockAddress"].keys()) == {"strandId", "sequenceNo"}
        run(driver, ("DELETE FROM Cars WHERE VIN = ?", "1N4AL11D75C109151"))
        [rows] = run(driver, ("SELECT * FROM Cars",))
        assert rows == []
        [history] = run(driver, ("SELECT * FROM history(Cars) AS h WHERE h.metadata.id = ?", document_id))
        assert [revision["metadata"]["version"] for revision in history] == [0, 1, 2]
        assert [revision.get("data", {}).get("color") for revision in history] == ["red", "blue", None]


def test_conflicting_lambdas_are_retried_by_the_driver(server, ledger):
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Counter",), ("INSERT INTO Counter ?", {"name": "c", "total": 0}))
    barrier = threading.Barrier(2, timeout=30)
    attempts = []
    errors = []

    def increment(txn):
        first_attempt = threading.current_thread().name not in attempts
        attempts.append(threading.current_thread().name)
        [row] = list(txn.execute_statement("SELECT total FROM Counter WHERE name = 'c'"))
        if first_attempt:
            barrier.wait()  # both transactions have read the same value before either writes
        txn.execute_statement("UPDATE Counter SET total = ? WHERE name = 'c'", row["total"] + 1)

    def worker():
        try:
            with server.driver(ledger) as driver:
                driver.execute_lambda(increment)
        except Exception as error:  # reported below, with the thread's name
            errors.append(error)

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(attempts) >= 3, attempts  # at least one lambda ran again after an OCC conflict
    with server.driver(ledger) as driver:
        [[row]] = run(driver, ("SELECT total FROM Counter WHERE name = 'c'",))
        assert row["total"] == 2


def start_transaction(session_client, ledger):
    token = session_client.send_command(StartSession={"LedgerName": ledger})["StartSession"]["SessionToken"]
    reply = session_client.send_command(SessionToken=token, StartTransaction={})
    return token, reply["StartTransaction"]["TransactionId"]


def test_a_wrong_commit_digest_is_rejected(server, ledger):
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Notes",))
    session = server.client("qldb-session")
    token, transaction_id = start_transaction(session, ledger)
    session.send_command(SessionToken=token, ExecuteStatement={
        "TransactionId": transaction_id, "Statement": "INSERT INTO Notes {'text': 'forged'}"})
    with pytest.raises(ClientError) as error:
        session.send_command(SessionToken=token, CommitTransaction={
            "TransactionId": transaction_id, "CommitDigest": hashlib.sha256(b"wrong").digest()})
    assert error.value.response["Error"]["Code"] == "BadRequestException"
    with server.driver(ledger) as driver:
        [rows] = run(driver, ("SELECT * FROM Notes",))
        assert rows == []


def test_an_expired_transaction_is_refused(short_timeout_server):
    short_timeout_server.create_ledger("expiry")
    session = short_timeout_server.client("qldb-session")
    token, transaction_id = start_transaction(session, "expiry")
    time.sleep(2)
    with pytest.raises(ClientError) as error:
        session.send_command(SessionToken=token, ExecuteStatement={
            "TransactionId": transaction_id, "Statement": "SELECT * FROM information_schema.user_tables"})
    assert error.value.response["Error"]["Code"] == "InvalidSessionException"
    assert "has expired" in error.value.response["Error"]["Message"]


def test_signatures_are_checked_with_credentials(auth_server):
    auth_server.create_ledger("signed")
    with auth_server.driver("signed") as driver:
        run(driver, ("CREATE TABLE T",))
    with pytest.raises(ClientError) as error:
        auth_server.client("qldb", secret="not-" + TEST_SECRET).list_ledgers()
    assert error.value.response["Error"]["Code"] in ("InvalidSignatureException", "UnrecognizedClientException")
    with pytest.raises(ClientError):
        auth_server.client("qldb-session", key="AKIDUNKNOWN").send_command(StartSession={"LedgerName": "signed"})
    with pytest.raises(ClientError):
        with auth_server.driver("signed", secret="wrong") as driver:
            run(driver, ("SELECT * FROM T",))


def signed_bytes_key(digest):
    """QLDB's order: signed bytes compared from index 31 down to 0."""
    return [byte - 256 if byte > 127 else byte for byte in reversed(digest)]


def dot(a, b):
    if not a:
        return b
    if not b:
        return a
    first, second = sorted([a, b], key=signed_bytes_key)
    return hashlib.sha256(first + second).digest()


def ion_hash(value):
    return value.ion_hash("SHA256")


def test_digest_and_revision_proof_verify_in_python(server, ledger):
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Vehicle",))
        [[created]] = run(driver, ("INSERT INTO Vehicle ?", {"VIN": "KM8SRDHF6EU074761", "price": Decimal("25.50")}))
        run(driver, ("INSERT INTO Vehicle ?", {"VIN": "3HGGK5G53FM761765"}))
        [[committed]] = run(driver, ("SELECT blockAddress FROM _ql_committed_Vehicle WHERE data.VIN = ?",
                                      "KM8SRDHF6EU074761"))
    qldb = server.client("qldb")
    digest = qldb.get_digest(Name=ledger)
    tip = digest["DigestTipAddress"]
    address = committed["blockAddress"]
    block_address = {"IonText": f'{{strandId:"{address["strandId"]}",sequenceNo:{address["sequenceNo"]}}}'}
    reply = qldb.get_revision(Name=ledger, BlockAddress=block_address,
                              DocumentId=created["documentId"], DigestTipAddress=tip)
    revision = loads(reply["Revision"]["IonText"])
    computed = dot(ion_hash(revision["metadata"]), ion_hash(revision["data"]))
    assert computed == bytes(revision["hash"])
    folded = computed
    for sibling in loads(reply["Proof"]["IonText"]):
        folded = dot(folded, bytes(sibling))
    assert folded == digest["Digest"]
    # A changed document no longer folds to the digest.
    tampered = loads(reply["Revision"]["IonText"])
    tampered["data"]["price"] = loads("1.00")
    assert dot(ion_hash(tampered["metadata"]), ion_hash(tampered["data"])) != computed


def test_deletion_protection_blocks_delete_until_disabled(server):
    qldb = server.client("qldb")
    server.create_ledger("protected", deletion_protection=True)
    assert qldb.describe_ledger(Name="protected")["DeletionProtection"] is True
    with pytest.raises(ClientError):
        qldb.delete_ledger(Name="protected")
    qldb.update_ledger(Name="protected", DeletionProtection=False)
    qldb.delete_ledger(Name="protected")
    with pytest.raises(ClientError) as error:
        qldb.describe_ledger(Name="protected")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"



def test_update_with_two_assignments_answers_the_document_id_twice(server, ledger):
    # The DMV sample's RenewDriversLicense statement; its integration test asserts two equal
    # {documentId} rows.
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE DriversLicense",),
            ("INSERT INTO DriversLicense ?", {"LicenseNumber": "LEWISR261LL", "PersonId": "p1"}))
        [renewed] = run(driver, (
            "UPDATE DriversLicense AS d SET d.ValidFromDate = ?, d.ValidToDate = ? WHERE d.LicenseNumber = ?",
            loads("2019-04-19T"), loads("2023-04-19T"), "LEWISR261LL"))
        assert len(renewed) == 2
        assert ion_equals(renewed[0], renewed[1])
        assert list(renewed[0].keys()) == ["documentId"]


def test_function_timestamps_are_utc(server, ledger):
    with server.driver(ledger) as driver:
        run(driver, ("CREATE TABLE Clock",), ("INSERT INTO Clock VALUE {'n': 1}",))
        [[row]] = run(driver, ("SELECT UTCNOW() AS now, DATE_ADD(hour, 1, `2017T`) AS later, "
                               "TO_TIMESTAMP('1969-07-20T20:18Z', 'y-MM-dd''T''H:mX') AS landing FROM Clock",))
        for name in ["now", "later", "landing"]:
            # amazon.ion gives a timestamp with a known offset a tzinfo; -00:00 has none.
            assert row[name].tzinfo is not None and row[name].utcoffset().total_seconds() == 0, name


def test_table_arns_are_taggable_and_tags_survive_restart(tmp_path):
    from conftest import QuillServer
    data_dir = tmp_path / "data"
    first = QuillServer(data_dir)
    try:
        first.create_ledger("tagged")
        with first.driver("tagged") as driver:
            [[created]] = run(driver, ("CREATE TABLE Vehicle WITH (aws_tags = `{'environment': 'production'}`)",))
        qldb = first.client("qldb")
        ledger_arn = qldb.describe_ledger(Name="tagged")["Arn"]
        table_arn = f"{ledger_arn}/table/{created['tableId']}"
        assert qldb.list_tags_for_resource(ResourceArn=table_arn)["Tags"] == {"environment": "production"}
        qldb.tag_resource(ResourceArn=table_arn, Tags={"team": "dmv"})
        qldb.untag_resource(ResourceArn=table_arn, TagKeys=["environment"])
        assert qldb.list_tags_for_resource(ResourceArn=table_arn)["Tags"] == {"team": "dmv"}
        assert qldb.list_tags_for_resource(ResourceArn=ledger_arn)["Tags"] == {}
        with pytest.raises(ClientError) as error:
            qldb.list_tags_for_resource(ResourceArn=f"{ledger_arn}/table/NoSuchTable")
        assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        assert first.stop() == 0, first.log_path.read_text()
    second = QuillServer(data_dir)
    try:
        qldb = second.client("qldb")
        assert qldb.list_tags_for_resource(ResourceArn=table_arn)["Tags"] == {"team": "dmv"}
    finally:
        assert second.stop() == 0, second.log_path.read_text()
