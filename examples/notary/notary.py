"""A notarisation service on Quill: businesses register a profile, then the SHA-256 hashes of
their documents (never the documents), and assertions against those hashes; anyone looks a
hash up and gets its registration time, the issuer's profile, the assertions, and a proof
bundle (C2SP tlog-proof) that they check offline with `quill verify-proof BUNDLE --policy P`.

The ledger is reached through pyqldb (the QLDB driver, unchanged); the proof bundle comes from
Quill's transparency-log API (`/ledgers/{name}/log/proof/bundle`). Standard library HTTP only.

    python examples/notary/notary.py --quill http://127.0.0.1:8000 --ledger notary \
        --policy policy --listen 127.0.0.1:8080

Routes (JSON bodies and answers):
    POST /businesses                   {"name", "country"?, "registrationNumber"?}
                                       -> 201 {"businessId", "token"}
    POST /documents                    {"hash"}                       (Authorization: Bearer token)
                                       -> 201 {"hash", "documentId"}
    POST /documents/{hash}/assertions  {"statement", "reference"?}   (Authorization: Bearer token)
                                       -> 201 {"assertionId"}
    GET  /documents/{hash}             -> 200 {"hash", "registeredAt", "issuer", "assertions",
                                               "proofBundle"}; 404 if never registered
    GET  /policy                       -> the C2SP tlog-policy recipients verify bundles with
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Current botocore no longer ships the QLDB models; the repository keeps them.
os.environ["AWS_DATA_PATH"] = os.pathsep.join(
    [str(REPO / "testdata" / "aws-models"),
     *filter(None, os.environ.get("AWS_DATA_PATH", "").split(os.pathsep))])
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import boto3  # noqa: E402  (after AWS_DATA_PATH is set)
from pyqldb.driver.qldb_driver import QldbDriver  # noqa: E402

REGION = "us-east-1"
HASH = re.compile(r"^[0-9a-f]{64}$")
TABLES = {"Businesses": "tokenHash", "Documents": "hash", "Assertions": "hash"}
# How long a lookup waits for a checkpoint (cosigned by the policy's quorum) that covers the
# registration: checkpoints are signed at most every second, witnesses answer within seconds.
PROOF_WAIT_S = 30


class NotaryError(Exception):
    """A request the service refuses, with its HTTP status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def checked_hash(value):
    if not isinstance(value, str) or not HASH.match(value):
        raise NotaryError(400, "a document hash is 64 lowercase hex digits (SHA-256)")
    return value


