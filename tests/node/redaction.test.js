// REDACT_REVISION through the unchanged QLDB Node.js driver, with the calls of the AWS DMV
// Node.js sample (RedactRevision.ts in aws-samples/amazon-qldb-dmv-sample-nodejs): a registration
// transferred to a new owner, the table id from information_schema, the document ids by `BY id`,
// the historic revision by owner from history(), `EXEC redact_revision ?, 'tableId', 'documentId'`
// with its blockAddress as a parameter, then history() polled by version until the revision has
// `dataHash` and no `data`. Then, as QLDB documents it: `dataHash` is the Ion hash of the removed
// data, the revision's `hash` is unchanged, the latest revision keeps its data, and GetRevision
// returns the redacted revision with its proof.
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { QldbDriver } = require("amazon-qldb-driver-nodejs");
const { QLDBClient, CreateLedgerCommand, GetDigestCommand, GetRevisionCommand } = require("@aws-sdk/client-qldb");
const { dom, dumpBinary, dumpText, makeReader, toBase64 } = require("ion-js");
const { cryptoHasherProvider, makeHashReader } = require("ion-hash-js");
const { startQuill } = require("./support");

const LEDGER = "redaction";
const VIN = "1N4AL11D75C109151";
const MARKER = "node-redaction-marker-51c0de";
const REDACTION_TIMEOUT_MS = 30000;
const credentials = { accessKeyId: "dev", secretAccessKey: "dev" };

let dataDir;
let server;
let driver;
let control;

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "quill-node-redaction-"));
  server = await startQuill(dataDir);
  const options = { endpoint: server.endpoint, region: "us-east-1", credentials };
  control = new QLDBClient(options);
  await control.send(new CreateLedgerCommand({ Name: LEDGER, PermissionsMode: "STANDARD", DeletionProtection: false }));
  driver = new QldbDriver(LEDGER, options);
});

