"""STANDARD permissions mode through the unchanged pyqldb driver and boto3: a server started
with `--auth credentials` and `--policy`, keys restricted by the policy, and keys without an
entry acting as administrators."""

import json
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import QuillServer, quill_binary

ADMIN = ("admin", "admin-secret")
READER = ("reader", "reader-secret")
AUDITOR = ("auditor", "auditor-secret")
NOBODY = ("nobody", "nobody-secret")
STANDARD_LEDGER = "perm-standard"
ALLOW_ALL_LEDGER = "perm-allow-all"
STATEMENT_DENIED = ("Access denied. Unable to run the statement due to insufficient permissions "
                    "or an improper variable reference")


def arn(resource):
    return f"arn:aws:qldb:*:*:{resource}"


POLICY = {
    "AccessKeys": {
        # Reads one table of the STANDARD ledger and its catalog; may describe ledgers.
        READER[0]: {"Statement": [
            {"Effect": "Allow", "Action": "qldb:SendCommand", "Resource": arn("ledger/*")},
            {"Effect": "Allow", "Action": ["qldb:DescribeLedger", "qldb:ListLedgers"],
             "Resource": [arn("ledger/*"), "*"]},
            {"Effect": "Allow", "Action": "qldb:PartiQLSelect",
             "Resource": [arn(f"ledger/{STANDARD_LEDGER}/table-name/Public"),
                          arn(f"ledger/{STANDARD_LEDGER}/information_schema/user_tables")]},
        ]},
        # Every PartiQL action on every table, except reading Secret: the Deny wins.
        AUDITOR[0]: {"Statement": [
            {"Effect": "Allow", "Action": "qldb:SendCommand", "Resource": arn(f"ledger/{STANDARD_LEDGER}")},
            {"Effect": "Allow", "Action": "qldb:PartiQL*", "Resource": arn(f"ledger/{STANDARD_LEDGER}/*")},
            {"Sid": "no-secret-reads", "Effect": "Deny", "Action": "qldb:PartiQLSelect",
             "Resource": arn(f"ledger/{STANDARD_LEDGER}/table-name/Secret")},
        ]},
        # An entry without statements: allowed nothing at all.
        NOBODY[0]: {"Statement": []},
    }
}


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("permissions")
    credentials = directory / "credentials"
    credentials.write_text("".join(f"{key} {secret}\n" for key, secret in (ADMIN, READER, AUDITOR, NOBODY)))
    policy = directory / "policy.json"
    policy.write_text(json.dumps(POLICY, indent=2))
    quill = QuillServer(directory / "data",
                        ["--auth", "credentials", "--credentials", str(credentials), "--policy", str(policy)],
                        key=ADMIN[0], secret=ADMIN[1])
    quill.create_ledger(STANDARD_LEDGER)
    admin = quill.client("qldb")
    admin.create_ledger(Name=ALLOW_ALL_LEDGER, PermissionsMode="ALLOW_ALL", DeletionProtection=False)
    deadline = time.monotonic() + 30
    while admin.describe_ledger(Name=ALLOW_ALL_LEDGER)["State"] != "ACTIVE":
        assert time.monotonic() < deadline, "ledger never became ACTIVE"
        time.sleep(0.1)
    with quill.driver(STANDARD_LEDGER) as driver:
        for table in ("Public", "Private", "Secret"):
            driver.execute_lambda(lambda tx, t=table: tx.execute_statement(f"CREATE TABLE {t}"))
            driver.execute_lambda(lambda tx, t=table: tx.execute_statement(
                f"INSERT INTO {t} ?", {"name": f"first {t}"}))
    yield quill
    assert quill.stop() == 0, quill.log_path.read_text()


def run(server, who, statement, *parameters, ledger=STANDARD_LEDGER):
    with server.driver(ledger, key=who[0], secret=who[1]) as driver:
        return driver.execute_lambda(lambda tx: list(tx.execute_statement(statement, *parameters)))


def assert_statement_denied(server, who, statement, *parameters, ledger=STANDARD_LEDGER):
    with pytest.raises(ClientError) as denied:
        run(server, who, statement, *parameters, ledger=ledger)
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    assert error["Message"] == STATEMENT_DENIED


def names(rows):
    return sorted(row["name"] for row in rows)


def test_a_key_without_an_entry_is_an_administrator(policy_server):
    run(policy_server, ADMIN, "CREATE TABLE AdminMade")
    run(policy_server, ADMIN, "INSERT INTO AdminMade {'name': 'x'}")
    assert names(run(policy_server, ADMIN, "SELECT * FROM AdminMade")) == ["x"]
    assert len(run(policy_server, ADMIN, "SELECT * FROM history(Secret)")) >= 1
    run(policy_server, ADMIN, "DROP TABLE AdminMade")


def test_reader_selects_what_the_policy_allows(policy_server):
    assert names(run(policy_server, READER, "SELECT * FROM Public")) == ["first Public"]
    tables = run(policy_server, READER, "SELECT VALUE name FROM information_schema.user_tables")
    assert {"Public", "Private", "Secret"} <= set(tables)


