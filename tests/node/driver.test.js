// The QLDB Node.js driver (amazon-qldb-driver-nodejs 3.1.0), unchanged, against `quill serve`.
// Starts the real binary ($QUILL_BIN) on a free loopback port with a scratch data directory.
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");
const { QldbDriver } = require("amazon-qldb-driver-nodejs");
const { QLDBClient, CreateLedgerCommand, GetDigestCommand } = require("@aws-sdk/client-qldb");

const credentials = { accessKeyId: "dev", secretAccessKey: "dev" };
let server;
let endpoint;
let dataDir;

before(async () => {
  const bin = process.env.QUILL_BIN || path.join(__dirname, "../../target/debug/quill");
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "quill-node-"));
  server = spawn(bin, ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
  endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("quill serve did not start in 30 s")), 30000);
    readline.createInterface({ input: server.stdout }).on("line", (line) => {
      const match = line.match(/listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    server.on("exit", (code) => reject(new Error(`quill serve exited with ${code}`)));
  });
  const control = new QLDBClient({ endpoint, region: "us-east-1", credentials });
  await control.send(new CreateLedgerCommand({ Name: "node", PermissionsMode: "STANDARD", DeletionProtection: false }));
});

after(() => {
  server.kill("SIGTERM");
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
