//! `quill shell`: a PartiQL shell, embedded (`quill-ledger` + `quill-partiql` in this process)
//! or against a server (the QLDB session protocol, see [`crate::client`]).
//!
//! Statements end with `;` and may span lines. Each runs in its own transaction unless the user
//! opened one with `begin` (then `commit` or `abort`). Results are pretty Ion on stdout; the
//! count and timing of each statement go to stderr, so piped output stays Ion. Input comes from
//! `-e`, from stdin when it is not a terminal, or from a rustyline editor with a history file.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use ion_rs::Element;
use quill_ledger::{Ledger, Transaction};

use crate::args::{ShellConfig, ShellTarget};
use crate::client::{RemoteTransaction, SessionClient};
use crate::render::pretty;

/// Longest statement buffer accepted (QLDB's 100,000-character limit, in UTF-8 bytes).
const STATEMENT_BUFFER_MAX_BYTES: usize = 400_000;
/// Largest script read from stdin.
const SCRIPT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Lines kept in the history file.
const HISTORY_LINES_MAX: usize = 1000;
/// What drivers run to list tables.
const LIST_TABLES: &str =
    "SELECT VALUE name FROM information_schema.user_tables WHERE status = 'ACTIVE'";

const HELP: &str = "\
Statements end with `;` and may span several lines. Each one commits on its own unless a
transaction is open.
  begin | commit | abort     open, commit or abort an explicit transaction
  tables | .tables          list the active tables
  help                      this text
  exit | quit               leave (an open transaction is aborted)";

/// Where statements run.
trait Backend {
    fn begin(&mut self) -> anyhow::Result<()>;
    fn execute(&mut self, statement: &str) -> anyhow::Result<Vec<Element>>;
    fn commit(&mut self) -> anyhow::Result<()>;
    fn abort(&mut self) -> anyhow::Result<()>;
    fn in_transaction(&self) -> bool;
}

struct Embedded {
    ledger: Ledger,
    open: Option<Transaction>,
}

impl Backend for Embedded {
    fn begin(&mut self) -> anyhow::Result<()> {
        if self.open.is_some() {
            bail!("a transaction is already open");
        }
        self.open = Some(self.ledger.begin()?);
        Ok(())
    }

    fn execute(&mut self, statement: &str) -> anyhow::Result<Vec<Element>> {
        if let Some(tx) = self.open.as_mut() {
            return Ok(quill_partiql::execute(tx, statement, &[])?);
        }
        let mut tx = self.ledger.begin()?;
        let values = quill_partiql::execute(&mut tx, statement, &[])?;
        tx.commit()?;
        Ok(values)
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        let tx = self.open.take().context("no open transaction")?;
        tx.commit()?;
        Ok(())
    }

    fn abort(&mut self) -> anyhow::Result<()> {
        self.open.take().context("no open transaction")?.abort();
        Ok(())
    }

    fn in_transaction(&self) -> bool {
        self.open.is_some()
    }
}

struct Remote {
    client: SessionClient,
    open: Option<RemoteTransaction>,
}

impl Backend for Remote {
    fn begin(&mut self) -> anyhow::Result<()> {
        if self.open.is_some() {
            bail!("a transaction is already open");
        }
        self.open = Some(self.client.start_transaction()?);
        Ok(())
    }

    fn execute(&mut self, statement: &str) -> anyhow::Result<Vec<Element>> {
        if let Some(tx) = self.open.as_mut() {
            return Ok(self.client.execute(tx, statement)?);
        }
        let mut tx = self.client.start_transaction()?;
        match self.client.execute(&mut tx, statement) {
            Ok(values) => {
                self.client.commit(tx)?;
                Ok(values)
            }
            Err(error) => {
                // The server keeps a transaction open after a statement error: close it.
                if let Err(abort_error) = self.client.abort() {
                    tracing::debug!(%abort_error, "abort after a failed statement failed");
                }
                Err(error.into())
            }
        }
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        let tx = self.open.take().context("no open transaction")?;
        self.client.commit(tx)?;
        Ok(())
    }

    fn abort(&mut self) -> anyhow::Result<()> {
        self.open.take().context("no open transaction")?;
        self.client.abort()?;
        Ok(())
    }

    fn in_transaction(&self) -> bool {
        self.open.is_some()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.client.end();
    }
}

/// Runs the shell.
pub fn run(config: ShellConfig) -> anyhow::Result<()> {
    let mut backend: Box<dyn Backend> = match &config.target {
        ShellTarget::Embedded(target) => Box::new(Embedded {
            ledger: target.open()?,
            open: None,
        }),
        ShellTarget::Endpoint {
            endpoint,
            ledger,
            region,
        } => {
            let client = SessionClient::connect(endpoint, ledger, region)
                .with_context(|| format!("cannot start a session on {ledger} at {endpoint:?}"))?;
            Box::new(Remote { client, open: None })
        }
    };
    if let Some(script) = &config.execute {
        return run_script(backend.as_mut(), script);
    }
    if !std::io::stdin().is_terminal() {
        let mut script = String::new();
        std::io::stdin()
            .take(SCRIPT_MAX_BYTES as u64)
            .read_to_string(&mut script)
            .context("cannot read stdin")?;
        return run_script(backend.as_mut(), &script);
    }
    interactive(backend.as_mut())
}