@pytest.mark.parametrize("statement", [
    "INSERT INTO Public {'name': 'intruder'}",
    "UPDATE Public AS p SET p.name = 'changed'",
    "DELETE FROM Public",
    "CREATE TABLE Mine",
    "CREATE INDEX ON Public (name)",
    "DROP TABLE Public",
    "SELECT * FROM history(Public)",
    "SELECT * FROM Private",
    "SELECT * FROM Public AS p WHERE p.name IN (SELECT VALUE s.name FROM Secret AS s)",
    "SELECT * FROM _ql_committed_Private",
    "SELECT * FROM NoSuchTable",
])
def test_reader_is_denied_everything_else(policy_server, statement):
    assert_statement_denied(policy_server, READER, statement)


def test_a_denied_statement_leaves_the_transaction_and_journal_unchanged(policy_server):
    admin = policy_server.client("qldb")
    digest_before = admin.get_digest(Name=STANDARD_LEDGER)["Digest"]
    outcomes = []

    def transaction(tx):
        outcomes.append(names(tx.execute_statement("SELECT * FROM Public")))
        try:
            tx.execute_statement("INSERT INTO Public {'name': 'intruder'}")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
        # The transaction is still open and usable: the same digest chain commits.
        outcomes.append(names(tx.execute_statement("SELECT * FROM Public")))

    with policy_server.driver(STANDARD_LEDGER, key=READER[0], secret=READER[1]) as driver:
        driver.execute_lambda(transaction)
    assert outcomes == [["first Public"], "AccessDeniedException", ["first Public"]]
    assert names(run(policy_server, ADMIN, "SELECT * FROM Public")) == ["first Public"]
    assert admin.get_digest(Name=STANDARD_LEDGER)["Digest"] == digest_before


def test_an_explicit_deny_wins_over_a_wildcard_allow(policy_server):
    assert names(run(policy_server, AUDITOR, "SELECT * FROM Public")) == ["first Public"]
    run(policy_server, AUDITOR, "INSERT INTO Secret {'name': 'audited'}")
    assert len(run(policy_server, AUDITOR, "SELECT * FROM history(Secret)")) >= 2
    assert_statement_denied(policy_server, AUDITOR, "SELECT * FROM Secret")
    assert_statement_denied(policy_server, AUDITOR, "SELECT * FROM _ql_committed_Secret")
    assert "audited" in names(run(policy_server, ADMIN, "SELECT * FROM Secret"))


def test_allow_all_ledgers_run_every_statement_a_key_may_send(policy_server):
    run(policy_server, READER, "CREATE TABLE Anything", ledger=ALLOW_ALL_LEDGER)
    run(policy_server, READER, "INSERT INTO Anything {'name': 'free'}", ledger=ALLOW_ALL_LEDGER)
    assert names(run(policy_server, READER, "SELECT * FROM Anything", ledger=ALLOW_ALL_LEDGER)) == ["free"]
    # The auditor may send commands only to the STANDARD ledger.
    session = policy_server.client("qldb-session", key=AUDITOR[0], secret=AUDITOR[1])
    with pytest.raises(ClientError) as denied:
        session.send_command(StartSession={"LedgerName": ALLOW_ALL_LEDGER})
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "qldb:SendCommand" in denied.value.response["Error"]["Message"]


def test_control_plane_actions_are_checked(policy_server):
    reader = policy_server.client("qldb", key=READER[0], secret=READER[1])
    assert reader.describe_ledger(Name=STANDARD_LEDGER)["PermissionsMode"] == "STANDARD"
    assert STANDARD_LEDGER in [ledger["Name"] for ledger in reader.list_ledgers()["Ledgers"]]
    for call in (lambda: reader.get_digest(Name=STANDARD_LEDGER),
                 lambda: reader.delete_ledger(Name=ALLOW_ALL_LEDGER),
                 lambda: reader.update_ledger_permissions_mode(Name=STANDARD_LEDGER,
                                                               PermissionsMode="ALLOW_ALL")):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    nobody = policy_server.client("qldb", key=NOBODY[0], secret=NOBODY[1])
    with pytest.raises(ClientError) as denied:
        nobody.list_ledgers()
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    admin = policy_server.client("qldb")
    assert admin.describe_ledger(Name=ALLOW_ALL_LEDGER)["PermissionsMode"] == "ALLOW_ALL"


def start_and_fail(tmp_path, *args):
    result = subprocess.run([str(quill_binary()), "serve", "--data-dir", str(tmp_path / "data"),
                             "--listen", "127.0.0.1:0", *args],
                            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    return result.stderr.decode()


def test_bad_policies_and_policies_without_authentication_stop_the_start(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"AccessKeys": {"k": {"Statement": [
        {"Effect": "Allow", "Action": "qldb:PartiQLSelec", "Resource": "*"}]}}}))
    credentials = tmp_path / "credentials"
    credentials.write_text("k secret\n")
    error = start_and_fail(tmp_path, "--credentials", str(credentials), "--policy", str(policy))
    assert "AccessKeys.k.Statement[0].Action[0]" in error, error
    error = start_and_fail(tmp_path, "--auth", "none", "--policy", str(policy))
    assert "needs authentication" in error, error
