//! Parsed statements by text. Drivers send the same few statement texts over and over (values
//! travel as parameters, not literals), and parsing was about a tenth of an ExecuteStatement's
//! CPU on the server (docs/benchmarks.md). The parser is a pure function of the text, so a
//! parsed statement can be reused for any parameters.
//!
//! One cache for the process, not one per thread: statements also run on tokio's blocking
//! threads, which come and go by the hundred, and per-thread caches would multiply its memory
//! by their number. Its lock is held for one hash lookup. Bounded: only statements up to
//! [`CACHED_TEXT_MAX_BYTES`] are kept, at most [`CACHED_STATEMENTS_MAX`] of them, and it is
//! emptied when full: an application with more distinct statements than that loses the
//! cache's benefit, never correctness or memory.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::ast::Statement;
use crate::error::Result;
use crate::parser;

/// Statements the cache keeps parsed.
const CACHED_STATEMENTS_MAX: usize = 1024;
/// Longer statements are parsed every time: they are rarely repeated, and this bounds the
/// cache to 4 MiB of text.
const CACHED_TEXT_MAX_BYTES: usize = 4096;

/// A parsed statement and how many parameters it takes.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub statement: Statement,
    pub parameter_count: usize,
}

/// Parsed statements by text, bounded (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct ParseCache {
    parsed: Mutex<HashMap<Box<str>, Arc<Parsed>>>,
}

static PROCESS_CACHE: LazyLock<ParseCache> = LazyLock::new(ParseCache::default);

/// `text` parsed, through the process's cache.
pub(crate) fn parse(text: &str) -> Result<Arc<Parsed>> {
    PROCESS_CACHE.parse(text)
}

impl ParseCache {
    /// `text` parsed: from the cache, or by the parser (and then kept). Errors are not kept: a
    /// statement that does not parse is parsed again, to report its error again.
    pub(crate) fn parse(&self, text: &str) -> Result<Arc<Parsed>> {
        if text.len() > CACHED_TEXT_MAX_BYTES {
            return parse_uncached(text).map(Arc::new);
        }
        if let Some(parsed) = self.lock().get(text) {
            return Ok(Arc::clone(parsed));
        }
        // Parsed outside the lock: two threads may parse the same new text once each.
        let parsed = Arc::new(parse_uncached(text)?);
        let mut cache = self.lock();
        if cache.len() >= CACHED_STATEMENTS_MAX {
            cache.clear();
        }
        cache.insert(text.into(), Arc::clone(&parsed));
        Ok(parsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Parsed>>> {
        // A panic while holding the lock cannot leave the map half-changed in a way that
        // matters: every entry is a complete parse.
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn parse_uncached(text: &str) -> Result<Parsed> {
    let statement = parser::parse(text)?;
    let parameter_count = statement.parameter_count();
    Ok(Parsed {
        statement,
        parameter_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_text_is_parsed_once_and_equals_a_fresh_parse() {
        let cache = ParseCache::default();
        let text = "UPDATE T AS t BY id SET t.a = ? WHERE id = ?";
        let first = cache.parse(text).unwrap();
        let second = cache.parse(text).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.statement, parser::parse(text).unwrap());
        assert_eq!(first.parameter_count, 2);
    }

    #[test]
    fn errors_long_texts_and_overflow_are_not_kept() {
        let cache = ParseCache::default();
        assert!(cache.parse("SELEC * FROM T").is_err());
        assert!(!cache.lock().contains_key("SELEC * FROM T"));

        let long = format!(
            "SELECT * FROM T WHERE a = '{}'",
            "x".repeat(CACHED_TEXT_MAX_BYTES)
        );
        let first = cache.parse(&long).unwrap();
        assert!(!Arc::ptr_eq(&first, &cache.parse(&long).unwrap()));

        for n in 0..CACHED_STATEMENTS_MAX + 10 {
            cache
                .parse(&format!("SELECT * FROM T WHERE a = {n}"))
                .unwrap();
            assert!(cache.lock().len() <= CACHED_STATEMENTS_MAX);
        }
    }
}
