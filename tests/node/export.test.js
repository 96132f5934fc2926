// `quill export` read back the way the AWS DMV Node.js sample's JournalS3ExportReader reads an
// export (manifest keys in order, ion-js dom.loadAll per object, key range against content), then
// the sample's hash-chain check (Verifier: joinHashesPairwise in QLDB's hash order). Objects come
// from a `--to` directory here; the S3 path itself is covered by tests/python/test_export.py.
const { test } = require("node:test");
const assert = require("node:assert");
const { execFileSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { dom } = require("ion-js");

const bin = process.env.QUILL_BIN || path.join(__dirname, "../../target/debug/quill");
const BLOCKS = 60;

function quill(...args) {
  return execFileSync(bin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

// QLDB's hash order: bytes compared as signed values from the last to the first.
function compareHashValues(a, b) {
  for (let i = a.length - 1; i >= 0; i--) {
    const difference = ((a[i] << 24) >> 24) - ((b[i] << 24) >> 24);
    if (difference !== 0) return difference;
  }
  return 0;
}

function joinHashesPairwise(a, b) {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const joined = compareHashValues(a, b) < 0 ? Buffer.concat([a, b]) : Buffer.concat([b, a]);
  return crypto.createHash("sha256").update(joined).digest();
}

function readExport(root, format) {
  const manifest = fs.readdirSync(root).find((name) => name.endsWith("completed.manifest"));
  assert.ok(manifest, "a completed manifest");
  const keys = dom.load(fs.readFileSync(path.join(root, manifest))).get("keys").elements().map((k) => k.stringValue());
  const blocks = [];
  for (const key of keys) {
    const bytes = fs.readFileSync(path.join(root, key));
    const values = dom.loadAll(format === "ION_TEXT" ? bytes.toString("utf8") : bytes);
    const [first, last] = key.split(".")[1].split("-");
    assert.strictEqual(values[0].get("blockAddress", "sequenceNo").numberValue().toString(), first);
    assert.strictEqual(values[values.length - 1].get("blockAddress", "sequenceNo").numberValue().toString(), last);
    blocks.push(...values);
  }
  return blocks;
}

for (const format of ["ION_TEXT", "ION_BINARY"]) {
  test(`a ${format} export reads like the DMV sample's JournalS3ExportReader and its chain verifies`, () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "quill-node-export-"));
    try {
      const dataDir = path.join(work, "data");
      quill("ledger", "create", "nodeexport", "--data-dir", dataDir);
      const statements = ["CREATE TABLE Vehicle"];
      for (let n = 0; n < BLOCKS - 2; n++) statements.push(`INSERT INTO Vehicle {'VIN': 'N${n}', 'Note': '} {'}`);
      quill("shell", "--data-dir", dataDir, "--ledger", "nodeexport", "-e", statements.join("; "));
      const out = path.join(work, "out");
      quill("export", "--data-dir", dataDir, "--ledger", "nodeexport", "--to", out, "--format", format);
      const blocks = readExport(out, format);
      assert.deepStrictEqual(blocks.map((b) => b.get("blockAddress", "sequenceNo").numberValue()), [...Array(BLOCKS).keys()]);
      const hash = (block, field) => {
        const value = block.get(field);
        return value === null ? null : Buffer.from(value.uInt8ArrayValue());
      };
      blocks.reduce((previous, block) => {
        assert.ok(hash(previous, "blockHash").equals(hash(block, "previousBlockHash")), "Previous block hash does not match!");
        const expected = joinHashesPairwise(hash(block, "entriesHash"), hash(previous, "blockHash"));
        assert.ok(expected.equals(hash(block, "blockHash")), "Block hash doesn't match expected block hash.");
        return block;
      });
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
}