class Notary:
    """The service's operations on one Quill ledger."""

    def __init__(self, quill_url, ledger, policy=None, quill_bin="quill",
                 key="AKIDQUILLNOTARY", secret="notary-secret"):
        self.quill_url = quill_url.rstrip("/")
        self.ledger = ledger
        self.policy = policy
        self.quill_bin = quill_bin
        self.credentials = {"aws_access_key_id": key, "aws_secret_access_key": secret}
        self._create_ledger()
        self.driver = QldbDriver(ledger, endpoint_url=self.quill_url, region_name=REGION,
                                 **self.credentials)
        existing = set(self.driver.list_tables())
        for table, indexed in TABLES.items():
            if table not in existing:
                self.driver.execute_lambda(lambda txn, t=table, f=indexed: (
                    txn.execute_statement(f"CREATE TABLE {t}"),
                    txn.execute_statement(f"CREATE INDEX ON {t} ({f})")))

    def _create_ledger(self):
        qldb = boto3.client("qldb", endpoint_url=self.quill_url, region_name=REGION,
                            **self.credentials)
        if self.ledger not in [entry["Name"] for entry in qldb.list_ledgers()["Ledgers"]]:
            qldb.create_ledger(Name=self.ledger, PermissionsMode="STANDARD",
                               DeletionProtection=False)
        deadline = time.monotonic() + 30
        while qldb.describe_ledger(Name=self.ledger)["State"] != "ACTIVE":
            if time.monotonic() > deadline:
                raise RuntimeError(f"ledger {self.ledger} never became ACTIVE")
            time.sleep(0.1)

    def _business_by_token(self, txn, token):
        if not token:
            raise NotaryError(401, "Authorization: Bearer <token> is required")
        rows = list(txn.execute_statement(
            "SELECT b.metadata.id AS id FROM _ql_committed_Businesses AS b"
            " WHERE b.data.tokenHash = ?", token_hash(token)))
        if not rows:
            raise NotaryError(401, "unknown token")
        return rows[0]["id"]

    def register_business(self, profile):
        name = profile.get("name")
        if not isinstance(name, str) or not name.strip():
            raise NotaryError(400, "a business needs a name")
        document = {"name": name}
        for field in ("country", "registrationNumber"):
            if isinstance(profile.get(field), str):
                document[field] = profile[field]
        token = secrets.token_urlsafe(24)
        # Only the token's hash is kept: the ledger never holds a usable credential.
        document["tokenHash"] = token_hash(token)
        [row] = self.driver.execute_lambda(
            lambda txn: list(txn.execute_statement("INSERT INTO Businesses ?", document)))
        return {"businessId": row["documentId"], "token": token}

    def register_document(self, token, digest):
        digest = checked_hash(digest)

        def register(txn):
            business = self._business_by_token(txn, token)
            if list(txn.execute_statement("SELECT hash FROM Documents WHERE hash = ?", digest)):
                raise NotaryError(409, f"{digest} is already registered")
            [row] = txn.execute_statement(
                "INSERT INTO Documents ?", {"hash": digest, "businessId": business})
            return row["documentId"]

        return {"hash": digest, "documentId": self.driver.execute_lambda(register)}

    def add_assertion(self, token, digest, body):
        digest = checked_hash(digest)
        statement = body.get("statement")
        if not isinstance(statement, str) or not statement.strip():
            raise NotaryError(400, "an assertion needs a statement")
        reference = body.get("reference")
        assertion = {"hash": digest, "statement": statement}
        if reference is not None:
            assertion["reference"] = checked_hash(reference)

        def record(txn):
            assertion["businessId"] = self._business_by_token(txn, token)
            for required in filter(None, [digest, reference]):
                if not list(txn.execute_statement(
                        "SELECT hash FROM Documents WHERE hash = ?", required)):
                    raise NotaryError(404, f"{required} is not registered")
            [row] = txn.execute_statement("INSERT INTO Assertions ?", assertion)
            return row["documentId"]

        return {"assertionId": self.driver.execute_lambda(record)}

    def lookup(self, digest):
        digest = checked_hash(digest)

        def read(txn):
            rows = list(txn.execute_statement(
                "SELECT d.metadata.id AS id, d.metadata.txTime AS txTime,"
                " d.blockAddress.sequenceNo AS block, d.data.businessId AS businessId"
                " FROM _ql_committed_Documents AS d WHERE d.data.hash = ?", digest))
            if not rows:
                return None
            [registration] = rows
            profile = list(txn.execute_statement(
                "SELECT b.metadata.id AS businessId, b.data.name AS name,"
                " b.data.country AS country, b.data.registrationNumber AS registrationNumber"
                " FROM _ql_committed_Businesses AS b WHERE b.metadata.id = ?",
                registration["businessId"]))
            assertions = list(txn.execute_statement(
                "SELECT a.data.statement AS statement, a.data.reference AS reference,"
                " a.data.businessId AS businessId, a.metadata.txTime AS txTime"
                " FROM _ql_committed_Assertions AS a WHERE a.data.hash = ?", digest))
            return registration, profile, assertions

        found = self.driver.execute_lambda(read)
        if found is None:
            raise NotaryError(404, f"{digest} is not registered")
        registration, [profile], assertions = found
        return {
            "hash": digest,
            "registeredAt": registration["txTime"].isoformat(),
            "issuer": {k: v for k, v in dict(profile).items() if v is not None},
            "assertions": sorted(
                ({k: (v.isoformat() if k == "txTime" else v)
                  for k, v in dict(a).items() if v is not None} for a in assertions),
                key=lambda a: a["txTime"]),
            "proofBundle": self.proof_bundle(int(registration["block"]), registration["id"]),
        }

    def proof_bundle(self, block, document_id):
        """The tlog-proof of the registration revision, once a served checkpoint covers it
        and (with a policy) verifies under the published policy: until witnesses have
        cosigned a checkpoint that covers the block, Quill serves the bare signed one."""
        url = (f"{self.quill_url}/ledgers/{self.ledger}/log/proof/bundle"
               f"?index={block}&documentId={document_id}")
        deadline = time.monotonic() + PROOF_WAIT_S
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    bundle = response.read().decode()
                failure = self._verify(bundle)
            except urllib.error.HTTPError as error:
                # 400: the block is beyond the served checkpoint; 404: no checkpoint yet.
                if error.code not in (400, 404):
                    raise
                failure = error.read().decode().strip()
            if failure is None:
                return bundle
            if time.monotonic() > deadline:
                raise NotaryError(503, f"no verifiable proof bundle yet: {failure}")
            time.sleep(0.2)

    def _verify(self, bundle):
        """None if `quill verify-proof` accepts the bundle under the policy, else why not."""
        if self.policy is None:
            return None
        with tempfile.NamedTemporaryFile("w", suffix=".proof") as file:
            file.write(bundle)
            file.flush()
            result = subprocess.run(
                [self.quill_bin, "verify-proof", file.name, "--policy", self.policy],
                capture_output=True, text=True, timeout=30)
        return None if result.returncode == 0 else result.stderr.strip()


