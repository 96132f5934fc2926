"""REDACT_REVISION through pyqldb, with the calls of the AWS DMV sample (`redact_revision.py` in
aws-samples/amazon-qldb-dmv-sample-python): the table id from information_schema, the historic
revision's blockAddress from history(), `EXEC redact_revision ?, 'tableId', 'documentId'` with
the address as a parameter, then history() polled until the revision has `dataHash` and no
`data`. GetRevision's proof still folds to the digest, GetBlock shows `redactionInfo`, and after
a restart no file of the data directory holds the redacted value."""

import subprocess
import time
from pathlib import Path

import pytest
from amazon.ion.simpleion import loads
from botocore.exceptions import ClientError

from conftest import QuillServer, files_backend_only, quill_binary
from test_pyqldb import dot, ion_hash, run

MARKER = "pyqldb-redaction-marker-9d41e7"
REDACTION_TIMEOUT_S = 30


def get_table_id(txn, table_name):
    rows = list(txn.execute_statement(
        "SELECT VALUE tableId FROM information_schema.user_tables WHERE name = '{}'".format(table_name)))
    return rows[0]


def historic_registration_by_owner(txn, registration_id, owner_id):
    query = ("SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = '{}' "
             "AND h.data.Owners.PrimaryOwner.PersonId = '{}'").format(registration_id, owner_id)
    [revision] = list(txn.execute_statement(query))
    return revision


def historic_registration_by_version(txn, registration_id, version):
    query = "SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = '{}' AND h.metadata.version = {}"
    [revision] = list(txn.execute_statement(query.format(registration_id, version)))
    return revision


def files_containing(directory, needle):
    return [path for path in Path(directory).rglob("*")
            if path.is_file() and needle in path.read_bytes()]


def registration_with_two_owners(driver):
    """A registration first owned by one person (its notes carry the marker, sent as a
    parameter), then transferred: its first revision is inactive."""
    [[first], [second]] = run(driver, ("INSERT INTO Person ?", {"GovId": "P-1", "FirstName": "Raul"}),
                              ("INSERT INTO Person ?", {"GovId": "P-2", "FirstName": "Brent"}))
    [[registration]] = run(driver, ("INSERT INTO VehicleRegistration ?", {
        "VIN": "1N4AL11D75C109151", "Notes": MARKER,
        "Owners": {"PrimaryOwner": {"PersonId": first["documentId"]}, "SecondaryOwners": []}}))
    run(driver, ("UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ?, r.Notes = 'transferred' "
                 "WHERE r.VIN = ?", second["documentId"], "1N4AL11D75C109151"))
    return registration["documentId"], first["documentId"]


def redact_previous_registration(txn, registration_id, previous_owner_id):
    table_id = get_table_id(txn, "VehicleRegistration")
    address = historic_registration_by_owner(txn, registration_id, previous_owner_id)["blockAddress"]
    statement = "EXEC redact_revision ?, '{}', '{}'".format(table_id, registration_id)
    return next(iter(txn.execute_statement(statement, address)))


def wait_till_revision_redacted(driver, request):
    deadline = time.monotonic() + REDACTION_TIMEOUT_S
    while time.monotonic() < deadline:
        revision = driver.execute_lambda(
            lambda txn: historic_registration_by_version(txn, request["documentId"], request["version"]))
        if "data" not in revision and "dataHash" in revision:
            return revision
        time.sleep(0.2)
    pytest.fail("the revision was never redacted")


def ion_text_address(address):
    return {"IonText": '{{strandId:"{}",sequenceNo:{}}}'.format(address["strandId"], address["sequenceNo"])}


