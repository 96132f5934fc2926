//! Building a ledger from blocks exported elsewhere (a journal export read back), keeping them
//! exactly as they were: same strand id, sequence numbers, transaction ids, times and hashes.
//!
//! [`Importer`] writes into a staging directory that is not a ledger until [`Importer::finish`]:
//! every block is re-verified before it is staged (its hashes recomputed, its address and its
//! link to the previous block checked), derived state (tables, documents, indexes) is rebuilt
//! from the staged journal exactly as crash recovery rebuilds it, and only then is the staging
//! directory renamed to the ledger's directory. A refused block or a crash leaves only the
//! staging directory, which the caller removes (or the server removes at start: its name begins
//! with a dot).
//!
//! Blocks in Quill's own layout (with `catalogChanges`, see [`crate::block`]) are stored in the
//! journal's compact frame; blocks QLDB wrote (opaque system entries) are kept verbatim with the
//! catalog changes inferred from them (see [`crate::verbatim`]). Either way each staged block is
//! checked to rebuild into exactly the block given.

use std::path::{Path, PathBuf};

use ion_rs::{Element, Struct};
use quill_verify::{BlockHeaderHasher, Hash};

use std::collections::HashMap;

use crate::block::{self, PayloadData, PayloadHeader, PayloadRevision};
use crate::catalog::CatalogChange;
use crate::clock;
use crate::error::{LedgerError, Result};
use crate::ids::IdGenerator;
use crate::journal::Journal;
use crate::ledger::{catch_up_state, write_ledger_file, Ledger};
use crate::options::LedgerOptions;
use crate::state::State;
use crate::storage::Storage;
use crate::tree_store::TreeStore;
use crate::types::BlockAddress;
use crate::verbatim;

/// Blocks staged in memory before they are appended to the journal together.
const STAGED_BLOCKS_MAX: usize = 1024;

/// A ledger being built from imported blocks in a staging directory.
pub struct Importer {
    storage: Storage,
    options: LedgerOptions,
    staging: PathBuf,
    name: String,
    strand_id: String,
    journal: Journal,
    tree: TreeStore,
    header: BlockHeaderHasher,
    previous: Option<Hash>,
    next_sequence_no: u64,
    staged_payloads: Vec<Vec<u8>>,
    staged_hashes: Vec<Hash>,
    inferred: InferredCatalog,
}

/// The catalog of blocks QLDB wrote, inferred as they are imported: QLDB records DDL only as
/// statement text, and a table's id only where a document of it is written.
#[derive(Default)]
struct InferredCatalog {
    /// Tables seen so far, by id.
    tables: HashMap<String, InferredTable>,
    /// `CREATE INDEX` fields of tables whose id is not known yet, by table name.
    pending_indexes: HashMap<String, Vec<String>>,
    ids: Option<IdGenerator>,
}

struct InferredTable {
    name: String,
    /// False once dropped (QLDB keeps a dropped table, INACTIVE, until it is undropped).
    active: bool,
}

/// A DDL statement the importer infers catalog changes from.
#[derive(Debug, PartialEq, Eq)]
enum Ddl {
    /// `CREATE INDEX ON table (field)`.
    CreateIndex { table: String, field: String },
    /// `DROP TABLE table`.
    DropTable { table: String },
    /// `UNDROP TABLE "tableId"`.
    UndropTable { table_id: String },
}

impl InferredCatalog {
    fn next_id(&mut self) -> String {
        self.ids
            .get_or_insert_with(|| IdGenerator::new(None))
            .next_id()
    }

