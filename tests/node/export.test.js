// The AWS DMV Node.js sample's export path (ExportJournal.ts, JournalS3ExportReader.ts,
// ValidateQldbHashchain.ts in aws-samples/amazon-qldb-dmv-sample-nodejs) against `quill serve`
// writing to a real S3-compatible server (moto_server on loopback). Both sides are configured the
// AWS SDK way, from the environment only: AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION. The sample's steps, in order: the bucket, ExportJournalToS3
// with its default encryption (SSE_S3 without a KMS key, SSE_KMS with one), DescribeJournalS3Export
// polled to COMPLETED, then the reader (list the prefix, the started manifest, the completed
// manifest's keys, each object's blocks against the sequence range in its name) and the
// validator (each block's previousBlockHash is the previous blockHash, and blockHash =
// joinHashesPairwise(entriesHash, previous blockHash), compared as base64 as the sample does).
//
// One change to the sample: it reads bodies with `Body.toString()`, which in AWS SDK v3 is the
// stream's name, not its content; here bodies are read with the v3 SDK's transformToString /
// transformToByteArray (bytes for ION_BINARY, which no string holds).
//
// The sample exports the last 10 minutes. Its JournalBlock.fromIon refuses a block without
// previousBlockHash, and Quill's genesis block (sequence number 0) has none (README,
// "Compatibility"); so, kept unchanged, the sample cannot read an export holding block 0. The
// exports here start just after the genesis block was written, at block 1; full exports from
// block 0 are validated by tests/python/test_export.py and `quill verify-export`.
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { dom, IonTypes, toBase64 } = require("ion-js");
const {
  S3Client,
  CreateBucketCommand,
  ListObjectsV2Command,
  GetObjectCommand,
  HeadObjectCommand,
} = require("@aws-sdk/client-s3");
const { QLDBClient, ExportJournalToS3Command, DescribeJournalS3ExportCommand } = require("@aws-sdk/client-qldb");
const { quill, startQuill, startMoto, storageArgs } = require("./support");

const LEDGER = "vehicle-registration";
const BUCKET = "quill-node-exports";
const BLOCKS = 60;
const KMS_KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7";
const EXPORT_TIMEOUT_MS = 60000;

let work;
let moto;
let server;
let s3Client;
let qldbClient;
let afterGenesis;

// The AWS SDK settings for S3 (and nothing from the machine's own profile or files), in this
// process for the SDK's S3Client and in `quill serve`'s environment for its S3 client.
function useS3Environment(url) {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith("AWS_")) delete process.env[name];
  }
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: url,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_REGION: "us-east-1",
    AWS_SHARED_CREDENTIALS_FILE: os.devnull,
    AWS_CONFIG_FILE: os.devnull,
    AWS_EC2_METADATA_DISABLED: "true",
  });
}

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "quill-node-export-"));
  moto = await startMoto();
  useS3Environment(moto.url);
  const dataDir = path.join(work, "data");
  quill(["ledger", "create", LEDGER, ...storageArgs(dataDir)]);
  // Block timestamps have millisecond precision: the next block is strictly later than this.
  await new Promise((resolve) => setTimeout(resolve, 5));
  afterGenesis = new Date();
  await new Promise((resolve) => setTimeout(resolve, 5));
  // One block per statement; the notes hold the `} {` the Python sample's text reader splits on.
  const statements = ["CREATE TABLE VehicleRegistration"];
  for (let n = 0; n < BLOCKS - 2; n++) {
    statements.push(`INSERT INTO VehicleRegistration {'VIN': 'N${n}', 'Notes': '} {'}`);
  }
  quill(["shell", ...storageArgs(dataDir), "--ledger", LEDGER, "-e", statements.join("; ")]);
  server = await startQuill(dataDir, process.env);
  s3Client = new S3Client({});
  qldbClient = new QLDBClient({ endpoint: server.endpoint });
  await s3Client.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

