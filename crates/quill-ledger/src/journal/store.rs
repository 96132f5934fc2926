//! The storage boundary of the journal: where a ledger's blocks live. The committer, the
//! ledger's readers and proofs use only this type.
//!
//! - [`JournalStore::Files`]: segment files on a disk this process owns (the embedded
//!   default; one process writes, enforced by a file lock).
//! - [`JournalStore::Postgres`]: rows in PostgreSQL, which any number of servers share; each
//!   batch first locks the tip and takes in what other servers appended (see
//!   [`postgres`](super::postgres)).
//!
//! An enum, not a trait object: the embedded path stays a direct call.

use quill_verify::Hash;

use super::postgres::PgJournal;
use super::Journal;
use crate::block;
use crate::types::BlockAddress;
use crate::Result;

pub(crate) enum JournalStore {
    Files(Journal),
    /// Boxed: it is the larger, and the embedded journal is the hot default.
    Postgres(Box<PgJournal>),
}

impl JournalStore {
    /// The PostgreSQL journal, when other servers may append to this ledger too.
    pub fn shared(&self) -> Option<&PgJournal> {
        match self {
            JournalStore::Files(_) => None,
            JournalStore::Postgres(pg) => Some(pg.as_ref()),
        }
    }

    /// Blocks this process knows of (the next sequence number it would write).
    pub fn len(&self) -> u64 {
        match self {
            JournalStore::Files(journal) => journal.len(),
            JournalStore::Postgres(pg) => pg.len(),
        }
    }

    /// Appends blocks `first..` (payload and block hash each); not durable before `sync`.
    pub fn append(&self, first: u64, blocks: &[(&[u8], Hash)]) -> Result<u64> {
        match self {
            JournalStore::Files(journal) => {
                debug_assert_eq!(first, journal.len());
                let payloads: Vec<&[u8]> = blocks.iter().map(|(p, _)| *p).collect();
                journal.append(&payloads)
            }
            JournalStore::Postgres(pg) => pg.append(first, blocks),
        }
    }

    /// Makes every appended block durable; `end` is the length after them.
    pub fn sync(&self, end: u64) -> Result<()> {
        match self {
            JournalStore::Files(journal) => journal.sync(),
            JournalStore::Postgres(pg) => pg.sync(end),
        }
    }

    /// Before a durable checkpoint of derived state: the journal must be durable at least as
    /// far as the state. PostgreSQL's journal is: every block this server applied was
    /// committed there first (and its open batch must not be committed from another thread).
    pub fn sync_for_checkpoint(&self) -> Result<()> {
        match self {
            JournalStore::Files(journal) => journal.sync(),
            JournalStore::Postgres(_) => Ok(()),
        }
    }

    pub fn read(&self, sequence_no: u64) -> Result<Vec<u8>> {
        match self {
            JournalStore::Files(journal) => journal.read(sequence_no),
            JournalStore::Postgres(pg) => pg.read(sequence_no),
        }
    }

    pub fn scan(
        &self,
        from_seq: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        match self {
            JournalStore::Files(journal) => journal.scan(from_seq, visit),
            JournalStore::Postgres(pg) => pg.scan(from_seq, visit),
        }
    }

    pub fn rewrite(&self, sequence_no: u64, payload: &[u8]) -> Result<()> {
        match self {
            JournalStore::Files(journal) => journal.rewrite(sequence_no, payload),
            JournalStore::Postgres(pg) => pg.rewrite(sequence_no, payload),
        }
    }

    pub fn verify_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        match self {
            JournalStore::Files(journal) => journal.verify_all(progress),
            JournalStore::Postgres(pg) => pg.verify_all(progress),
        }
    }

    /// Block hashes `from..to` (the digest tree's leaves). PostgreSQL keeps them in a column;
    /// files decode each block.
    pub fn hashes(&self, strand_id: &str, from: u64, to: u64) -> Result<Vec<Hash>> {
        match self {
            JournalStore::Files(journal) => (from..to)
                .map(|seq| {
                    let address = BlockAddress {
                        strand_id: strand_id.to_owned(),
                        sequence_no: seq,
                    };
                    Ok(block::decode_payload(&journal.read(seq)?, &address)?.hash)
                })
                .collect(),
            JournalStore::Postgres(pg) => pg.hashes(from, to),
        }
    }
}