def handler(notary, policy_text):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status, body, content_type="application/json"):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _token(self):
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            return token.strip() if scheme == "Bearer" else None

        def _json(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as error:
                raise NotaryError(400, f"the body is not JSON: {error}") from None
            if not isinstance(body, dict):
                raise NotaryError(400, "the body is not a JSON object")
            return body

        def _serve(self, route):
            try:
                self._answer(*route())
            except NotaryError as error:
                self._answer(error.status, {"error": str(error)})
            except Exception as error:  # noqa: BLE001  (the ledger or the log failed: say so)
                self.log_error("%s %s failed: %r", self.command, self.path, error)
                self._answer(500, {"error": f"{type(error).__name__}: {error}"})

        def do_GET(self):
            parts = self.path.strip("/").split("/")

            def route():
                if parts == ["policy"] and policy_text is not None:
                    return 200, policy_text, "text/plain; charset=utf-8"
                if len(parts) == 2 and parts[0] == "documents":
                    return 200, notary.lookup(parts[1])
                raise NotaryError(404, f"no route GET {self.path}")

            self._serve(route)

        def do_POST(self):
            parts = self.path.strip("/").split("/")

            def route():
                if parts == ["businesses"]:
                    return 201, notary.register_business(self._json())
                if parts == ["documents"]:
                    return 201, notary.register_document(self._token(), self._json().get("hash"))
                if len(parts) == 3 and parts[0] == "documents" and parts[2] == "assertions":
                    return 201, notary.add_assertion(self._token(), parts[1], self._json())
                raise NotaryError(404, f"no route POST {self.path}")

            self._serve(route)

        def log_message(self, format, *args):
            sys.stderr.write("notary: " + format % args + "\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quill", required=True, help="the quill serve URL")
    parser.add_argument("--ledger", default="notary")
    parser.add_argument("--policy", help="the C2SP tlog-policy published at GET /policy;"
                        " bundles are handed out only once they verify under it")
    parser.add_argument("--quill-bin", default="quill", help="the quill binary (verify-proof)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (port 0: any)")
    args = parser.parse_args()
    notary = Notary(args.quill, args.ledger, args.policy, args.quill_bin,
                    os.environ.get("AWS_ACCESS_KEY_ID", "AKIDQUILLNOTARY"),
                    os.environ.get("AWS_SECRET_ACCESS_KEY", "notary-secret"))
    policy_text = Path(args.policy).read_text() if args.policy else None
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), handler(notary, policy_text))
    print(f"notary: listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        notary.driver.close()


if __name__ == "__main__":
    main()
