"""Journal export against a real S3-compatible server: `moto_server` (moto[server]) started on
loopback by a fixture, written to through Quill's S3 client configured the AWS SDK way
(AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...), read back with boto3 and checked with the logic of
the AWS DMV Python sample (`journal_s3_export_reader.py`, `validate_qldb_hash_chain.py`) and with
`quill verify-export` (quill-verify: every block's hashes and the chain).

The reader and validator below follow that sample (MIT-0) step by step, with one fix: the sample
reduces over the *list of objects* instead of the blocks, which only works for a one-object
export; here the blocks of every object are chained in manifest order.
"""

import base64
import hashlib
import json
import os
import subprocess
import time
from functools import reduce

import pytest
from amazon.ion import simpleion
from botocore.exceptions import ClientError

from conftest import (BACKEND, BUCKET, REGION, S3_KEY, S3_SECRET, QuillServer, backend_sql,
                      files_backend_only, quill_binary)

FORMATS = ["ION_TEXT", "ION_BINARY", "JSON"]
BIG_LEDGER_BLOCKS = 1_050
ROLE_ARN = "arn:aws:iam::000000000000:role/qldb-export"


def s3_environment(s3_url):
    """The standard AWS SDK settings pointing Quill's S3 client at moto (and nothing else:
    no profile or shared file of the machine leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL_S3=s3_url, AWS_ACCESS_KEY_ID=S3_KEY,
               AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_REGION=REGION,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
    return env


def quill(*args, env=None):
    result = subprocess.run([str(quill_binary()), *args], capture_output=True, text=True,
                            env=env, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, f"quill {args} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def big_ledger(tmp_path_factory):
    """A data directory with ledger `big` of BIG_LEDGER_BLOCKS blocks (one per statement)."""
    data_dir = tmp_path_factory.mktemp("big") / "data"
    quill("ledger", "create", "big", "--data-dir", str(data_dir))
    statements = ["CREATE TABLE Vehicle"] + [
        f"INSERT INTO Vehicle {{'VIN': 'V{n}', 'Owner': {{'Name': 'n{n}'}}, 'Price': {n}.25}}"
        for n in range(BIG_LEDGER_BLOCKS - 2)]
    quill("shell", "--data-dir", str(data_dir), "--ledger", "big", "-e", "; ".join(statements))
    return data_dir


# --- The AWS DMV sample's reader and validator logic -------------------------------------------

def compare_hash_values(hash1, hash2):
    """QLDB's hash order: bytes compared as signed values from the last byte to the first."""
    for i in range(len(hash1) - 1, -1, -1):
        difference = int.from_bytes(hash1[i:i + 1], "big", signed=True) - \
            int.from_bytes(hash2[i:i + 1], "big", signed=True)
        if difference != 0:
            return difference
    return 0


def join_hash_pairwise(hash1, hash2):
    if len(hash1) == 0:
        return hash2
    if len(hash2) == 0:
        return hash1
    if compare_hash_values(hash1, hash2) < 0:
        concatenated = hash1 + hash2
    else:
        concatenated = hash2 + hash1
    return hashlib.sha256(concatenated).digest()


def get_journal_blocks(s3_object):
    """The sample's ION_TEXT parsing: split on '} {' and re-add the braces."""
    journals = s3_object.split('} {')
    blocks = []
    for i in range(len(journals)):
        if len(journals) == 1:
            text = journals[i]
        elif i == 0:
            text = journals[i] + "}"
        elif i == len(journals) - 1:
            text = "{" + journals[i]
        else:
            text = "{" + journals[i] + "}"
        blocks.append(simpleion.loads(text))
    return blocks


def parse_object(body, output_format):
    if output_format == "ION_TEXT":
        return get_journal_blocks(body.decode("utf-8"))
    if output_format == "ION_BINARY":
        return list(simpleion.loads(body, single_value=False))
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


def compare_key_with_content_range(file_key, first_block, last_block):
    sequence_no_range = file_key.split(".")[1]
    start_sequence_no, last_sequence_no = sequence_no_range.split("-")
    assert str(first_block["blockAddress"]["sequenceNo"]) == start_sequence_no, file_key
    assert str(last_block["blockAddress"]["sequenceNo"]) == last_sequence_no, file_key


