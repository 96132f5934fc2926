// The QLDB Node.js driver (amazon-qldb-driver-nodejs 3.1.0), unchanged, against `quill serve`.
// Starts the real binary ($QUILL_BIN) on a free loopback port with a scratch data directory.
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { QldbDriver } = require("amazon-qldb-driver-nodejs");
const { QLDBClient, CreateLedgerCommand, GetDigestCommand } = require("@aws-sdk/client-qldb");
const { startQuill } = require("./support");

const credentials = { accessKeyId: "dev", secretAccessKey: "dev" };
let server;
let endpoint;
let dataDir;

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "quill-node-"));
  server = await startQuill(dataDir);
  endpoint = server.endpoint;
  const control = new QLDBClient({ endpoint, region: "us-east-1", credentials });
  await control.send(new CreateLedgerCommand({ Name: "node", PermissionsMode: "STANDARD", DeletionProtection: false }));
});

after(async () => {
  await server.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test("the driver creates, inserts with parameters and queries through an index", async () => {
  const driver = new QldbDriver("node", { endpoint, region: "us-east-1", credentials });
  try {
    await driver.executeLambda(async (tx) => {
      await tx.execute("CREATE TABLE Person");
      await tx.execute("CREATE INDEX ON Person (GovId)");
    });
    await driver.executeLambda((tx) => tx.execute("INSERT INTO Person ?", { FirstName: "Raul", GovId: "LEWISR261LL", Age: 42 }));
    const result = await driver.executeLambda((tx) => tx.execute("SELECT * FROM Person AS p WHERE p.GovId = ?", "LEWISR261LL"));
    const rows = result.getResultList();
    assert.strictEqual(rows.length, 1);
    assert.strictEqual(rows[0].get("FirstName").stringValue(), "Raul");
    assert.strictEqual(rows[0].get("Age").numberValue(), 42);
    assert.deepStrictEqual(await driver.getTableNames(), ["Person"]);
  } finally {
    driver.close();
  }
});

test("the control plane returns a digest", async () => {
  const control = new QLDBClient({ endpoint, region: "us-east-1", credentials });
  const digest = await control.send(new GetDigestCommand({ Name: "node" }));
  assert.strictEqual(digest.Digest.length, 32);
  assert.match(digest.DigestTipAddress.IonText, /sequenceNo/);
});