    /// The active table named `name`.
    fn table_id(&self, name: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|(_, table)| table.active && table.name == name)
            .map(|(id, _)| id.as_str())
    }

    /// The change `ddl` makes now, if the tables it names are known; `DROP TABLE` of a table
    /// not seen yet is returned to be retried once the block's documents have been seen (a
    /// transaction may create, fill and drop a table).
    fn apply(&mut self, ddl: Ddl, changes: &mut Vec<CatalogChange>) -> Option<Ddl> {
        match ddl {
            Ddl::CreateIndex { table, field } => match self.table_id(&table).map(str::to_owned) {
                Some(table_id) => changes.push(CatalogChange::CreateIndex {
                    table_id,
                    index_id: self.next_id(),
                    field,
                }),
                None => self.pending_indexes.entry(table).or_default().push(field),
            },
            Ddl::DropTable { table } => match self.table_id(&table).map(str::to_owned) {
                Some(table_id) => {
                    if let Some(known) = self.tables.get_mut(&table_id) {
                        known.active = false;
                    }
                    changes.push(CatalogChange::DropTable { table_id });
                }
                None => return Some(Ddl::DropTable { table }),
            },
            Ddl::UndropTable { table_id } => {
                // QLDB undrops only an inactive table whose name no active table holds.
                let undroppable = self
                    .tables
                    .get(&table_id)
                    .is_some_and(|known| !known.active && self.table_id(&known.name).is_none());
                if let (true, Some(known)) = (undroppable, self.tables.get_mut(&table_id)) {
                    known.active = true;
                    changes.push(CatalogChange::UndropTable { table_id });
                }
            }
        }
        None
    }

    /// The catalog changes block `block` implies (at `sequence_no`, of ledger `ledger`).
    fn changes(&mut self, ledger: &str, sequence_no: u64, block: &Struct) -> Vec<CatalogChange> {
        let mut changes = Vec::new();
        if sequence_no == 0 {
            changes.push(CatalogChange::CreateLedger {
                name: ledger.to_owned(),
            });
        }
        let info = block.get("transactionInfo").and_then(Element::as_struct);
        let statements = info
            .and_then(|i| i.get("statements"))
            .and_then(Element::as_sequence)
            .map(|s| {
                s.elements()
                    .filter_map(|s| s.as_struct()?.get("statement")?.as_text())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut deferred = Vec::new();
        for ddl in statements.into_iter().filter_map(parse_ddl) {
            deferred.extend(self.apply(ddl, &mut changes));
        }
        let documents = info
            .and_then(|i| i.get("documents"))
            .and_then(Element::as_struct);
        for (_, document) in documents.into_iter().flat_map(|d| d.iter()) {
            let Some(document) = document.as_struct() else {
                continue;
            };
            let text = |f: &str| document.get(f).and_then(Element::as_text);
            let (Some(table_id), Some(name)) = (text("tableId"), text("tableName")) else {
                continue;
            };
            if self.tables.contains_key(table_id) {
                continue;
            }
            self.tables.insert(
                table_id.to_owned(),
                InferredTable {
                    name: name.to_owned(),
                    active: true,
                },
            );
            changes.push(CatalogChange::CreateTable {
                table_id: table_id.to_owned(),
                name: name.to_owned(),
                tags: None,
            });
            for field in self.pending_indexes.remove(name).unwrap_or_default() {
                changes.push(CatalogChange::CreateIndex {
                    table_id: table_id.to_owned(),
                    index_id: self.next_id(),
                    field,
                });
            }
        }
        // A table dropped before any of its documents was seen stays unknown: nothing to drop.
        for ddl in deferred {
            self.apply(ddl, &mut changes);
        }
        changes
    }
}

/// `statement` without the leading `keywords` (any case, each followed by a space, a quote,
/// a parenthesis or the end), or `None` if it does not start with them.
fn after_keywords<'a>(statement: &'a str, keywords: &[&str]) -> Option<&'a str> {
    let mut rest = statement.trim();
    for keyword in keywords {
        let head = rest.get(..keyword.len())?;
        let next = rest[keyword.len()..].chars().next();
        if !head.eq_ignore_ascii_case(keyword)
            || next.is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            return None;
        }
        rest = rest[keyword.len()..].trim_start();
    }
    Some(rest)
}