def read_export(description, s3_client):
    """`journal_s3_export_reader.read_export`, any format: the blocks of every data object in
    the completed manifest's order."""
    output_format = description.get("OutputFormat", "ION_TEXT")
    config = description["S3ExportConfiguration"]
    prefix, bucket = config["Prefix"], config["Bucket"]
    objects = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    keys = [o["Key"] for o in objects]
    started = f"{prefix}{description['ExportId']}.started.manifest"
    assert started in keys, keys
    completed = [k for k in keys if k.endswith("completed.manifest")]
    assert len(completed) == 1, keys
    manifest = s3_client.get_object(Bucket=bucket, Key=completed[0])["Body"].read()
    if output_format == "JSON":
        data_keys = json.loads(manifest)["keys"]
    else:
        data_keys = list(simpleion.loads(manifest)["keys"])
    journal_blocks = []
    for key in data_keys:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        blocks = parse_object(body, output_format)
        compare_key_with_content_range(key, blocks[0], blocks[-1])
        journal_blocks.extend(blocks)
    return journal_blocks


def block_hashes(block, output_format):
    def raw(value):
        if value is None:
            return None
        return base64.b64decode(value) if output_format == "JSON" else bytes(value)
    return raw(block["blockHash"]), raw(block["entriesHash"]), raw(block.get("previousBlockHash"))


def verify_chain(blocks, output_format):
    """`validate_qldb_hash_chain.verify` over the blocks in order."""
    def compare_journal_blocks(previous, block):
        block_hash, entries_hash, previous_hash = block_hashes(block, output_format)
        previous_block_hash = block_hashes(previous, output_format)[0]
        assert previous_block_hash == previous_hash, "Previous block hash does not match!"
        assert join_hash_pairwise(entries_hash, previous_block_hash) == block_hash, \
            "Block hash doesn't match expected block hash. Verification failed."
        return block
    reduce(compare_journal_blocks, blocks)


# --- quill export --to s3://... ----------------------------------------------------------------

@pytest.mark.parametrize("output_format", FORMATS)
def test_cli_export_to_s3_reads_back_and_validates(big_ledger, s3_url, s3, output_format,
                                                   tmp_path):
    prefix = f"cli-{output_format.lower()}/"
    out = quill("export", "--data-dir", str(big_ledger), "--ledger", "big",
                "--to", f"s3://{BUCKET}/{prefix}", "--format", output_format,
                env=s3_environment(s3_url))
    export_id = out.split("exportId: ")[1].split()[0]
    assert f"exported {BIG_LEDGER_BLOCKS} blocks" in out, out
    description = {"ExportId": export_id, "OutputFormat": output_format,
                   "S3ExportConfiguration": {"Bucket": BUCKET, "Prefix": prefix}}
    blocks = read_export(description, s3)
    assert [b["blockAddress"]["sequenceNo"] for b in blocks] == list(range(BIG_LEDGER_BLOCKS))
    verify_chain(blocks, output_format)

    # Every block's hashes and the chain, with quill-verify: the objects downloaded with boto3.
    downloaded = tmp_path / "downloaded"
    for listed in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]:
        target = downloaded / listed["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=BUCKET, Key=listed["Key"])["Body"].read())
    report = quill("verify-export", str(downloaded))
    assert f"verified {BIG_LEDGER_BLOCKS} blocks (sequence numbers 0-{BIG_LEDGER_BLOCKS - 1})" \
        in report, report

    # The same export to a directory is byte-identical object for object: the S3 path adds
    # nothing but transport.
    local = tmp_path / "local"
    out = quill("export", "--data-dir", str(big_ledger), "--ledger", "big", "--to", str(local),
                "--format", output_format)
    local_id = out.split("exportId: ")[1].split()[0]
    manifest = next(local.glob(f"{local_id}.*.completed.manifest")).read_bytes()
    local_keys = (json.loads(manifest) if output_format == "JSON"
                  else simpleion.loads(manifest))["keys"]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}{export_id}/")["Contents"]
    remote = sorted(o["Key"] for o in listed)
    assert len(remote) == len(local_keys)
    for remote_key, local_key in zip(remote, sorted(local_keys)):
        assert remote_key.split("/")[-1] == local_key.split("/")[-1]
        body = s3.get_object(Bucket=BUCKET, Key=remote_key)["Body"].read()
        assert body == (local / local_key).read_bytes(), remote_key


