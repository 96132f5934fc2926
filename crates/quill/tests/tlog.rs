//! The ledger's transparency log through the real `quill serve`: checkpoints signed with the
//! key `quill log-key` prints, tiles and entry bundles a monitor can check against the QLDB
//! digest, proofs, growth, and authentication unless `--public-log`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use quill_verify::tlog::{check_block_chain, rfc6962, BlockLeaf, Checkpoint, Note, VerifierKey};
use quill_verify::{parse_proof, Hash};

fn quill(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("quill runs");
    assert!(
        output.status.success(),
        "quill {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--checkpoint-interval",
                "50ms",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("quill serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("quill: listening on http://")
            .expect("address line")
            .to_owned();
        Server { child, address }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete response");
        let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
        (status, response[split + 4..].to_vec())
    }

    fn get_ok(&self, path: &str) -> Vec<u8> {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// Waits for a checkpoint of at least `size` leaves.
    fn checkpoint(&self, size: u64) -> (String, Checkpoint) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get("/ledgers/shop/log/checkpoint");
            if status == 200 {
                let note = String::from_utf8(body).unwrap();
                let checkpoint = Checkpoint::parse(&Note::parse(&note).unwrap().text).unwrap();
                if checkpoint.size >= size {
                    return (note, checkpoint);
                }
            }
            assert!(Instant::now() < deadline, "no checkpoint of size {size}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn the_served_log_checks_out_offline_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap();
    quill(&["ledger", "create", "shop", "--data-dir", data_str]);
    quill(&[
        "shell",
        "--data-dir",
        data_str,
        "--ledger",
        "shop",
        "-e",
        "CREATE TABLE Item; INSERT INTO Item {'sku': 'a'}; INSERT INTO Item {'sku': 'b'};",
    ]);
    let vkey_line = String::from_utf8(quill(&["log-key", "--data-dir", data_str]).stdout).unwrap();
    let vkey = VerifierKey::parse(vkey_line.trim()).unwrap();
    assert_eq!(vkey.name, "localhost/quill/shop");
    let digest_ion =
        String::from_utf8(quill(&["digest", "--data-dir", data_str, "--ledger", "shop"]).stdout)
            .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("log-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let server = Server::start(&data, &["--public-log"]);
    let (note, checkpoint) = server.checkpoint(4);
    assert_eq!(checkpoint.size, 4, "genesis, CREATE TABLE and two inserts");
    assert_eq!(
        Note::parse(&note)
            .unwrap()
            .verify(std::slice::from_ref(&vkey))
            .unwrap()
            .len(),
        1
    );

    // A monitor reading only tiles: leaves → chain → QLDB digest, and hashes → root.
    let bundle = server.get_ok("/ledgers/shop/log/tile/entries/000.p/4");
    let mut leaves = Vec::new();
    let mut rest = &bundle[..];
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        leaves.push(BlockLeaf::parse(&rest[2..2 + len]).unwrap());
        rest = &rest[2 + len..];
    }
    let digest = check_block_chain(&leaves).unwrap().unwrap();
    assert!(
        digest_ion.contains(&digest.to_base64()),
        "{digest_ion} vs {digest}"
    );
    let tile = server.get_ok("/ledgers/shop/log/tile/0/000.p/4");
    let hashes: Vec<Hash> = tile
        .chunks(32)
        .map(|c| Hash::from_slice(c).unwrap())
        .collect();
    let from_leaves: Vec<Hash> = leaves
        .iter()
        .map(|l| rfc6962::leaf_hash(&l.to_bytes()))
        .collect();
    assert_eq!(hashes, from_leaves);
    assert_eq!(rfc6962::root(&hashes), checkpoint.root);
    assert_eq!(
        server.get("/ledgers/shop/log/tile/0/000.p/5").0,
        404,
        "beyond the checkpoint"
    );
    assert_eq!(
        server.get("/ledgers/shop/log/tile/0/000").0,
        404,
        "not full yet"
    );
    assert_eq!(server.get("/ledgers/nope/log/checkpoint").0, 404);

    let inclusion = json(&server.get_ok("/ledgers/shop/log/proof/inclusion?index=2&size=4"));
    let proof = parse_proof(inclusion["Proof"]["IonText"].as_str().unwrap()).unwrap();
    rfc6962::verify_inclusion(2, 4, &from_leaves[2], &proof, &checkpoint.root).unwrap();

    // The ledger grows through the server: a new checkpoint, consistent with the first.
    let endpoint = format!("http://{}", server.address);
    quill(&[
        "shell",
        "--endpoint",
        &endpoint,
        "--ledger",
        "shop",
        "-e",
        "INSERT INTO Item {'sku': 'c'};",
    ]);
    let (_, grown) = server.checkpoint(5);
    assert_eq!(grown.size, 5);
    let consistency = json(&server.get_ok("/ledgers/shop/log/proof/consistency?old=4&size=5"));
    let proof = parse_proof(consistency["Proof"]["IonText"].as_str().unwrap()).unwrap();
    rfc6962::verify_consistency(4, 5, &checkpoint.root, &grown.root, &proof).unwrap();
    assert_eq!(
        server
            .get("/ledgers/shop/log/proof/consistency?old=4&size=6")
            .0,
        400
    );
    drop(server);

    // Without --public-log the log needs a signed request like everything else.
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "AKIDEXAMPLE secret\n").unwrap();
    let server = Server::start(&data, &["--credentials", credentials.to_str().unwrap()]);
    let (status, _) = server.get("/ledgers/shop/log/checkpoint");
    assert_eq!(status / 100, 4, "unsigned request to a private log");
    assert_ne!(status, 404);
}