@files_backend_only
def test_redaction_as_the_dmv_sample_runs_it(tmp_path):
    data_dir = tmp_path / "data"
    first = QuillServer(data_dir)
    try:
        first.create_ledger("vehicle-registration")
        with first.driver("vehicle-registration") as driver:
            run(driver, ("CREATE TABLE Person",), ("CREATE TABLE VehicleRegistration",),
                ("CREATE INDEX ON VehicleRegistration (VIN)",))
            registration_id, previous_owner = registration_with_two_owners(driver)
            assert files_containing(data_dir, MARKER.encode())
            request = driver.execute_lambda(
                lambda txn: redact_previous_registration(txn, registration_id, previous_owner))
            assert set(request) == {"blockAddress", "tableId", "documentId", "version"}
            assert request["documentId"] == registration_id and request["version"] == 0
            revision = wait_till_revision_redacted(driver, request)
            # The current revision is untouched.
            [[current]] = run(driver, ("SELECT VALUE r.Notes FROM VehicleRegistration AS r",))
            assert current == "transferred"

            # Errors: the latest revision; a second redaction in one transaction.
            latest = driver.execute_lambda(
                lambda txn: historic_registration_by_version(txn, registration_id, 1))
            table_id = request["tableId"]
            with pytest.raises(ClientError) as error:
                run(driver, ("EXEC REDACT_REVISION ?, '{}', '{}'".format(table_id, registration_id),
                             latest["blockAddress"]))
            assert error.value.response["Error"]["Code"] == "BadRequestException"
            assert "latest active revision" in error.value.response["Error"]["Message"]
            with pytest.raises(ClientError) as error:
                run(driver, ("EXEC REDACT_REVISION ?, '{}', '{}'".format(table_id, registration_id),
                             revision["blockAddress"]))
            assert "already redacted" in error.value.response["Error"]["Message"]

        # GetRevision: dataHash in place of data, and the proof still folds to the digest.
        qldb = first.client("qldb")
        digest = qldb.get_digest(Name="vehicle-registration")
        reply = qldb.get_revision(Name="vehicle-registration", BlockAddress=ion_text_address(request["blockAddress"]),
                                  DocumentId=registration_id, DigestTipAddress=digest["DigestTipAddress"])
        fetched = loads(reply["Revision"]["IonText"])
        assert "data" not in fetched
        computed = dot(ion_hash(fetched["metadata"]), bytes(fetched["dataHash"]))
        assert computed == bytes(fetched["hash"]) == bytes(revision["hash"])
        folded = computed
        for sibling in loads(reply["Proof"]["IonText"]):
            folded = dot(folded, bytes(sibling))
        assert folded == digest["Digest"]
        # GetBlock: the redacted revision's block no longer holds the value; the redacting
        # block (the tip) records the request in redactionInfo.
        block = qldb.get_block(Name="vehicle-registration", BlockAddress=ion_text_address(request["blockAddress"]),
                               DigestTipAddress=digest["DigestTipAddress"])
        assert MARKER not in block["Block"]["IonText"] and "dataHash" in block["Block"]["IonText"]
        tip = loads(qldb.get_block(Name="vehicle-registration", BlockAddress=digest["DigestTipAddress"])
                    ["Block"]["IonText"])
        [recorded] = tip["redactionInfo"]["revisions"]
        assert recorded["documentId"] == registration_id and recorded["version"] == 0
    finally:
        assert first.stop() == 0, first.log_path.read_text()

    # On restart the server rebuilds derived state from the erased journal: no file keeps the
    # value, and the ledger still verifies to the same digest.
    second = QuillServer(data_dir)
    try:
        qldb = second.client("qldb")
        assert qldb.get_digest(Name="vehicle-registration")["Digest"] == digest["Digest"]
        with second.driver("vehicle-registration") as driver:
            again = driver.execute_lambda(
                lambda txn: historic_registration_by_version(txn, registration_id, 0))
            assert "dataHash" in again and "data" not in again
    finally:
        assert second.stop() == 0, second.log_path.read_text()
    assert files_containing(data_dir, MARKER.encode()) == []
    verified = subprocess.run([str(quill_binary()), "verify", "--data-dir", str(data_dir),
                               "--ledger", "vehicle-registration"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