# --- The control plane: quill serve + moto ------------------------------------------------------

def start_quill(data_dir, s3_url, extra_args=()):
    """`quill serve` whose outbound S3 client points at moto (environment at spawn time)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(s3_environment(s3_url))
        # boto3 in this process still needs the qldb models.
        os.environ["AWS_DATA_PATH"] = saved["AWS_DATA_PATH"]
        return QuillServer(data_dir, extra_args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def wait_for_status(qldb, ledger, export_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = qldb.describe_journal_s3_export(Name=ledger, ExportId=export_id)
        description = description["ExportDescription"]
        if description["Status"] != "IN_PROGRESS":
            return description
        time.sleep(0.2)
    pytest.fail(f"export {export_id} still IN_PROGRESS after {timeout} s")


def export_request(ledger, prefix, output_format=None, start=None, end=None, bucket=BUCKET,
                   encryption=None):
    request = {
        "Name": ledger,
        "InclusiveStartTime": start if start is not None else time.time() - 3600,
        "ExclusiveEndTime": end if end is not None else time.time(),
        "S3ExportConfiguration": {
            "Bucket": bucket, "Prefix": prefix,
            "EncryptionConfiguration": encryption or {"ObjectEncryptionType": "NO_ENCRYPTION"}},
        "RoleArn": ROLE_ARN,
    }
    if output_format:
        request["OutputFormat"] = output_format
    return request


def error_code(call):
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


class StoredExports:
    """The export records of a ledger, edited behind the server's back as a crash leaves them:
    the embedded backend's files, or PostgreSQL's `quill_exports` rows."""

    def __init__(self, data_dir, ledger):
        self.data_dir = data_dir
        self.files = data_dir / "ledgers" / ledger / "exports"

    def copy_in_progress(self, template_id, export_id, prefix):
        """A new export `IN_PROGRESS` with `template_id`'s settings and `prefix`."""
        if BACKEND == "files":
            record = json.loads((self.files / f"{template_id}.json").read_text())
            record.update(exportId=export_id, status="IN_PROGRESS", prefix=prefix)
            record.pop("blocksExported", None)
            (self.files / f"{export_id}.json").write_text(json.dumps(record))
            return
        columns = ("ledger, creation_time_millis, inclusive_start_millis, exclusive_end_millis, "
                   "bucket, object_encryption_type, kms_key_arn, role_arn, output_format")
        backend_sql(self.data_dir,
                    f"INSERT INTO quill_exports (export_id, status, prefix, {columns}) "
                    f"SELECT '{export_id}', 'IN_PROGRESS', '{prefix}', {columns} "
                    f"FROM quill_exports WHERE export_id = '{template_id}'")

    def set_in_progress(self, export_id):
        if BACKEND == "files":
            record = json.loads((self.files / f"{export_id}.json").read_text())
            record["status"] = "IN_PROGRESS"
            (self.files / f"{export_id}.json").write_text(json.dumps(record))
            return
        backend_sql(self.data_dir, "UPDATE quill_exports SET status = 'IN_PROGRESS' "
                                   f"WHERE export_id = '{export_id}'")

    def cancellation_reason(self, export_id):
        if BACKEND == "files":
            return json.loads((self.files / f"{export_id}.json").read_text())["cancellationReason"]
        return backend_sql(self.data_dir, "SELECT cancellation_reason FROM quill_exports "
                                          f"WHERE export_id = '{export_id}'")