/// A plain or double-quoted name (`Vehicle`, `"Vehicle"`), unquoted; `None` for anything else.
fn simple_name(text: &str) -> Option<String> {
    let name = text.trim().trim_matches('"');
    (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then(|| name.to_owned())
}

/// The DDL statements QLDB's blocks imply catalog changes for (any case and spacing, names
/// optionally double-quoted, an optional trailing `;`): `CREATE INDEX ON table (field)`,
/// `DROP TABLE table`, `UNDROP TABLE "tableId"`.
fn parse_ddl(statement: &str) -> Option<Ddl> {
    let statement = statement.trim().trim_end_matches(';');
    if let Some(rest) = after_keywords(statement, &["CREATE", "INDEX", "ON"]) {
        let (table, rest) = rest.split_once('(')?;
        let (field, rest) = rest.split_once(')')?;
        if !rest.trim().is_empty() {
            return None;
        }
        return Some(Ddl::CreateIndex {
            table: simple_name(table)?,
            field: simple_name(field)?,
        });
    }
    if let Some(rest) = after_keywords(statement, &["DROP", "TABLE"]) {
        return Some(Ddl::DropTable {
            table: simple_name(rest)?,
        });
    }
    let rest = after_keywords(statement, &["UNDROP", "TABLE"])?;
    Some(Ddl::UndropTable {
        table_id: simple_name(rest)?,
    })
}

/// An imported revision's data slot, owning the encoded data until the payload is written.
enum Slot {
    Data(Vec<u8>),
    Redacted(Hash),
    Deleted,
}

/// Field access for one imported block; every failure names the block.
struct Fields<'a> {
    fields: &'a Struct,
    address: &'a BlockAddress,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Result<&'a Element> {
        self.fields
            .get(name)
            .ok_or_else(|| rejected(self.address, format!("the block has no {name}")))
    }

    fn hash(&self, name: &str) -> Result<Hash> {
        hash_of(self.get(name)?, name, self.address)
    }

    fn text(&self, name: &str) -> Result<&'a str> {
        self.get(name)?
            .as_text()
            .ok_or_else(|| rejected(self.address, format!("{name} is not text")))
    }
}

fn rejected(address: &BlockAddress, detail: impl Into<String>) -> LedgerError {
    LedgerError::ImportRejected {
        block_address: address.clone(),
        detail: detail.into(),
    }
}

fn hash_of(element: &Element, name: &str, address: &BlockAddress) -> Result<Hash> {
    element
        .as_blob()
        .and_then(Hash::from_slice)
        .ok_or_else(|| rejected(address, format!("{name} is not a 32-byte blob")))
}

/// The `blockAddress` a block claims, for naming it before anything else is checked.
pub fn claimed_address(block: &Element) -> Option<BlockAddress> {
    BlockAddress::from_element(block.as_struct()?.get("blockAddress")?).ok()
}

/// The checks every imported block passes, whoever wrote it: it is the block at `expected`
/// (strand and sequence number), all its hashes verify under QLDB's rules (quill-verify's
/// `verify_block`: revision hashes from data and metadata, `H(transactionInfo)` and the
/// revisions root in `entriesHashList`, `entriesHash`, `blockHash`; Quill's exact layout when
/// it has `catalogChanges`), and its `previousBlockHash` is `previous`. Returns its hash; a
/// failure is [`LedgerError::ImportRejected`] naming `expected`.
pub fn check_import_block(
    block: &Element,
    expected: &BlockAddress,
    previous: Option<Hash>,
) -> Result<Hash> {
    let address = claimed_address(block)
        .ok_or_else(|| rejected(expected, "the block has no valid blockAddress"))?;
    if address != *expected {
        return Err(rejected(
            expected,
            format!(
                "expected this block, found block {} instead",
                address.to_ion_text()
            ),
        ));
    }
    let hash = quill_verify::verify_block(block).map_err(|e| rejected(expected, e.to_string()))?;
    let claimed_previous = match block.as_struct().and_then(|b| b.get("previousBlockHash")) {
        Some(element) => Some(hash_of(element, "previousBlockHash", expected)?),
        None => None,
    };
    if claimed_previous != previous {
        return Err(rejected(
            expected,
            match (expected.sequence_no, previous) {
                (0, _) => "the genesis block has a previousBlockHash".to_owned(),
                (_, None) => {
                    "a block after the genesis block must have a previousBlockHash".to_owned()
                }
                (n, Some(_)) => format!("previousBlockHash is not the hash of block {}", n - 1),
            },
        ));
    }
    Ok(hash)
}