after(async () => {
  if (server) await server.stop();
  if (moto) await moto.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

// --- ExportJournal.ts: the request, then DescribeJournalS3Export until COMPLETED ---------------

async function createExportAndWaitForCompletion(prefix, encryptionConfig, outputFormat) {
  const exclusiveEndTime = new Date();
  const inclusiveStartTime = afterGenesis;
  const { ExportId } = await qldbClient.send(
    new ExportJournalToS3Command({
      Name: LEDGER,
      InclusiveStartTime: inclusiveStartTime,
      ExclusiveEndTime: exclusiveEndTime,
      S3ExportConfiguration: { Bucket: BUCKET, Prefix: prefix, EncryptionConfiguration: encryptionConfig },
      RoleArn: "arn:aws:iam::000000000000:role/QLDBTutorialJournalExportRole",
      OutputFormat: outputFormat,
    }),
  );
  const deadline = Date.now() + EXPORT_TIMEOUT_MS;
  for (;;) {
    const { ExportDescription } = await qldbClient.send(new DescribeJournalS3ExportCommand({ Name: LEDGER, ExportId }));
    if (ExportDescription.Status === "COMPLETED") return ExportDescription;
    assert.strictEqual(ExportDescription.Status, "IN_PROGRESS", JSON.stringify(ExportDescription));
    assert.ok(Date.now() < deadline, `export ${ExportId} did not complete`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// --- JournalBlock.ts, Verifier.ts: the block fields the validator uses, QLDB's hash join -------

function fromIon(value) {
  const blob = (name) => {
    const field = value.get(name);
    return field !== null && field.getType() === IonTypes.BLOB ? field.uInt8ArrayValue() : null;
  };
  const address = value.get("blockAddress");
  const block = {
    blockAddress: { strandId: address.get("strandId").stringValue(), sequenceNo: address.get("sequenceNo").numberValue() },
    blockHash: blob("blockHash"),
    entriesHash: blob("entriesHash"),
    previousBlockHash: blob("previousBlockHash"),
  };
  if (!block.blockHash || !block.entriesHash || !block.previousBlockHash) {
    throw new Error(
      "BlockAddress, blockHash, entriesHash, or previousHash field(s) not found. Please check the data in the journal value.",
    );
  }
  return block;
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
  return new Uint8Array(crypto.createHash("sha256").update(joined).digest());
}

// --- JournalS3ExportReader.ts -------------------------------------------------------------------

function compareKeyWithContentRange(fileKey, firstBlock, lastBlock) {
  const [startSequenceNo, lastSequenceNo] = fileKey.split(".")[1].split("-");
  if (firstBlock.blockAddress.sequenceNo.toString() !== startSequenceNo) {
    throw new Error(`Expected first block SequenceNo to be ${startSequenceNo}`);
  }
  if (lastBlock.blockAddress.sequenceNo.toString() !== lastSequenceNo) {
    throw new Error(`Expected last block SequenceNo to be ${lastSequenceNo}`);
  }
}

async function body(bucket, key, outputFormat) {
  const object = await s3Client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return outputFormat === "ION_BINARY" ? object.Body.transformToByteArray() : object.Body.transformToString();
}

async function readExport(description) {
  const { Prefix: prefix, Bucket: bucket } = description.S3ExportConfiguration;
  const outputFormat = description.OutputFormat || "ION_TEXT";
  const objects = (await s3Client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents;
  const startedManifest = `${prefix}${description.ExportId}.started.manifest`;
  if (!objects.find(({ Key }) => Key === startedManifest)) throw new Error("Initial manifest not found.");
  const completed = objects.find(({ Key }) => Key.endsWith("completed.manifest"));
  if (!completed) throw new Error("Completed manifest not found.");
  const manifest = dom.load(await body(bucket, completed.Key, outputFormat));
  const dataFileKeys = manifest.get("keys").elements().map((key) => key.stringValue());
  const journalBlocks = [];
  for (const dataFileKey of dataFileKeys) {
    const blocks = dom.loadAll(await body(bucket, dataFileKey, outputFormat)).map(fromIon);
    compareKeyWithContentRange(dataFileKey, blocks[0], blocks[blocks.length - 1]);
    journalBlocks.push(...blocks);
  }
  return { journalBlocks, keys: objects.map(({ Key }) => Key) };
}

// --- ValidateQldbHashchain.ts --------------------------------------------------------------------

function compareJournalBlocks(previousJournalBlock, journalBlock) {
  if (toBase64(previousJournalBlock.blockHash) !== toBase64(journalBlock.previousBlockHash)) {
    throw new Error("Previous block hash does not match!");
  }
  const blockHash = joinHashesPairwise(journalBlock.entriesHash, previousJournalBlock.blockHash);
  if (toBase64(blockHash) !== toBase64(journalBlock.blockHash)) {
    throw new Error("Block hash doesn't match expected block hash. Verification failed.");
  }
  return journalBlock;
}

function verify(journalBlocks) {
  if (journalBlocks.length === 0) return;
  journalBlocks.reduce(compareJournalBlocks);
}

async function exportReadAndValidate(prefix, encryptionConfig, outputFormat) {
  const description = await createExportAndWaitForCompletion(prefix, encryptionConfig, outputFormat);
  assert.deepStrictEqual(description.S3ExportConfiguration.EncryptionConfiguration, encryptionConfig);
  const started = dom.load(await body(BUCKET, `${prefix}${description.ExportId}.started.manifest`, outputFormat));
  assert.strictEqual(started.get("objectEncryptionType").stringValue(), encryptionConfig.ObjectEncryptionType);
  const { journalBlocks, keys } = await readExport(description);
  assert.deepStrictEqual(
    journalBlocks.map((block) => block.blockAddress.sequenceNo),
    [...Array(BLOCKS).keys()].slice(1),
  );
  verify(journalBlocks);
  // The validator must be able to fail: one flipped bit in one block's hash breaks the chain.
  const tampered = journalBlocks.map((block) => ({ ...block }));
  tampered[BLOCKS / 2].entriesHash = Uint8Array.from(tampered[BLOCKS / 2].entriesHash, (b, i) => (i === 0 ? b ^ 1 : b));
  assert.throws(() => verify(tampered), /Block hash doesn't match/);
  return keys;
}

async function encryptionOf(key) {
  const head = await s3Client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  return { sse: head.ServerSideEncryption, kmsKey: head.SSEKMSKeyId };
}

for (const outputFormat of ["ION_TEXT", "ION_BINARY"]) {
  test(`an SSE_S3 ${outputFormat} export in S3 reads and validates like the DMV sample's`, async () => {
    const keys = await exportReadAndValidate(`sse-s3-${outputFormat.toLowerCase()}/`, { ObjectEncryptionType: "SSE_S3" }, outputFormat);
    // Every object (manifests included) was written with `x-amz-server-side-encryption: AES256`.
    for (const key of keys) assert.deepStrictEqual(await encryptionOf(key), { sse: "AES256", kmsKey: undefined }, key);
  });
}

test("an SSE_KMS export names its key on every object, NO_ENCRYPTION asks for none", async () => {
  const kmsKeys = await exportReadAndValidate("sse-kms/", { ObjectEncryptionType: "SSE_KMS", KmsKeyArn: KMS_KEY_ARN });
  for (const key of kmsKeys) assert.deepStrictEqual(await encryptionOf(key), { sse: "aws:kms", kmsKey: KMS_KEY_ARN }, key);
  const plainKeys = await exportReadAndValidate("plain/", { ObjectEncryptionType: "NO_ENCRYPTION" });
  for (const key of plainKeys) assert.deepStrictEqual(await encryptionOf(key), { sse: undefined, kmsKey: undefined }, key);
});