after(async () => {
  if (driver) driver.close();
  if (server) await server.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function ionHash(value) {
  const reader = makeHashReader(makeReader(dumpBinary(value)), cryptoHasherProvider("sha256"));
  reader.next();
  reader.next();
  return reader.digest();
}

// --- The sample's queries (RedactRevision.ts, Util.ts) -------------------------------------------

async function getTableId(txn, tableName) {
  const rows = (await txn.execute("SELECT VALUE tableId FROM information_schema.user_tables WHERE name = ?", tableName)).getResultList();
  if (rows.length === 0) throw new Error(`Unable to find table with name: ${tableName}.`);
  return rows[0].stringValue();
}

async function getDocumentId(txn, tableName, field, value) {
  const rows = (await txn.execute(`SELECT id FROM ${tableName} AS t BY id WHERE t.${field} = ?`, value)).getResultList();
  if (rows.length === 0) throw new Error(`Unable to retrieve document ID using ${value}.`);
  return rows[0].get("id").stringValue();
}

async function getHistoricRegistrationByOwner(txn, registrationDocumentId, ownerDocumentId) {
  const query =
    "SELECT * FROM history(VehicleRegistration) AS h " +
    `WHERE h.metadata.id = '${registrationDocumentId}' ` +
    `AND h.data.Owners.PrimaryOwner.PersonId = '${ownerDocumentId}'`;
  const rows = (await txn.execute(query)).getResultList();
  assert.strictEqual(rows.length, 1, "exactly one historic registration with that owner");
  return rows[0];
}

async function getHistoricRegistrationByVersion(txn, registrationDocumentId, version) {
  const query =
    "SELECT * FROM history(VehicleRegistration) AS h " +
    `WHERE h.metadata.id = '${registrationDocumentId}' AND h.metadata.version = ${version}`;
  const rows = (await txn.execute(query)).getResultList();
  if (rows.length === 0) throw new Error(`Unable to find a historic registration with version ${version}.`);
  return rows[0];
}

async function redactPreviousRegistration(txn, vin, previousOwnerGovId) {
  const tableId = await getTableId(txn, "VehicleRegistration");
  const registrationDocumentId = await getDocumentId(txn, "VehicleRegistration", "VIN", vin);
  const previousOwnerDocumentId = await getDocumentId(txn, "Person", "GovId", previousOwnerGovId);
  const historic = await getHistoricRegistrationByOwner(txn, registrationDocumentId, previousOwnerDocumentId);
  const query = `EXEC redact_revision ?, '${tableId}', '${registrationDocumentId}'`;
  const rows = (await txn.execute(query, historic.get("blockAddress"))).getResultList();
  if (rows.length === 0) throw new Error("Unable to redact the historic registration.");
  return { request: rows[0], tableId, registrationDocumentId };
}

async function waitUntilRevisionRedacted(request) {
  const deadline = Date.now() + REDACTION_TIMEOUT_MS;
  for (;;) {
    const revision = await driver.executeLambda((txn) =>
      getHistoricRegistrationByVersion(txn, request.get("documentId").stringValue(), request.get("version").numberValue()),
    );
    if (revision.get("dataHash") != null && revision.get("data") == null) return revision;
    assert.ok(Date.now() < deadline, "the revision was never redacted");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test("the Node.js driver redacts a historic revision as the DMV sample does", async () => {
  await driver.executeLambda(async (txn) => {
    await txn.execute("CREATE TABLE VehicleRegistration");
    await txn.execute("CREATE TABLE Person");
    await txn.execute("CREATE INDEX ON VehicleRegistration (VIN)");
    await txn.execute("CREATE INDEX ON Person (GovId)");
  });
  const personIds = [];
  for (const govId of ["P-1", "P-2"]) {
    const [row] = (await driver.executeLambda((txn) => txn.execute("INSERT INTO Person ?", { GovId: govId }))).getResultList();
    personIds.push(row.get("documentId").stringValue());
  }
  // The first owner's registration carries the marker (as a parameter, so no statement text
  // holds it); the transfer makes that revision inactive, hence redactable.
  await driver.executeLambda((txn) =>
    txn.execute("INSERT INTO VehicleRegistration ?", {
      VIN,
      Notes: MARKER,
      Owners: { PrimaryOwner: { PersonId: personIds[0] }, SecondaryOwners: [] },
    }),
  );
  await driver.executeLambda((txn) =>
    txn.execute(
      "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ?, r.Notes = 'transferred' WHERE r.VIN = ?",
      personIds[1],
      VIN,
    ),
  );
  const before = await driver.executeLambda(async (txn) =>
    getHistoricRegistrationByVersion(txn, await getDocumentId(txn, "VehicleRegistration", "VIN", VIN), 0),
  );
  assert.strictEqual(before.get("data", "Notes").stringValue(), MARKER);

  const { request, tableId, registrationDocumentId } = await driver.executeLambda((txn) =>
    redactPreviousRegistration(txn, VIN, "P-1"),
  );
  assert.deepStrictEqual(
    request.fieldNames().sort(),
    ["blockAddress", "documentId", "tableId", "version"],
  );
  assert.strictEqual(request.get("tableId").stringValue(), tableId);
  assert.strictEqual(request.get("documentId").stringValue(), registrationDocumentId);
  assert.strictEqual(request.get("version").numberValue(), 0);
  assert.ok(request.get("blockAddress").ionEquals(before.get("blockAddress")));

  const redacted = await waitUntilRevisionRedacted(request);
  assert.strictEqual(toBase64(redacted.get("dataHash").uInt8ArrayValue()), toBase64(ionHash(before.get("data"))));
  assert.strictEqual(toBase64(redacted.get("hash").uInt8ArrayValue()), toBase64(before.get("hash").uInt8ArrayValue()));
  assert.ok(redacted.get("metadata").ionEquals(before.get("metadata")));
  assert.ok(redacted.get("blockAddress").ionEquals(before.get("blockAddress")));

  // The latest revision is untouched, and no query finds the marker any more.
  const [current] = (await driver.executeLambda((txn) => txn.execute("SELECT * FROM VehicleRegistration AS r WHERE r.VIN = ?", VIN))).getResultList();
  assert.strictEqual(current.get("Notes").stringValue(), "transferred");
  const found = (await driver.executeLambda((txn) =>
    txn.execute("SELECT h.metadata.version FROM history(VehicleRegistration) AS h WHERE h.data.Notes = ?", MARKER),
  )).getResultList();
  assert.strictEqual(found.length, 0);

  // GetRevision (the sample's verifier path) returns the redacted revision with a proof.
  const digest = await control.send(new GetDigestCommand({ Name: LEDGER }));
  const reply = await control.send(
    new GetRevisionCommand({
      Name: LEDGER,
      BlockAddress: { IonText: dumpText(before.get("blockAddress")) },
      DocumentId: registrationDocumentId,
      DigestTipAddress: digest.DigestTipAddress,
    }),
  );
  const revision = dom.load(reply.Revision.IonText);
  assert.strictEqual(revision.get("data"), null);
  assert.strictEqual(toBase64(revision.get("dataHash").uInt8ArrayValue()), toBase64(ionHash(before.get("data"))));
  assert.strictEqual(toBase64(revision.get("hash").uInt8ArrayValue()), toBase64(before.get("hash").uInt8ArrayValue()));
  assert.ok(dom.load(reply.Proof.IonText).elements().length > 0, "a proof to the digest");
  assert.ok(!reply.Revision.IonText.includes(MARKER));
});
