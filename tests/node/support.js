// What the Node.js tests share: the real `quill serve` binary ($QUILL_BIN) and a real
// S3-compatible server (moto_server from the Python venv scripts/setup.sh makes, as the Python
// export tests use), each on a free loopback port, stopped when the test file is done.
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const readline = require("node:readline");

const repo = path.join(__dirname, "../..");
const quillBin = process.env.QUILL_BIN || path.join(repo, "target/debug/quill");
const START_TIMEOUT_MS = 60000;

/** Runs a `quill` subcommand to completion and returns its stdout. */
function quill(args, env = process.env) {
  return execFileSync(quillBin, args, { encoding: "utf8", env, stdio: ["ignore", "pipe", "pipe"] });
}

/** Stops a child process: SIGTERM, and resolves once it has exited. */
function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

// With QUILL_TEST_PG_URL (a PostgreSQL server's URL, as scripts/test.sh sets it for the second
// run of this suite), every data directory's ledgers live in a database of their own there.
const pgUrl = process.env.QUILL_TEST_PG_URL;
const databases = new Map();

/** Where the ledgers of `dataDir` live, as `quill` arguments: `--data-dir DIR` on the embedded
 * backend, `--storage URL` on PostgreSQL (one database per directory, created on first use). */
function storageArgs(dataDir) {
  if (!pgUrl) return ["--data-dir", dataDir];
  if (!databases.has(dataDir)) {
    const name = `node_${process.pid}_${databases.size + 1}`;
    execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", pgUrl, "-c", `CREATE DATABASE ${name}`], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    const url = new URL(pgUrl);
    url.pathname = `/${name}`;
    databases.set(dataDir, url.toString());
  }
  return ["--storage", databases.get(dataDir)];
}

/** `quill serve` on `dataDir` with `env`; resolves to `{ endpoint, stop }` once it listens. */
async function startQuill(dataDir, env = process.env) {
  const storage = pgUrl ? storageArgs(dataDir) : [];
  const child = spawn(quillBin, ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", ...storage], {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("quill serve did not start in time")), START_TIMEOUT_MS);
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      const match = line.match(/listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`quill serve exited with ${code}`)));
  });
  return { endpoint, stop: () => stop(child) };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on("error", reject);
  });
}

function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** moto_server (moto[server]) on a free loopback port; resolves to `{ url, stop }`. */
async function startMoto() {
  const venvMoto = path.join(repo, ".venv/bin/moto_server");
  const program = process.env.MOTO_SERVER || (fs.existsSync(venvMoto) ? venvMoto : "moto_server");
  const port = await freePort();
  const child = spawn(program, ["-H", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  let failed = null;
  child.on("error", (error) => (failed = error));
  child.on("exit", (code) => (failed = failed || new Error(`${program} exited with ${code}`)));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await accepts(port))) {
    if (failed) throw new Error(`moto_server did not start (scripts/setup.sh installs it): ${failed.message}`);
    if (Date.now() > deadline) {
      await stop(child);
      throw new Error("moto_server did not accept connections in time");
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url: `http://127.0.0.1:${port}`, stop: () => stop(child) };
}

module.exports = { quill, quillBin, startQuill, startMoto, storageArgs };
