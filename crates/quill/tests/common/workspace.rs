//! Runs the real `quill` binary in a fresh temporary directory per test (the one-shot commands:
//! `ledger`, `shell -e`, `verify`, `export`, `migrate`, …; long-lived servers are in
//! `common::Listening`).

// Each test binary that includes this file uses only some of it.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary directory to run `quill` in: its working directory and `HOME`, with an embedded
/// data directory `data/` inside for the commands that are given `--data-dir`.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn data_dir_text(&self) -> String {
        self.data_dir().to_str().expect("utf-8 path").to_owned()
    }

    /// The `quill` command in the workspace, without the caller's AWS credentials or log filter.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quill"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN");
        command
    }

    pub fn quill(&self, args: &[&str]) -> Output {
        self.quill_with_stdin(args, "")
    }

    pub fn quill_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("quill starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("quill runs")
    }

    /// Runs `quill ARGS` and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.quill(args);
        assert!(
            output.status.success(),
            "quill {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// Runs `quill ARGS --data-dir <the workspace's data dir>` and expects success; returns
    /// stdout.
    pub fn ok_embedded(&self, args: &[&str]) -> String {
        let data_dir = self.data_dir_text();
        self.ok(&[args, &["--data-dir", &data_dir]].concat())
    }

    /// `quill shell --ledger LEDGER -e SCRIPT` on the embedded data dir; returns stdout.
    pub fn shell(&self, ledger: &str, script: &str) -> String {
        self.ok_embedded(&["shell", "--ledger", ledger, "-e", script])
    }

    /// Runs `quill ARGS` and expects it to fail with exit status 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.quill(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "quill {args:?}: stdout {}\nstderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stderr).expect("utf-8 output")
    }
}

/// Every Ion value in `text`.
pub fn parse_ion(text: &str) -> Vec<ion_rs::Element> {
    ion_rs::Element::read_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("not Ion: {e}\n{text}"))
        .into()
}

pub fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