/// Runs every statement and command in `script`, stopping at the first error.
fn run_script(backend: &mut dyn Backend, script: &str) -> anyhow::Result<()> {
    let mut splitter = Splitter::default();
    let mut items = splitter.push(script)?;
    let rest = splitter.finish();
    if !rest.trim().is_empty() {
        items.push(rest);
    }
    for item in items {
        if run_item(backend, &item)? == Flow::Exit {
            break;
        }
    }
    if backend.in_transaction() {
        eprintln!("aborting the transaction left open at the end of the input");
        backend.abort()?;
    }
    Ok(())
}

fn interactive(backend: &mut dyn Backend) -> anyhow::Result<()> {
    use rustyline::config::Configurer as _;
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    editor
        .set_max_history_size(HISTORY_LINES_MAX)
        .context("history size")?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    eprintln!("quill shell: statements end with `;`, `help` for commands, `exit` to leave");
    let mut splitter = Splitter::default();
    loop {
        let prompt = match (splitter.is_empty(), backend.in_transaction()) {
            (false, _) => "    -> ",
            (true, true) => "quill*> ",
            (true, false) => "quill> ",
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                splitter = Splitter::default();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        let items = match splitter.push_line(&line) {
            Ok(items) => items,
            Err(error) => {
                eprintln!("error: {error:#}");
                splitter = Splitter::default();
                continue;
            }
        };
        if run_items_interactively(backend, items) == Flow::Exit {
            break;
        }
    }
    if let Some(path) = &history {
        if let Err(error) = editor.save_history(path) {
            tracing::warn!(%error, "cannot save the shell history");
        }
    }
    if backend.in_transaction() {
        eprintln!("aborting the open transaction");
        backend.abort()?;
    }
    Ok(())
}

fn run_items_interactively(backend: &mut dyn Backend, items: Vec<String>) -> Flow {
    for item in items {
        match run_item(backend, &item) {
            Ok(Flow::Exit) => return Flow::Exit,
            Ok(Flow::Continue) => {}
            Err(error) => eprintln!("error: {error:#}"),
        }
    }
    Flow::Continue
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".quill_history"))
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// A shell command, recognised only when it is the whole item.
#[derive(Debug, PartialEq, Eq)]
enum ShellCommand {
    Begin,
    Commit,
    Abort,
    Tables,
    Help,
    Exit,
}

fn parse_command(item: &str) -> Option<ShellCommand> {
    let word = item
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_ascii_lowercase();
    Some(match word.as_str() {
        "begin" | "start transaction" => ShellCommand::Begin,
        "commit" => ShellCommand::Commit,
        "abort" | "rollback" => ShellCommand::Abort,
        "tables" | ".tables" => ShellCommand::Tables,
        "help" | ".help" | "?" => ShellCommand::Help,
        "exit" | "quit" | ".exit" | ".quit" => ShellCommand::Exit,
        _ => return None,
    })
}

fn run_item(backend: &mut dyn Backend, item: &str) -> anyhow::Result<Flow> {
    let Some(command) = parse_command(item) else {
        run_statement(backend, item.trim().trim_end_matches(';'))?;
        return Ok(Flow::Continue);
    };
    match command {
        ShellCommand::Begin => backend.begin()?,
        ShellCommand::Commit => backend.commit()?,
        ShellCommand::Abort => backend.abort()?,
        ShellCommand::Tables => run_statement(backend, LIST_TABLES)?,
        ShellCommand::Help => println!("{HELP}"),
        ShellCommand::Exit => return Ok(Flow::Exit),
    }
    Ok(Flow::Continue)
}