def test_control_plane_exports_validate_persist_and_resume(tmp_path, s3_url, s3):
    data_dir = tmp_path / "data"
    records = StoredExports(data_dir, "exports")
    interrupted = []
    server = start_quill(data_dir, s3_url)
    try:
        server.create_ledger("exports")
        qldb = server.client("qldb")
        driver = server.driver("exports")
        driver.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Car"))
        for n in range(20):
            driver.execute_lambda(
                lambda tx, n=n: tx.execute_statement("INSERT INTO Car ?", {"VIN": f"C{n}"}))
        driver.close()
        time.sleep(0.01)

        ids = {}
        for output_format in [None, *FORMATS]:
            prefix = f"api-{(output_format or 'default').lower()}/"
            reply = qldb.export_journal_to_s3(**export_request("exports", prefix, output_format))
            ids[output_format] = reply["ExportId"]
            description = wait_for_status(qldb, "exports", reply["ExportId"])
            assert description["Status"] == "COMPLETED", description
            assert description["RoleArn"] == ROLE_ARN
            assert description.get("OutputFormat") == output_format
            blocks = read_export(description, s3)
            # Genesis, CREATE TABLE, CREATE LEDGER's ACTIVE... and the 21 statements.
            assert len(blocks) >= 22
            verify_chain(blocks, output_format or "ION_TEXT")

        # Validation, QLDB's error codes.
        now = time.time()
        bad = [
            ("ResourceNotFoundException", export_request("no-such-ledger", "p/")),
            ("InvalidParameterException", export_request("exports", "p/", start=now - 10,
                                                         end=now - 20)),
            ("InvalidParameterException", export_request("exports", "p/", end=now + 3600)),
            ("InvalidParameterException", export_request("exports", "p/", bucket="Bad_Bucket")),
            ("InvalidParameterException", export_request("exports", "p/",
                                                         bucket="no-such-bucket")),
            ("InvalidParameterException", export_request(
                "exports", "p/", encryption={"ObjectEncryptionType": "SSE_KMS"})),
        ]
        for code, request in bad:
            assert error_code(lambda: qldb.export_journal_to_s3(**request)) == code, request
        assert error_code(lambda: qldb.describe_journal_s3_export(
            Name="exports", ExportId="A" * 22)) == "ResourceNotFoundException"

        listed = qldb.list_journal_s3_exports_for_ledger(Name="exports")["JournalS3Exports"]
        assert sorted(e["ExportId"] for e in listed) == sorted(ids.values())
        paged, token = [], None
        while True:
            kwargs = {"NextToken": token} if token else {}
            page = qldb.list_journal_s3_exports(MaxResults=1, **kwargs)
            paged += [e["ExportId"] for e in page["JournalS3Exports"]]
            token = page.get("NextToken")
            if not token:
                break
        assert sorted(paged) == sorted(ids.values())

        # Two exports a crash left IN_PROGRESS (records as the server writes them): they count
        # against QLDB's limit of two in progress per ledger, and a restart finishes them. (With
        # PostgreSQL this server takes them over within 2 s and may finish them before the
        # check: test_postgres_backend.py checks the limit across servers on a bigger ledger.)
        for n in range(2):
            interrupted.append(f"Interrupted{n}" + "x" * 10)
            records.copy_in_progress(ids["JSON"], interrupted[-1], f"resumed-{n}/")
        if BACKEND == "files":
            assert error_code(lambda: qldb.export_journal_to_s3(
                **export_request("exports", "p/"))) == "LimitExceededException"
    finally:
        assert server.stop() == 0, server.log_path.read_text()

    server = start_quill(data_dir, s3_url)
    try:
        qldb = server.client("qldb")
        for export_id in interrupted:
            description = wait_for_status(qldb, "exports", export_id)
            assert description["Status"] == "COMPLETED", description
            verify_chain(read_export(description, s3), "JSON")
        for export_id in ids.values():
            description = qldb.describe_journal_s3_export(Name="exports", ExportId=export_id)
            assert description["ExportDescription"]["Status"] == "COMPLETED"
    finally:
        assert server.stop() == 0, server.log_path.read_text()

    for export_id in interrupted:
        records.set_in_progress(export_id)
    # Restarted with no S3 credentials: the interrupted exports are cancelled with a reason,
    # never left IN_PROGRESS.
    saved = dict(os.environ)
    try:
        os.environ.update(AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
        os.environ.pop("AWS_ACCESS_KEY_ID", None)
        os.environ.pop("AWS_SECRET_ACCESS_KEY", None)
        server = QuillServer(data_dir)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        qldb = server.client("qldb")
        for export_id in interrupted:
            description = qldb.describe_journal_s3_export(Name="exports", ExportId=export_id)
            assert description["ExportDescription"]["Status"] == "CANCELLED"
        reason = records.cancellation_reason(interrupted[0])
        assert "no AWS credentials" in reason, reason
    finally:
        assert server.stop() == 0, server.log_path.read_text()


# --- quill import --from s3://... ---------------------------------------------------------------

def quill_result(*args, env=None):
    return subprocess.run([str(quill_binary()), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=600)


def digest_of(data_dir, ledger):
    out = quill("digest", "--data-dir", str(data_dir), "--ledger", ledger)
    value = simpleion.loads(out)
    return (base64.b64encode(value["digest"]).decode(),
            value["digestTipAddress"]["sequenceNo"])


@files_backend_only
@pytest.mark.parametrize("output_format", ["ION_TEXT", "ION_BINARY"])
def test_import_from_s3_keeps_the_digest_and_chains_on(s3_url, s3, output_format, tmp_path):
    source = tmp_path / "source"
    quill("ledger", "create", "dmv", "--data-dir", str(source))
    statements = [
        "CREATE TABLE Vehicle", "CREATE INDEX ON Vehicle (VIN)", "CREATE TABLE Person",
        *[f"INSERT INTO Vehicle {{'VIN': 'V{n}', 'Price': {n}.5}}" for n in range(30)],
        "UPDATE Vehicle AS v SET v.Price = 1 WHERE v.VIN = 'V3'",
        "DELETE FROM Vehicle AS v WHERE v.VIN = 'V4'",
        "INSERT INTO Person {'Name': 'Ada'}",
    ]
    quill("shell", "--data-dir", str(source), "--ledger", "dmv", "-e", "; ".join(statements))
    digest, tip = digest_of(source, "dmv")
    prefix = f"import-{output_format.lower()}/"
    env = s3_environment(s3_url)
    quill("export", "--data-dir", str(source), "--ledger", "dmv",
          "--to", f"s3://{BUCKET}/{prefix}", "--format", output_format, env=env)

    target = tmp_path / "target"
    out = quill("import", "--from", f"s3://{BUCKET}/{prefix}", "--ledger", "moved",
                "--data-dir", str(target), env=env)
    assert f"imported {tip + 1} blocks" in out, out
    assert f"digest: {digest}" in out, out
    assert digest_of(target, "moved") == (digest, tip)
    query = "SELECT v.VIN, v.Price FROM Vehicle AS v WHERE v.VIN IN ('V3', 'V4', 'V5')"
    assert quill("shell", "--data-dir", str(target), "--ledger", "moved", "-e", query) == \
        quill("shell", "--data-dir", str(source), "--ledger", "dmv", "-e", query)

    # New commits chain on; the digest from before the export is a prefix of the new one.
    quill("shell", "--data-dir", str(target), "--ledger", "moved", "-e",
          "INSERT INTO Vehicle {'VIN': 'after'}")
    assert "verified" in quill("verify", "--data-dir", str(target), "--ledger", "moved")
    out = quill("consistency", "--data-dir", str(target), "--ledger", "moved",
                "--from-digest", digest, "--from-tip", str(tip))
    assert out.rstrip().endswith("verified"), out

    # The served ledger answers GetDigest and GetConsistencyProof the same way.
    server = QuillServer(target)
    try:
        reply = server.client("qldb").get_digest(Name="moved")
        assert reply["DigestTipAddress"]["IonText"].endswith(f"sequenceNo:{tip + 1}}}")
        out = quill("consistency", "--endpoint", server.url, "--ledger", "moved",
                    "--from-digest", digest, "--from-tip", str(tip),
                    env={**s3_environment(s3_url), "AWS_ACCESS_KEY_ID": server.key,
                         "AWS_SECRET_ACCESS_KEY": server.secret})
        assert out.rstrip().endswith("verified"), out
    finally:
        server.stop()


def test_import_from_s3_refuses_an_incomplete_export(s3_url, s3, tmp_path, big_ledger):
    prefix = "import-incomplete/"
    env = s3_environment(s3_url)
    quill("export", "--data-dir", str(big_ledger), "--ledger", "big",
          "--to", f"s3://{BUCKET}/{prefix}", "--format", "ION_BINARY", env=env)
    objects = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
                     if o["Key"].endswith(".ion"))
    # Small ledgers fit in one object: remove it, the manifest still lists it.
    s3.delete_object(Bucket=BUCKET, Key=objects[0])
    target = tmp_path / "target"
    result = quill_result("import", "--from", f"s3://{BUCKET}/{prefix}", "--ledger", "moved",
                          "--data-dir", str(target), env=env)
    assert result.returncode == 3, result.stderr
    assert "is missing" in result.stderr and objects[0] in result.stderr, result.stderr
    assert not list((target / "ledgers").iterdir())