/// The checks of [`check_import_block`] for a block as a Quill journal stores it (a payload
/// read from another ledger with [`Ledger::journal_payloads`]), plus: its stored hashes are
/// the ones recomputed (readers and the digest tree use the stored ones), and its hash is
/// `expected` (the hash a verified transparency log holds for it, for a mirror). Returns
/// its hash.
pub fn check_payload(
    payload: &[u8],
    expected_address: &BlockAddress,
    previous: Option<Hash>,
    expected_hash: Hash,
) -> Result<Hash> {
    let decoded = block::decode_payload(payload, expected_address)
        .map_err(|e| rejected(expected_address, e.to_string()))?;
    let element = decoded
        .to_element()
        .map_err(|e| rejected(expected_address, e.to_string()))?;
    let hash = check_import_block(&element, expected_address, previous)?;
    if decoded.hash != hash || decoded.previous_hash != previous {
        return Err(rejected(
            expected_address,
            "the stored hashes are not the block's",
        ));
    }
    if hash != expected_hash {
        return Err(rejected(
            expected_address,
            format!(
                "its hash {} is not the expected {}",
                hash.to_base64(),
                expected_hash.to_base64()
            ),
        ));
    }
    Ok(hash)
}

impl Importer {
    /// Starts building ledger `name` of strand `strand_id` in `staging`, which must not exist
    /// yet (it is created, and should be on the same file system as the ledger's final
    /// directory so [`Importer::finish`] can rename it).
    pub fn create(
        staging: &Path,
        name: &str,
        strand_id: &str,
        options: LedgerOptions,
    ) -> Result<Importer> {
        crate::ledger::validate_ledger_name(name)?;
        if !crate::ids::is_valid_id(strand_id) {
            return Err(LedgerError::InvalidInput(format!(
                "strand id {strand_id:?} is not a 22-character base62 id"
            )));
        }
        let storage = options.storage.clone();
        if storage.exists(staging)? {
            return Err(LedgerError::LedgerExists(staging.display().to_string()));
        }
        storage.create_dir_all(staging)?;
        let journal = Journal::create(&storage, &staging.join("journal"), strand_id)?;
        let tree = TreeStore::open(&storage, &staging.join("tree"))?;
        Ok(Importer {
            storage,
            options,
            staging: staging.to_owned(),
            name: name.to_owned(),
            strand_id: strand_id.to_owned(),
            journal,
            tree,
            header: BlockHeaderHasher::new(strand_id),
            previous: None,
            next_sequence_no: 0,
            staged_payloads: Vec::new(),
            staged_hashes: Vec::new(),
            inferred: InferredCatalog::default(),
        })
    }

    /// Blocks accepted so far (the next one must have this sequence number).
    pub fn blocks(&self) -> u64 {
        self.next_sequence_no
    }

    /// The hash of the last block accepted.
    pub fn last_hash(&self) -> Option<Hash> {
        self.previous
    }

    /// Verifies `block` (GetBlock's shape) as the next block of the strand and stages it;
    /// returns its hash. A block that does not verify, is out of place or does not chain on
    /// the previous one is refused with [`LedgerError::ImportRejected`] naming it.
    pub fn push(&mut self, block: &Element) -> Result<Hash> {
        let address = BlockAddress {
            strand_id: self.strand_id.clone(),
            sequence_no: self.next_sequence_no,
        };
        let hash = check_import_block(block, &address, self.previous)?;
        let previous = self.previous;
        let fields = Fields {
            fields: block
                .as_struct()
                .ok_or_else(|| rejected(&address, "the block is not a struct"))?,
            address: &address,
        };
        let payload = if fields.fields.get("catalogChanges").is_some() {
            self.payload(&fields, hash, previous)?
        } else {
            // Written by QLDB: kept verbatim, with the catalog changes it implies.
            let changes = self
                .inferred
                .changes(&self.name, address.sequence_no, fields.fields);
            let changes = Element::from(
                Element::sequence_builder()
                    .push_all(changes.iter().map(CatalogChange::to_element))
                    .build_list(),
            );
            verbatim::encode(
                address.sequence_no,
                &block.encode_as(ion_rs::v1_0::Binary)?,
                &changes.encode_as(ion_rs::v1_0::Binary)?,
            )
        };
        // The journal keeps a compact frame, not the block itself: check that the frame
        // rebuilds exactly the block given, so GetBlock and exports show it unchanged.
        let rebuilt = block::decode_payload(&payload, &address)
            .and_then(|decoded| decoded.to_element())
            .map_err(|e| rejected(&address, e.to_string()))?;
        if rebuilt != *block {
            return Err(rejected(
                &address,
                "the block holds fields or values Quill's journal frame cannot keep exactly",
            ));
        }
        self.stage(payload, hash)?;
        Ok(hash)
    }

