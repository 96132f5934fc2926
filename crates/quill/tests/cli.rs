//! Runs the real `quill` binary in a fresh temporary directory per test.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

#[path = "common/workspace.rs"]
mod workspace;

use workspace::{base64_of, parse_ion, Workspace};

#[test]
fn ledgers_are_created_listed_and_protected_from_deletion() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "books"]);
    work.ok_embedded(&["ledger", "create", "cars", "--no-deletion-protection"]);
    let listed = parse_ion(&work.ok_embedded(&["ledger", "list"]));
    let names: Vec<&str> = listed
        .iter()
        .map(|l| {
            l.as_struct()
                .unwrap()
                .get("name")
                .unwrap()
                .as_text()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["books", "cars"]);
    let data_dir = work.data_dir();
    let refused = work.quill(&[
        "ledger",
        "delete",
        "books",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("deletion protection"));
    work.ok_embedded(&["ledger", "delete", "cars"]);
    work.ok_embedded(&["ledger", "delete", "books", "--force"]);
    assert_eq!(work.ok_embedded(&["ledger", "list"]).trim(), "");
}

#[test]
fn the_shell_creates_inserts_and_selects() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "shop"]);
    work.shell("shop", "CREATE TABLE Item; CREATE INDEX ON Item (sku);");
    work.shell(
        "shop",
        "INSERT INTO Item {'sku': 'a-1', 'price': 3}; INSERT INTO Item << {'sku': 'b;2', 'price': 5} >>;",
    );
    let rows = parse_ion(&work.shell("shop", "SELECT VALUE price FROM Item WHERE sku = 'b;2'"));
    assert_eq!(rows, vec![ion_rs::Element::int(5)]);
    let tables = parse_ion(&work.shell("shop", ".tables"));
    assert_eq!(tables, vec![ion_rs::Element::string("Item")]);
    // An explicit transaction that is aborted leaves nothing behind; statements come from stdin.
    let data_dir = work.data_dir();
    let piped = work.quill_with_stdin(
        &[
            "shell",
            "--ledger",
            "shop",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        "begin\nINSERT INTO Item {'sku': 'c'};\nabort\nSELECT COUNT(*) AS n FROM Item;\n",
    );
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let count = parse_ion(&String::from_utf8(piped.stdout).unwrap());
    assert_eq!(count.len(), 2, "the insert's id, then the count");
    assert_eq!(count.last(), parse_ion("{n: 2}").first());
    let failed = work.quill(&[
        "shell",
        "--ledger",
        "shop",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "-e",
        "SELEC * FROM Item",
    ]);
    assert!(!failed.status.success());
}

#[test]
fn verify_passes_then_reports_the_first_bad_block_after_a_flipped_byte() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "audit"]);
    work.shell(
        "audit",
        "CREATE TABLE T; INSERT INTO T {'a': 1}; INSERT INTO T {'a': 2};",
    );
    let report = work.ok_embedded(&["verify", "--ledger", "audit"]);
    assert!(report.contains("verified 4 blocks"), "{report}");

    let journal = quill_ledger::ledger_dir(&work.data_dir(), "audit").join("journal");
    flip_byte_in_block(&journal, 1);
    let data_dir = work.data_dir();
    let output = work.quill(&[
        "verify",
        "--ledger",
        "audit",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("sequenceNo: 1"), "{stderr}");
}

/// Flips one byte inside block `sequence_no`'s frame, found through the segment's offset index
/// (8 little-endian bytes per block).
fn flip_byte_in_block(journal: &Path, sequence_no: usize) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let index = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "qji"))
        .expect("index file");
    let data = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "qjs"))
        .expect("data file");
    let index_bytes = std::fs::read(index).unwrap();
    let entry = &index_bytes[sequence_no * 8..sequence_no * 8 + 8];
    let offset = u64::from_le_bytes(entry.try_into().unwrap()) as usize;
    let mut bytes = std::fs::read(data).unwrap();
    bytes[offset + 40] ^= 0x5a;
    std::fs::write(data, bytes).unwrap();
}

