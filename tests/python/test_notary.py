"""examples/notary end to end: three `quill witness serve` processes, `quill serve` with a public,
witnessed transparency log, and the notary service (a pyqldb client) in its own process. A
recipient looks an invoice hash up and checks the proof bundle offline with `quill verify-proof`
against the published policy (log key + 2 of 3 witnesses)."""

import base64
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from amazon.ion.simpleion import dumps, loads

from conftest import REPO, QuillServer, listening_url, quill_binary

LEDGER = "notary"
WITNESSES = ("w1", "w2", "w3")


class Process:
    """A child process that prints `...: listening on URL` once ready."""

    def __init__(self, args, log_path, prefix):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                                        stderr=self._log, stdin=subprocess.DEVNULL)
        self.url = listening_url(self.process, prefix)
        if self.url is None:
            self.stop()
            pytest.fail(f"{args[:3]} did not start\n{log_path.read_text()}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def quill(*args):
    return subprocess.run([str(quill_binary()), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def checked_output(*args):
    result = quill(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def notary(tmp_path_factory):
    """The notary service's URL and the policy file it publishes."""
    directory = tmp_path_factory.mktemp("notary")
    data_dir = directory / "data"
    data_dir.mkdir()
    log_vkey = checked_output("log-key", "--data-dir", data_dir, "--ledger", LEDGER)
    (directory / "logs").write_text(f"log {log_vkey}\n")
    processes = []
    try:
        policy = [f"log {log_vkey}"]
        for name in WITNESSES:
            vkey = checked_output("witness", "keygen", "--name", f"{name}.example",
                                  "--key", directory / f"{name}.key")
            witness = Process([quill_binary(), "witness", "serve", "--listen", "127.0.0.1:0",
                               "--key", directory / f"{name}.key", "--logs", directory / "logs",
                               "--state-dir", directory / f"{name}-state"],
                              directory / f"{name}.log", "quill: listening on ")
            processes.append(witness)
            policy.append(f"witness {name} {vkey} {witness.url}")
        policy += ["group two-of-three 2 " + " ".join(WITNESSES), "quorum two-of-three", ""]
        policy_path = directory / "policy"
        policy_path.write_text("\n".join(policy))
        server = QuillServer(data_dir, ["--public-log", "--witness-policy", policy_path])
        processes.append(server)
        service = Process([sys.executable, REPO / "examples" / "notary" / "notary.py",
                           "--quill", server.url, "--ledger", LEDGER, "--policy", policy_path,
                           "--quill-bin", quill_binary(),
                           "--listen", "127.0.0.1:0"],
                          directory / "notary-service.log", "notary: listening on ")
        processes.append(service)
        yield service.url
    finally:
        for process in reversed(processes):
            process.stop()


def call(url, method="GET", body=None, token=None):
    """(status, parsed JSON or text) of one request to the notary service."""
    request = urllib.request.Request(url, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, content_type, data = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        status, content_type, data = error.code, error.headers["Content-Type"], error.read()
    return status, json.loads(data) if content_type == "application/json" else data.decode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def register_business(notary, name):
    status, answer = call(f"{notary}/businesses", "POST", {"name": name, "country": "GB"})
    assert status == 201, answer
    return answer


def register(notary, token, data):
    digest = sha256(data)
    status, answer = call(f"{notary}/documents", "POST", {"hash": digest}, token)
    assert status == 201, answer
    return digest


def verify_offline(notary, bundle_text, directory):
    """What a recipient does: fetch the published policy once, check the bundle with no server."""
    status, policy = call(f"{notary}/policy")
    assert status == 200
    (directory / "policy").write_text(policy)
    (directory / "bundle").write_text(bundle_text)
    return quill("verify-proof", directory / "bundle", "--policy", directory / "policy")


INVOICE = b"INVOICE 2026-0042\nAcme Widgets Ltd -> Bolt Traders\n500 widgets, GBP 12,500.00\n"


def test_recipient_verifies_an_invoice_offline_and_sees_later_assertions(notary, tmp_path):
    seller = register_business(notary, "Acme Widgets Ltd")
    buyer = register_business(notary, "Bolt Traders")
    invoice = register(notary, seller["token"], INVOICE)
    # A hash is registered once; writing needs a business's token.
    status, answer = call(f"{notary}/documents", "POST", {"hash": invoice}, seller["token"])
    assert (status, answer["error"]) == (409, f"{invoice} is already registered")
    assert call(f"{notary}/documents", "POST", {"hash": sha256(b"x")})[0] == 401
    assert call(f"{notary}/documents", "POST", {"hash": "not-a-hash"}, seller["token"])[0] == 400

    status, found = call(f"{notary}/documents/{invoice}")
    assert status == 200, found
    assert found["hash"] == invoice
    assert found["issuer"] == {"businessId": seller["businessId"], "name": "Acme Widgets Ltd",
                               "country": "GB"}
    assert found["assertions"] == []
    verified = verify_offline(notary, found["proofBundle"], tmp_path)
    assert verified.returncode == 0, verified.stderr
    revision_line, summary = verified.stdout.strip().split("\n")
    # The verified revision is this hash's registration, by this issuer, at this time.
    revision = loads(revision_line)
    assert revision["data"]["hash"] == invoice
    assert revision["data"]["businessId"] == seller["businessId"]
    assert revision["metadata"]["txTime"].isoformat() == found["registeredAt"]
    assert f"is in localhost/quill/{LEDGER} at size" in summary
    cosigners = summary.rsplit("[", 1)[1].rstrip("]").split(", ")
    assert len(cosigners) >= 2 and set(cosigners) <= set(WITNESSES), summary

    # Assertions added later show up on lookup, in order, with who made them.
    status, _ = call(f"{notary}/documents/{invoice}/assertions", "POST",
                     {"statement": "goods received damaged"}, buyer["token"])
    assert status == 201
    credit_note = register(notary, seller["token"], b"CREDIT NOTE 2026-0007 for INVOICE 2026-0042\n")
    status, _ = call(f"{notary}/documents/{invoice}/assertions", "POST",
                     {"statement": "credited", "reference": credit_note}, seller["token"])
    assert status == 201
    status, _ = call(f"{notary}/documents/{invoice}/assertions", "POST",
                     {"statement": "paid"}, seller["token"])
    assert status == 201
    # A cross-reference must name a registered hash.
    status, answer = call(f"{notary}/documents/{invoice}/assertions", "POST",
                          {"statement": "see", "reference": sha256(b"unknown")}, seller["token"])
    assert status == 404, answer

    status, found = call(f"{notary}/documents/{invoice}")
    assert status == 200
    assert [(a["statement"], a["businessId"], a.get("reference")) for a in found["assertions"]] == [
        ("goods received damaged", buyer["businessId"], None),
        ("credited", seller["businessId"], credit_note),
        ("paid", seller["businessId"], None),
    ]
    assert all(a["txTime"] >= found["registeredAt"] for a in found["assertions"])
    assert verify_offline(notary, found["proofBundle"], tmp_path).returncode == 0


def tampered(bundle_text, edit_extra=None, edit_lines=None):
    """The bundle with its `extra` revision or its lines rewritten."""
    lines = bundle_text.split("\n")
    for number, line in enumerate(lines):
        if line.startswith("extra ") and edit_extra:
            extra = loads(base64.b64decode(line[len("extra "):]))
            edit_extra(extra)
            lines[number] = "extra " + base64.b64encode(dumps(extra, binary=False).encode()).decode()
    return "\n".join(edit_lines(lines) if edit_lines else lines)


def failed_link(result):
    """The link `quill verify-proof` names as broken (it exits with status 3)."""
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert "proof does not verify: link `" in result.stderr, result.stderr
    return result.stderr.split("link `", 1)[1].split("`", 1)[0]


def test_an_altered_invoice_is_not_found_and_a_tampered_bundle_fails(notary, tmp_path):
    seller = register_business(notary, "Careful Carriers plc")
    invoice_bytes = INVOICE.replace(b"Acme Widgets Ltd", b"Careful Carriers plc")
    invoice = register(notary, seller["token"], invoice_bytes)
    altered = sha256(invoice_bytes.replace(b"12,500.00", b"125,000.00"))
    status, answer = call(f"{notary}/documents/{altered}")
    assert (status, answer["error"]) == (404, f"{altered} is not registered")

    status, found = call(f"{notary}/documents/{invoice}")
    assert status == 200, found
    bundle = found["proofBundle"]
    assert verify_offline(notary, bundle, tmp_path).returncode == 0

    # The altered invoice's hash put into the genuine bundle's revision: the revision no
    # longer hashes into the block.
    def swap_hash(extra):
        extra["revision"]["data"]["hash"] = altered

    result = verify_offline(notary, tampered(bundle, edit_extra=swap_hash), tmp_path)
    assert failed_link(result) == "revision -> block hash"

    # One hash of the inclusion proof changed (they follow the `index` line).
    def bad_inclusion(lines):
        first_hash = next(n for n, line in enumerate(lines) if line.startswith("index ")) + 1
        lines[first_hash] = base64.b64encode(b"\x00" * 32).decode()
        return lines

    result = verify_offline(notary, tampered(bundle, edit_lines=bad_inclusion), tmp_path)
    assert failed_link(result) == "block leaf -> checkpoint (RFC 6962 inclusion)"

    # The witnesses' cosignatures stripped: the log's signature alone misses the quorum.
    def log_signature_only(lines):
        return [line for line in lines
                if not line.startswith("\u2014 ") or line.startswith(f"\u2014 localhost/quill/{LEDGER} ")]

    result = verify_offline(notary, tampered(bundle, edit_lines=log_signature_only), tmp_path)
    assert failed_link(result) == "witness quorum"