    /// Stages a block as another Quill journal stores it, unchanged, after the checks of
    /// [`check_payload`] (so it must hash to `expected_hash`); returns its hash.
    pub fn push_payload(&mut self, payload: &[u8], expected_hash: Hash) -> Result<Hash> {
        let address = BlockAddress {
            strand_id: self.strand_id.clone(),
            sequence_no: self.next_sequence_no,
        };
        let hash = check_payload(payload, &address, self.previous, expected_hash)?;
        self.stage(payload.to_vec(), hash)?;
        Ok(hash)
    }

    fn stage(&mut self, payload: Vec<u8>, hash: Hash) -> Result<()> {
        self.staged_payloads.push(payload);
        self.staged_hashes.push(hash);
        self.previous = Some(hash);
        self.next_sequence_no += 1;
        if self.staged_payloads.len() >= STAGED_BLOCKS_MAX {
            self.append_staged()?;
        }
        Ok(())
    }

    /// The journal payload of a verified Quill-layout block.
    fn payload(
        &mut self,
        fields: &Fields<'_>,
        hash: Hash,
        previous: Option<Hash>,
    ) -> Result<Vec<u8>> {
        let address = fields.address;
        let timestamp = fields
            .get("blockTimestamp")?
            .as_timestamp()
            .ok_or_else(|| rejected(address, "blockTimestamp is not a timestamp"))?;
        let time_millis = clock::millis_from_timestamp(&timestamp);
        let entries: Vec<Hash> = fields
            .get("entriesHashList")?
            .as_sequence()
            .ok_or_else(|| rejected(address, "entriesHashList is not a list"))?
            .elements()
            .map(|e| hash_of(e, "entriesHashList", address))
            .collect::<Result<_>>()?;
        let entries: [Hash; quill_verify::QUILL_ENTRIES] = entries
            .try_into()
            .map_err(|_| rejected(address, "entriesHashList does not have Quill's 4 entries"))?;
        let transaction_id = fields.text("transactionId")?;
        if !crate::ids::is_valid_id(transaction_id) {
            return Err(rejected(address, "transactionId is not a 22-character id"));
        }
        // The header entry binds address, transaction id and time (verify_block checked the
        // list against its other parts, and the layout against catalogChanges).
        let header = self
            .header
            .hash(address.sequence_no, transaction_id, &timestamp);
        if header != entries[0] {
            return Err(rejected(
                address,
                "entriesHashList[0] is not the hash of the block header",
            ));
        }
        let mut revisions = Vec::new();
        let mut data = Vec::new();
        for revision in fields
            .get("revisions")?
            .as_sequence()
            .ok_or_else(|| rejected(address, "revisions is not a list"))?
            .elements()
        {
            let revision = revision
                .as_struct()
                .ok_or_else(|| rejected(address, "a revision is not a struct"))?;
            let metadata = revision
                .get("metadata")
                .and_then(Element::as_struct)
                .ok_or_else(|| rejected(address, "a revision has no metadata"))?;
            let document_id = metadata
                .get("id")
                .and_then(Element::as_text)
                .filter(|id| crate::ids::is_valid_id(id))
                .ok_or_else(|| rejected(address, "a revision's metadata.id is not an id"))?;
            let version = metadata
                .get("version")
                .and_then(Element::as_i64)
                .filter(|v| *v >= 0)
                .ok_or_else(|| rejected(address, "a revision's metadata.version is invalid"))?;
            let revision_hash = hash_of(
                revision
                    .get("hash")
                    .ok_or_else(|| rejected(address, "a revision has no hash"))?,
                "revision hash",
                address,
            )?;
            // A revision redacted at the source carries its erased data's hash instead.
            let slot = match (revision.get("data"), revision.get("dataHash")) {
                (Some(element), _) => Slot::Data(element.encode_as(ion_rs::v1_0::Binary)?),
                (None, Some(element)) => Slot::Redacted(hash_of(element, "dataHash", address)?),
                (None, None) => Slot::Deleted,
            };
            revisions.push((revision_hash, version as u64, document_id));
            data.push(slot);
        }
        let revisions: Vec<PayloadRevision<'_>> = revisions
            .iter()
            .zip(&data)
            .map(|((hash, version, document_id), slot)| PayloadRevision {
                hash: *hash,
                version: *version,
                document_id,
                data: match slot {
                    Slot::Data(bytes) => PayloadData::Data(bytes),
                    Slot::Redacted(data_hash) => PayloadData::Redacted(*data_hash),
                    Slot::Deleted => PayloadData::Deleted,
                },
            })
            .collect();
        let transaction_info = fields
            .get("transactionInfo")?
            .encode_as(ion_rs::v1_0::Binary)?;
        let catalog_changes = fields
            .get("catalogChanges")?
            .encode_as(ion_rs::v1_0::Binary)?;
        Ok(block::encode_payload(
            &PayloadHeader {
                sequence_no: address.sequence_no,
                time_millis,
                previous_hash: previous,
                hash,
                entries_hash: fields.hash("entriesHash")?,
                entries,
                transaction_id,
            },
            &revisions,
            &transaction_info,
            &catalog_changes,
        ))
    }