#[test]
fn digest_and_revision_are_printed_and_verified() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "proofs"]);
    let inserted = parse_ion(&work.shell("proofs", "CREATE TABLE V; INSERT INTO V {'VIN': 'X1'};"));
    let document_id = inserted[1]
        .as_struct()
        .unwrap()
        .get("documentId")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    work.shell("proofs", "INSERT INTO V {'VIN': 'X2'};");

    let digest = parse_ion(&work.ok_embedded(&["digest", "--ledger", "proofs"]));
    let digest = digest[0].as_struct().unwrap();
    assert_eq!(digest.get("digest").unwrap().as_blob().unwrap().len(), 32);
    let tip = digest.get("digestTipAddress").unwrap().as_struct().unwrap();
    assert_eq!(tip.get("sequenceNo").unwrap().as_i64(), Some(3));
    let strand = tip.get("strandId").unwrap().as_text().unwrap();

    let block = format!("{{strandId:\"{strand}\",sequenceNo:2}}");
    let output = work.ok_embedded(&[
        "revision",
        "--ledger",
        "proofs",
        "--block",
        &block,
        "--document-id",
        &document_id,
    ]);
    assert!(output.trim_end().ends_with("verified"), "{output}");
    assert!(output.contains("X1"), "{output}");

    let data_dir = work.data_dir();
    let wrong_block = format!("{{strandId:\"{strand}\",sequenceNo:3}}");
    let missing = work.quill(&[
        "revision",
        "--ledger",
        "proofs",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--block",
        &wrong_block,
        "--document-id",
        &document_id,
    ]);
    assert!(!missing.status.success());
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let work = Workspace::new();
    let output = work.quill(&["serve", "--auth", "credentials"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--credentials"));
    let output = work.quill(&["verify", "--ledger", "--bad--", "--data-dir", "x"]);
    assert!(!output.status.success());
}

/// A running `quill serve`, killed when dropped.
struct Server {
    child: Child,
    /// From the `quill: listening on …` line.
    url: String,
}

impl Server {
    /// Starts `quill serve ARGS` and waits for its listening line.
    fn start(work: &Workspace, args: &[&str]) -> Server {
        let data_dir = work.data_dir();
        let mut all = vec!["serve", "--data-dir", data_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut child = work
            .command(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("quill serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        let url = line
            .trim()
            .strip_prefix("quill: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_accepts_unsigned_requests_by_default_only_on_loopback() {
    let work = Workspace::new();
    let data_dir = work.data_dir();
    let data_dir = data_dir.to_str().unwrap();
    // Refused before binding, so any non-loopback address shows it.
    for exposed in ["0.0.0.0:0", "[::]:0"] {
        let output = work.quill(&["serve", "--data-dir", data_dir, "--listen", exposed]);
        assert_eq!(output.status.code(), Some(1), "{exposed}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--auth credentials --credentials FILE")
                && stderr.contains("--auth none"),
            "{stderr}"
        );
    }
    let local = Server::start(&work, &["--listen", "127.0.0.1:0"]);
    assert!(local.url.starts_with("http://127.0.0.1:"), "{}", local.url);
    drop(local);
    work.ok_embedded(&["ledger", "create", "shop"]);
    let exposed = Server::start(&work, &["--listen", "0.0.0.0:0", "--auth", "none"]);
    let port = exposed.url.rsplit(':').next().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let output = work.quill(&[
        "shell",
        "--endpoint",
        &endpoint,
        "--ledger",
        "shop",
        "-e",
        "CREATE TABLE T",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../quill-server/tests/fixtures")
        .join(name)
}

#[test]
fn the_shell_speaks_https_and_signs_with_sigv4() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "shop"]);
    let credentials = work.path().join("credentials");
    std::fs::write(&credentials, "AKIDSHELL shell-secret\n").unwrap();
    let (cert, key) = (fixture("localhost.crt"), fixture("localhost.key"));
    let server = Server::start(
        &work,
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--auth",
            "credentials",
            "--credentials",
            credentials.to_str().unwrap(),
        ],
    );
    let port = server
        .url
        .strip_prefix("https://127.0.0.1:")
        .expect("https on loopback");
    let endpoint = format!("https://localhost:{port}");
    let shell = |script: &str, secret: Option<&str>, ca_cert: bool| {
        let mut args = vec![
            "shell",
            "--endpoint",
            &endpoint,
            "--ledger",
            "shop",
            "-e",
            script,
        ];
        if ca_cert {
            args.extend(["--ca-cert", cert.to_str().unwrap()]);
        }
        let mut command = work.command(&args);
        if let Some(secret) = secret {
            command
                .env("AWS_ACCESS_KEY_ID", "AKIDSHELL")
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        command.output().expect("quill shell runs")
    };
    let output = shell(
        "CREATE TABLE Item; INSERT INTO Item {'sku': 'a-1', 'price': 3}; SELECT VALUE price FROM Item",
        Some("shell-secret"),
        true,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        parse_ion(&stdout).last(),
        Some(&ion_rs::Element::int(3)),
        "{stdout}"
    );

    let refusals = [
        (None, true, "MissingAuthenticationTokenException"),
        (Some("wrong-secret"), true, "InvalidSignatureException"),
        // The self-signed certificate is not trusted without --ca-cert.
        (Some("shell-secret"), false, "certificate"),
    ];
    for (secret, ca_cert, expected) in refusals {
        let output = shell("SELECT * FROM Item", secret, ca_cert);
        assert_eq!(output.status.code(), Some(1), "{expected}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

/// Reads a directory export back through its completed manifest: every block, in order.
fn exported_ion_blocks(out: &Path) -> Vec<ion_rs::Element> {
    let manifest = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".completed.manifest"))
        .expect("a completed manifest");
    let manifest = ion_rs::Element::read_one(std::fs::read(manifest).unwrap()).unwrap();
    let keys = manifest.as_struct().unwrap().get("keys").unwrap();
    let mut blocks = Vec::new();
    for key in keys.as_sequence().unwrap().elements() {
        let bytes = std::fs::read(out.join(key.as_string().unwrap())).unwrap();
        blocks.extend(ion_rs::Element::read_all(bytes).unwrap());
    }
    blocks
}

#[test]
fn export_writes_a_verifiable_journal_to_a_directory() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "books"]);
    work.shell(
        "books",
        "CREATE TABLE T; INSERT INTO T {'a': 1, 'note': '} {'}; INSERT INTO T {'a': 2};",
    );
    for format in ["ION_TEXT", "ion-binary"] {
        let out = work.path().join(format);
        let report = work.ok_embedded(&[
            "export",
            "--ledger",
            "books",
            "--to",
            out.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(report.contains("exported 4 blocks"), "{report}");
        let output = work.quill(&["verify-export", out.to_str().unwrap()]);
        let verified = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(
            verified.contains("verified 4 blocks (sequence numbers 0-3) in 1 objects"),
            "{verified}"
        );
        let blocks = exported_ion_blocks(&out);
        assert_eq!(blocks.len(), 4);
        let mut previous = None;
        for block in &blocks {
            let hash = quill_verify::verify_quill_block(block).unwrap();
            let claimed = block.as_struct().unwrap().get("previousBlockHash");
            assert_eq!(
                claimed.and_then(|h| h.as_blob()).map(<[u8]>::to_vec),
                previous.map(|h: quill_verify::Hash| h.0.to_vec())
            );
            previous = Some(hash);
        }
    }

    // A block whose hash no longer verifies: exit status 3, as `quill verify` does.
    let out = work.path().join("ION_TEXT");
    let object = walk_files(&out)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "ion"))
        .unwrap();
    let text = std::fs::read_to_string(&object).unwrap();
    let tampered = text.replacen("{a: 2}", "{a: 3}", 1);
    assert_ne!(tampered, text);
    std::fs::write(&object, tampered).unwrap();
    let output = work.quill(&["verify-export", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");

    let data_dir = work.data_dir();
    let data_dir = data_dir.to_str().unwrap();
    for (bad, message) in [
        (vec!["--format", "CSV"], "unknown output format"),
        (vec!["--end", "2999-01-01T00:00:00Z"], "ExclusiveEndTime"),
        (
            vec![
                "--start",
                "2020-01-02T00:00:00Z",
                "--end",
                "2020-01-01T00:00:00Z",
            ],
            "InclusiveStartTime must be before",
        ),
    ] {
        let mut args = vec![
            "export",
            "--ledger",
            "books",
            "--data-dir",
            data_dir,
            "--to",
            "x",
        ];
        args.extend(bad);
        let output = work.quill(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `quill import` rebuilds an exported ledger with the same digest; `quill consistency` proves
/// the pre-export digest is a prefix of the digest after new commits, embedded and through a
/// server; a tampered export is refused with status 3 and leaves no ledger.
#[test]
fn import_then_consistency_from_the_old_digest() {
    let work = Workspace::new();
    work.ok_embedded(&["ledger", "create", "books"]);
    work.shell(
        "books",
        "CREATE TABLE T; CREATE INDEX ON T (a); INSERT INTO T {'a': 1}; INSERT INTO T {'a': 2}; \
         DELETE FROM T WHERE a = 1;",
    );
    let digest = parse_ion(&work.ok_embedded(&["digest", "--ledger", "books"]));
    let digest = digest[0].as_struct().unwrap();
    let old_digest = base64_of(digest.get("digest").unwrap().as_blob().unwrap());
    let old_tip = digest.get("digestTipAddress").unwrap().to_string();
    let out = work.path().join("export");
    work.ok_embedded(&["export", "--ledger", "books", "--to", out.to_str().unwrap()]);

    let report = work.ok_embedded(&[
        "import",
        "--from",
        out.to_str().unwrap(),
        "--ledger",
        "moved",
    ]);
    assert!(report.contains("imported 6 blocks"), "{report}");
    assert!(
        report.contains(&format!("digest: {old_digest}")),
        "{report}"
    );
    let rows = work.shell("moved", "SELECT a FROM T");
    assert!(rows.contains("a: 2") && !rows.contains("a: 1"), "{rows}");
    work.shell("moved", "INSERT INTO T {'a': 3}");
    assert!(work
        .ok_embedded(&["verify", "--ledger", "moved"])
        .contains("verified 7 blocks"));

    let args = |digest: &str| {
        vec![
            "consistency".to_owned(),
            "--ledger".into(),
            "moved".into(),
            "--from-digest".into(),
            digest.to_owned(),
            "--from-tip".into(),
            old_tip.clone(),
        ]
    };
    let embedded = work.ok_embedded(
        &args(&old_digest)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(embedded.trim_end().ends_with("verified"), "{embedded}");
    let mut forged = old_digest.clone().into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let data_dir = work.data_dir();
    let mut forged_args = args(&forged);
    forged_args.extend(["--data-dir".into(), data_dir.to_str().unwrap().into()]);
    let output = work.quill(&forged_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(3), "{output:?}");

    let server = Server::start(&work, &["--listen", "127.0.0.1:0"]);
    // A bare sequence number is a tip too.
    let output = work.quill(&[
        "consistency",
        "--endpoint",
        &server.url,
        "--ledger",
        "moved",
        "--from-digest",
        &old_digest,
        "--from-tip",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.trim_end().ends_with("verified"), "{stdout}");
    drop(server);

    // One changed byte in the export: refused, status 3, no ledger left.
    let object = walk_files(&out)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "ion"))
        .unwrap();
    let text = std::fs::read_to_string(&object).unwrap();
    let tampered = text.replacen("{a: 2}", "{a: 4}", 1);
    assert_ne!(tampered, text);
    std::fs::write(&object, tampered).unwrap();
    let output = work.quill(&[
        "import",
        "--from",
        out.to_str().unwrap(),
        "--ledger",
        "again",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("block {strandId:") && stderr.contains("sequenceNo:4}"),
        "{stderr}"
    );
    let ledgers: Vec<_> = std::fs::read_dir(data_dir.join("ledgers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!ledgers.iter().any(|l| l.contains("again")), "{ledgers:?}");
}