fn run_statement(backend: &mut dyn Backend, statement: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let values = backend.execute(statement)?;
    let elapsed = started.elapsed();
    for value in &values {
        println!("{}", pretty(value));
    }
    let noun = if values.len() == 1 {
        "document"
    } else {
        "documents"
    };
    eprintln!(
        "-- {} {noun} in {:.3} ms",
        values.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Cuts input into items at `;` outside quotes, Ion literals and comments. A line that is a
/// shell command on its own (`begin`, `tables`, …) is an item without a `;`.
#[derive(Default)]
struct Splitter {
    buffer: String,
}

impl Splitter {
    fn is_empty(&self) -> bool {
        self.buffer.trim().is_empty()
    }

    /// Feeds one interactive line.
    fn push_line(&mut self, line: &str) -> anyhow::Result<Vec<String>> {
        if self.is_empty() && parse_command(line).is_some() {
            self.buffer.clear();
            return Ok(vec![line.trim().to_owned()]);
        }
        self.push(&format!("{line}\n"))
    }

    /// Feeds text; returns the complete items it closes.
    fn push(&mut self, text: &str) -> anyhow::Result<Vec<String>> {
        let mut items = Vec::new();
        for line in text.split_inclusive('\n') {
            if self.is_empty() && parse_command(line).is_some() && !line.contains(';') {
                items.push(line.trim().to_owned());
                self.buffer.clear();
                continue;
            }
            self.buffer.push_str(line);
            if self.buffer.len() > STATEMENT_BUFFER_MAX_BYTES {
                self.buffer.clear();
                bail!("statement longer than {STATEMENT_BUFFER_MAX_BYTES} bytes");
            }
            let mut ends = statement_ends(&self.buffer);
            if ends.is_empty() {
                continue;
            }
            let mut start = 0;
            for end in ends.drain(..) {
                let item = self.buffer[start..end].trim();
                if !item.is_empty() {
                    items.push(item.to_owned());
                }
                start = end + 1;
            }
            self.buffer.drain(..start);
        }
        Ok(items)
    }

    /// What is left without a closing `;`.
    fn finish(&mut self) -> String {
        std::mem::take(&mut self.buffer).trim().to_owned()
    }
}

/// Byte offsets of every `;` that ends a statement in `text`.
fn statement_ends(text: &str) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Quoted(u8),
        LineComment,
        BlockComment,
    }
    let bytes = text.as_bytes();
    let mut ends = Vec::new();
    let mut state = State::Code;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let next = bytes.get(i + 1).copied();
        state = match state {
            State::Code => match (byte, next) {
                (b';', _) => {
                    ends.push(i);
                    State::Code
                }
                (b'\'' | b'"' | b'`', _) => State::Quoted(byte),
                (b'-', Some(b'-')) => State::LineComment,
                (b'/', Some(b'*')) => {
                    i += 1;
                    State::BlockComment
                }
                _ => State::Code,
            },
            // PartiQL escapes a quote by doubling it: the second quote reopens the literal.
            State::Quoted(quote) if byte == quote => State::Code,
            State::Quoted(quote) => State::Quoted(quote),
            State::LineComment if byte == b'\n' => State::Code,
            State::LineComment => State::LineComment,
            State::BlockComment if byte == b'*' && next == Some(b'/') => {
                i += 1;
                State::Code
            }
            State::BlockComment => State::BlockComment,
        };
        i += 1;
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> (Vec<String>, String) {
        let mut splitter = Splitter::default();
        let items = splitter.push(text).unwrap();
        (items, splitter.finish())
    }

    #[test]
    fn statements_end_at_semicolons_outside_literals() {
        let (items, rest) = split(
            "SELECT * FROM T WHERE a = 'x;y'; INSERT INTO T `{a: \"b;\"}`;\n-- c;\nSELECT 1 /* ; */ FROM T; SELECT",
        );
        assert_eq!(
            items,
            [
                "SELECT * FROM T WHERE a = 'x;y'",
                "INSERT INTO T `{a: \"b;\"}`",
                "-- c;\nSELECT 1 /* ; */ FROM T"
            ]
        );
        assert_eq!(rest, "SELECT");
    }

    #[test]
    fn statements_span_lines_and_commands_stand_alone() {
        let mut splitter = Splitter::default();
        assert!(splitter.push_line("SELECT *").unwrap().is_empty());
        assert_eq!(splitter.push_line("FROM T;").unwrap(), ["SELECT *\nFROM T"]);
        assert_eq!(splitter.push_line("begin").unwrap(), ["begin"]);
        let (items, _) = split("begin\nINSERT INTO T {'a': 1};\ncommit\n");
        assert_eq!(items, ["begin", "INSERT INTO T {'a': 1}", "commit"]);
    }

    #[test]
    fn doubled_quotes_stay_inside_the_literal() {
        assert_eq!(statement_ends("'it''s;' ;"), vec![9]);
    }

    #[test]
    fn commands_are_recognised_case_insensitively() {
        assert_eq!(parse_command(" .tables "), Some(ShellCommand::Tables));
        assert_eq!(parse_command("COMMIT;"), Some(ShellCommand::Commit));
        assert_eq!(parse_command("SELECT 1"), None);
    }

    #[test]
    fn the_embedded_backend_autocommits_and_honours_abort() {
        let dir = tempfile::tempdir().unwrap();
        let ledger =
            Ledger::create(dir.path(), "shell", quill_ledger::LedgerOptions::default()).unwrap();
        let mut backend = Embedded { ledger, open: None };
        run_script(&mut backend, "CREATE TABLE T;\nINSERT INTO T {'a': 1};").unwrap();
        run_script(&mut backend, "begin\nINSERT INTO T {'a': 2};\nabort\n").unwrap();
        let values = backend.execute("SELECT VALUE a FROM T").unwrap();
        assert_eq!(values, vec![Element::int(1)]);
        assert!(run_script(&mut backend, "SELEC * FROM T;").is_err());
        assert!(!backend.in_transaction());
    }
}