    fn append_staged(&mut self) -> Result<()> {
        let payloads: Vec<&[u8]> = self.staged_payloads.iter().map(Vec::as_slice).collect();
        self.journal.append(&payloads)?;
        self.tree.push_leaves(&self.staged_hashes)?;
        self.staged_payloads.clear();
        self.staged_hashes.clear();
        Ok(())
    }

    /// Makes the staged journal durable, rebuilds derived state from it, and publishes the
    /// ledger by renaming the staging directory to `target` (which must not exist).
    /// `before_publish` runs on the finished staging directory just before the rename (to add
    /// sidecar files such as the server's `control.json`). Returns the opened ledger.
    pub fn finish(
        mut self,
        target: &Path,
        before_publish: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Ledger> {
        if self.next_sequence_no == 0 {
            return Err(LedgerError::InvalidInput(
                "an import needs at least the genesis block".into(),
            ));
        }
        self.append_staged()?;
        self.journal.sync()?;
        self.tree.flush()?;
        let Importer {
            storage,
            options,
            staging,
            name,
            strand_id,
            journal,
            tree,
            ..
        } = self;
        // Derived state (tables, documents, indexes) is replayed from the staged journal as
        // recovery replays it, so the published ledger opens at once.
        let state = State::open(&storage, &staging.join("state.redb"))?;
        let journal = crate::journal::JournalStore::Files(journal);
        catch_up_state(&journal, &state, &strand_id, journal.len(), &options.limits)?;
        drop((journal, tree, state));
        write_ledger_file(&storage, &staging, &name, &strand_id)?;
        before_publish(&staging)?;
        storage.sync_dir(&staging)?;
        if storage.exists(target)? {
            return Err(LedgerError::LedgerExists(name));
        }
        storage.rename(&staging, target)?;
        storage.sync_parent_dir(target)?;
        Ledger::open(target, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_statements_are_recognised() {
        let index = |table: &str, field: &str| {
            Some(Ddl::CreateIndex {
                table: table.into(),
                field: field.into(),
            })
        };
        assert_eq!(
            parse_ddl("CREATE INDEX ON Vehicle (VIN)"),
            index("Vehicle", "VIN")
        );
        assert_eq!(
            parse_ddl("  create index on \"Vehicle\"(\"VIN\");"),
            index("Vehicle", "VIN")
        );
        assert_eq!(parse_ddl("CREATE INDEX ON Vehicle (VIN) extra"), None);
        assert_eq!(parse_ddl("CREATE TABLE Vehicle"), None);
        assert_eq!(parse_ddl("CREATE INDEX ON Vehicle (a.b)"), None);
        assert_eq!(parse_ddl("CREATE INDEX"), None);
        assert_eq!(parse_ddl("CREATEINDEX ON Vehicle (VIN)"), None);
        let drop = Some(Ddl::DropTable {
            table: "Vehicle".into(),
        });
        assert_eq!(parse_ddl("DROP TABLE Vehicle"), drop);
        assert_eq!(parse_ddl("drop  table \"Vehicle\" ;"), drop);
        assert_eq!(parse_ddl("DROP TABLEVehicle"), None);
        assert_eq!(parse_ddl("DROP TABLE Vehicle extra"), None);
        assert_eq!(
            parse_ddl("DROP INDEX \"x\" ON Vehicle WITH (purge = true)"),
            None
        );
        assert_eq!(
            parse_ddl("UNDROP TABLE \"5PLf9SXwndd63lPaSIa0O6\""),
            Some(Ddl::UndropTable {
                table_id: "5PLf9SXwndd63lPaSIa0O6".into()
            })
        );
        assert_eq!(parse_ddl("UNDROP TABLE"), None);
    }

    fn block_with(statements: &[&str], documents: &[(&str, &str)]) -> Element {
        let statements: Vec<String> = statements
            .iter()
            .map(|s| format!("{{statement: {s:?}}}"))
            .collect();
        let documents: Vec<String> = documents
            .iter()
            .enumerate()
            .map(|(n, (id, name))| format!("d{n}: {{tableName: {name:?}, tableId: {id:?}}}"))
            .collect();
        Element::read_one(format!(
            "{{transactionInfo: {{statements: [{}], documents: {{{}}}}}}}",
            statements.join(", "),
            documents.join(", ")
        ))
        .unwrap()
    }

    #[test]
    fn dropped_and_undropped_tables_are_inferred_from_qldb_statements() {
        let mut catalog = InferredCatalog::default();
        let mut changes = |statements: &[&str], documents: &[(&str, &str)]| {
            let block = block_with(statements, documents);
            catalog.changes("l", 1, block.as_struct().unwrap())
        };
        let create = |id: &str| CatalogChange::CreateTable {
            table_id: id.into(),
            name: "Car".into(),
            tags: None,
        };
        let drop = |id: &str| CatalogChange::DropTable {
            table_id: id.into(),
        };
        let undrop = |id: &str| CatalogChange::UndropTable {
            table_id: id.into(),
        };
        // Created, filled and dropped in one transaction: the drop follows the creation.
        assert_eq!(
            changes(
                &["CREATE TABLE Car", "INSERT INTO Car ?", "DROP TABLE Car"],
                &[("t1", "Car")]
            ),
            vec![create("t1"), drop("t1")]
        );
        // A second table of the same name, then the first one cannot be undropped...
        assert_eq!(
            changes(&["INSERT INTO Car ?"], &[("t2", "Car")]),
            vec![create("t2")]
        );
        assert_eq!(changes(&["UNDROP TABLE \"t1\""], &[]), vec![]);
        // ... until the second is dropped; DROP names the active table.
        assert_eq!(changes(&["DROP TABLE Car"], &[]), vec![drop("t2")]);
        assert_eq!(changes(&["UNDROP TABLE \"t1\""], &[]), vec![undrop("t1")]);
        // Unknown tables and ids, and a table dropped before any document, change nothing.
        assert_eq!(
            changes(&["UNDROP TABLE \"t9\"", "DROP TABLE Bus"], &[]),
            vec![]
        );
        assert_eq!(changes(&["DROP TABLE Car"], &[]), vec![drop("t1")]);
        assert_eq!(changes(&["DROP TABLE Car"], &[]), vec![]);
    }
}
