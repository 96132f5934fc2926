//! Parsed statements by text, per thread. Drivers send the same few statement texts over and
//! over (values travel as parameters, not literals), and parsing was about a tenth of an
//! ExecuteStatement's CPU on the server (docs/benchmarks.md). The parser is a pure function of
//! the text, so a parsed statement can be reused for any parameters.
//!
//! Per thread, so a lookup takes no lock (a server runs statements on a few connection
//! threads). Bounded: only statements up to [`CACHED_TEXT_MAX_BYTES`] are kept, at most
//! [`CACHED_STATEMENTS_MAX`] of them, and the cache is emptied when full: an application with
//! more distinct statements than that loses the cache's benefit, never correctness or memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::ast::Statement;
use crate::error::Result;
use crate::parser;

/// Statements a thread keeps parsed.
const CACHED_STATEMENTS_MAX: usize = 256;
/// Longer statements are parsed every time: they are rarely repeated, and this bounds a
/// thread's cache to about 1 MiB of text.
const CACHED_TEXT_MAX_BYTES: usize = 4096;

/// A parsed statement and how many parameters it takes.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub statement: Statement,
    pub parameter_count: usize,
}

thread_local! {
    static PARSED: RefCell<HashMap<Box<str>, Rc<Parsed>>> = RefCell::new(HashMap::new());
}

/// `text` parsed: from this thread's cache, or by the parser (and then kept). Errors are not
/// kept: a statement that does not parse is parsed again, to report its error again.
pub(crate) fn parse(text: &str) -> Result<Rc<Parsed>> {
    if text.len() > CACHED_TEXT_MAX_BYTES {
        return parse_uncached(text).map(Rc::new);
    }
    if let Some(parsed) = PARSED.with_borrow(|cache| cache.get(text).cloned()) {
        return Ok(parsed);
    }
    let parsed = Rc::new(parse_uncached(text)?);
    PARSED.with_borrow_mut(|cache| {
        if cache.len() >= CACHED_STATEMENTS_MAX {
            cache.clear();
        }
        cache.insert(text.into(), Rc::clone(&parsed));
    });
    Ok(parsed)
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
        let text = "UPDATE T AS t BY id SET t.a = ? WHERE id = ?";
        let first = parse(text).unwrap();
        let second = parse(text).unwrap();
        assert!(Rc::ptr_eq(&first, &second));
        assert_eq!(first.statement, parser::parse(text).unwrap());
        assert_eq!(first.parameter_count, 2);
    }

    #[test]
    fn errors_long_texts_and_overflow_are_not_kept() {
        assert!(parse("SELEC * FROM T").is_err());
        assert!(PARSED.with_borrow(|cache| !cache.contains_key("SELEC * FROM T")));

        let long = format!(
            "SELECT * FROM T WHERE a = '{}'",
            "x".repeat(CACHED_TEXT_MAX_BYTES)
        );
        let first = parse(&long).unwrap();
        assert!(!Rc::ptr_eq(&first, &parse(&long).unwrap()));

        for n in 0..CACHED_STATEMENTS_MAX + 10 {
            parse(&format!("SELECT * FROM T WHERE a = {n}")).unwrap();
            assert!(PARSED.with_borrow(|cache| cache.len()) <= CACHED_STATEMENTS_MAX);
        }
    }
}
