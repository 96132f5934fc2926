//! The table catalog: tables, their status and indexes. Derived from the journal's
//! `catalogChanges` (a Quill block extension) and small enough (≤ `TABLES_MAX` tables) to keep
//! whole in memory.

use ion_rs::{Element, Struct};

use crate::error::{LedgerError, Result};
use crate::limits::{self, Limits};
use crate::types::{
    BlockAddress, IndexInfo, IndexStatus, RedactionRequest, TableInfo, TableStatus,
};

/// One DDL change, or a redaction request, as recorded in a block's `catalogChanges` list.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogChange {
    /// The genesis block's record of the ledger itself.
    CreateLedger { name: String },
    /// CREATE TABLE.
    CreateTable {
        table_id: String,
        name: String,
        tags: Option<Element>,
    },
    /// DROP TABLE.
    DropTable { table_id: String },
    /// UNDROP TABLE.
    UndropTable { table_id: String },
    /// CREATE INDEX.
    CreateIndex {
        table_id: String,
        index_id: String,
        field: String,
    },
    /// DROP INDEX.
    DropIndex { table_id: String, index_id: String },
    /// `EXEC REDACT_REVISION`: the revision whose data is to be erased. Recorded here so the
    /// request is bound into the block hash (`entriesHashList[2]`) and replayed like DDL; it
    /// leaves the catalog as it is.
    RedactRevision(RedactionRequest),
}

impl CatalogChange {
    /// The table whose catalog entry the change is about (`None` for the ledger record and
    /// for a redaction, which changes no catalog entry).
    pub fn table_id(&self) -> Option<&str> {
        match self {
            CatalogChange::CreateLedger { .. } | CatalogChange::RedactRevision(_) => None,
            CatalogChange::CreateTable { table_id, .. }
            | CatalogChange::DropTable { table_id }
            | CatalogChange::UndropTable { table_id }
            | CatalogChange::CreateIndex { table_id, .. }
            | CatalogChange::DropIndex { table_id, .. } => Some(table_id),
        }
    }

    /// The Ion struct written into the block.
    pub fn to_element(&self) -> Element {
        let b = Element::struct_builder();
        let b = match self {
            CatalogChange::CreateLedger { name } => b
                .with_field("op", Element::string("CREATE_LEDGER"))
                .with_field("ledgerName", Element::string(name.as_str())),
            CatalogChange::CreateTable {
                table_id,
                name,
                tags,
            } => {
                let b = b
                    .with_field("op", Element::string("CREATE_TABLE"))
                    .with_field("tableId", Element::string(table_id.as_str()))
                    .with_field("tableName", Element::string(name.as_str()));
                match tags {
                    Some(tags) => b.with_field("tags", tags.clone()),
                    None => b,
                }
            }
            CatalogChange::DropTable { table_id } => b
                .with_field("op", Element::string("DROP_TABLE"))
                .with_field("tableId", Element::string(table_id.as_str())),
            CatalogChange::UndropTable { table_id } => b
                .with_field("op", Element::string("UNDROP_TABLE"))
                .with_field("tableId", Element::string(table_id.as_str())),
            CatalogChange::CreateIndex {
                table_id,
                index_id,
                field,
            } => b
                .with_field("op", Element::string("CREATE_INDEX"))
                .with_field("tableId", Element::string(table_id.as_str()))
                .with_field("indexId", Element::string(index_id.as_str()))
                .with_field("expr", Element::string(format!("[{field}]"))),
            CatalogChange::DropIndex { table_id, index_id } => b
                .with_field("op", Element::string("DROP_INDEX"))
                .with_field("tableId", Element::string(table_id.as_str()))
                .with_field("indexId", Element::string(index_id.as_str())),
            CatalogChange::RedactRevision(request) => request.fields().into_iter().fold(
                b.with_field("op", Element::string("REDACT_REVISION")),
                |b, (name, value)| b.with_field(name, value),
            ),
        };
        b.build().into()
    }

    /// Parses a change written by [`CatalogChange::to_element`].
    pub fn from_element(element: &Element) -> Result<CatalogChange> {
        let s = element
            .as_struct()
            .ok_or_else(|| bad("catalog change is not a struct"))?;
        let text = |name: &str| -> Result<String> {
            s.get(name)
                .and_then(Element::as_text)
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("catalog change lacks {name}")))
        };
        let op = text("op")?;
        Ok(match op.as_str() {
            "CREATE_LEDGER" => CatalogChange::CreateLedger {
                name: text("ledgerName")?,
            },
            "CREATE_TABLE" => CatalogChange::CreateTable {
                table_id: text("tableId")?,
                name: text("tableName")?,
                tags: s.get("tags").cloned(),
            },
            "DROP_TABLE" => CatalogChange::DropTable {
                table_id: text("tableId")?,
            },
            "UNDROP_TABLE" => CatalogChange::UndropTable {
                table_id: text("tableId")?,
            },
            "CREATE_INDEX" => {
                let expr = text("expr")?;
                let field = expr
                    .strip_prefix('[')
                    .and_then(|e| e.strip_suffix(']'))
                    .ok_or_else(|| bad("index expr is not [field]"))?;
                CatalogChange::CreateIndex {
                    table_id: text("tableId")?,
                    index_id: text("indexId")?,
                    field: field.to_owned(),
                }
            }
            "DROP_INDEX" => CatalogChange::DropIndex {
                table_id: text("tableId")?,
                index_id: text("indexId")?,
            },
            "REDACT_REVISION" => CatalogChange::RedactRevision(RedactionRequest {
                block_address: s
                    .get("blockAddress")
                    .ok_or_else(|| bad("redaction lacks blockAddress"))
                    .and_then(|a| {
                        BlockAddress::from_element(a).map_err(|_| bad("bad redaction blockAddress"))
                    })?,
                table_id: text("tableId")?,
                document_id: text("documentId")?,
                version: s
                    .get("version")
                    .and_then(Element::as_i64)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| bad("redaction lacks version"))?,
            }),
            other => return Err(bad(&format!("unknown catalog change {other}"))),
        })
    }
}

fn bad(detail: &str) -> LedgerError {
    LedgerError::Storage(format!("malformed catalog record: {detail}"))
}

/// Every table of a ledger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// In creation order. Invariant: at most one ACTIVE table per name.
    tables: Vec<TableInfo>,
}

impl Catalog {
    /// All tables.
    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    /// The active table named `name`.
    pub fn active(&self, name: &str) -> Option<&TableInfo> {
        self.tables
            .iter()
            .find(|t| t.name == name && t.status == TableStatus::Active)
    }

    /// The table with id `table_id`, active or not.
    pub fn by_id(&self, table_id: &str) -> Option<&TableInfo> {
        self.tables.iter().find(|t| t.table_id == table_id)
    }

    fn by_id_mut(&mut self, table_id: &str) -> Result<&mut TableInfo> {
        self.tables
            .iter_mut()
            .find(|t| t.table_id == table_id)
            .ok_or_else(|| LedgerError::UnknownTable(table_id.to_owned()))
    }

    /// Checks `change` against the catalog and the limits, then applies it.
    pub fn apply(&mut self, change: &CatalogChange, limits: &Limits) -> Result<()> {
        match change {
            CatalogChange::CreateLedger { .. } => Ok(()),
            CatalogChange::CreateTable {
                table_id,
                name,
                tags,
            } => {
                validate_table_name(name)?;
                if self.active(name).is_some() {
                    return Err(LedgerError::TableExists(name.clone()));
                }
                let active = self
                    .tables
                    .iter()
                    .filter(|t| t.status == TableStatus::Active)
                    .count();
                check_limit("active_tables_max", limits.active_tables_max, active + 1)?;
                check_limit("tables_max", limits.tables_max, self.tables.len() + 1)?;
                self.tables.push(TableInfo {
                    table_id: table_id.clone(),
                    name: name.clone(),
                    status: TableStatus::Active,
                    indexes: Vec::new(),
                    tags: tags.clone(),
                });
                Ok(())
            }
            CatalogChange::DropTable { table_id } => {
                let table = self.by_id_mut(table_id)?;
                if table.status != TableStatus::Active {
                    return Err(LedgerError::UnknownTable(table.name.clone()));
                }
                table.status = TableStatus::Inactive;
                Ok(())
            }
            CatalogChange::UndropTable { table_id } => {
                let name = self
                    .by_id(table_id)
                    .ok_or_else(|| LedgerError::UnknownTable(table_id.clone()))?
                    .name
                    .clone();
                if self.by_id(table_id).map(|t| t.status) == Some(TableStatus::Active) {
                    return Err(LedgerError::InvalidInput(format!(
                        "table {table_id} is not dropped"
                    )));
                }
                if self.active(&name).is_some() {
                    return Err(LedgerError::TableExists(name));
                }
                let active = self
                    .tables
                    .iter()
                    .filter(|t| t.status == TableStatus::Active)
                    .count();
                check_limit("active_tables_max", limits.active_tables_max, active + 1)?;
                self.by_id_mut(table_id)?.status = TableStatus::Active;
                Ok(())
            }
            CatalogChange::CreateIndex {
                table_id,
                index_id,
                field,
            } => {
                validate_index_field(field)?;
                let max = limits.indexes_per_table_max;
                let table = self.by_id_mut(table_id)?;
                if table.indexes.iter().any(|i| &i.field == field) {
                    return Err(LedgerError::IndexExists {
                        table: table.name.clone(),
                        field: field.clone(),
                    });
                }
                check_limit("indexes_per_table_max", max, table.indexes.len() + 1)?;
                table.indexes.push(IndexInfo {
                    index_id: index_id.clone(),
                    field: field.clone(),
                    status: IndexStatus::Online,
                });
                Ok(())
            }
            CatalogChange::DropIndex { table_id, index_id } => {
                let table = self.by_id_mut(table_id)?;
                let before = table.indexes.len();
                table.indexes.retain(|i| &i.index_id != index_id);
                if table.indexes.len() == before {
                    return Err(LedgerError::UnknownIndex(index_id.clone()));
                }
                Ok(())
            }
            CatalogChange::RedactRevision(_) => Ok(()),
        }
    }

    /// Ion form, for the derived-state store.
    pub fn to_element(&self) -> Element {
        let tables = self.tables.iter().map(table_to_element);
        Element::sequence_builder()
            .push_all(tables)
            .build_list()
            .into()
    }

    /// Parses [`Catalog::to_element`]'s output.
    pub fn from_element(element: &Element) -> Result<Catalog> {
        let list = element
            .as_sequence()
            .ok_or_else(|| bad("catalog is not a list"))?;
        let tables = list
            .elements()
            .map(table_from_element)
            .collect::<Result<Vec<_>>>()?;
        Ok(Catalog { tables })
    }
}

/// The table as `information_schema.user_tables` shows it:
/// `{tableId, name, indexes:[{indexId, expr, status}], status}`.
pub fn table_to_element(table: &TableInfo) -> Element {
    let indexes = table.indexes.iter().map(|i| -> Element {
        Element::struct_builder()
            .with_field("indexId", Element::string(i.index_id.as_str()))
            .with_field("expr", Element::string(i.expr()))
            .with_field("status", Element::string("ONLINE"))
            .build()
            .into()
    });
    let status = match table.status {
        TableStatus::Active => "ACTIVE",
        TableStatus::Inactive => "INACTIVE",
    };
    let mut b = Element::struct_builder()
        .with_field("tableId", Element::string(table.table_id.as_str()))
        .with_field("name", Element::string(table.name.as_str()))
        .with_field(
            "indexes",
            Element::from(Element::sequence_builder().push_all(indexes).build_list()),
        )
        .with_field("status", Element::string(status));
    if let Some(tags) = &table.tags {
        b = b.with_field("tags", tags.clone());
    }
    b.build().into()
}

fn table_from_element(element: &Element) -> Result<TableInfo> {
    let s: &Struct = element
        .as_struct()
        .ok_or_else(|| bad("table is not a struct"))?;
    let text = |e: Option<&Element>, what: &str| -> Result<String> {
        e.and_then(Element::as_text)
            .map(str::to_owned)
            .ok_or_else(|| bad(what))
    };
    let status = match text(s.get("status"), "table status")?.as_str() {
        "ACTIVE" => TableStatus::Active,
        _ => TableStatus::Inactive,
    };
    let mut indexes = Vec::new();
    if let Some(list) = s.get("indexes").and_then(Element::as_sequence) {
        for index in list.elements() {
            let i = index
                .as_struct()
                .ok_or_else(|| bad("index is not a struct"))?;
            let expr = text(i.get("expr"), "index expr")?;
            let field = expr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            indexes.push(IndexInfo {
                index_id: text(i.get("indexId"), "index id")?,
                field,
                status: IndexStatus::Online,
            });
        }
    }
    Ok(TableInfo {
        table_id: text(s.get("tableId"), "table id")?,
        name: text(s.get("name"), "table name")?,
        status,
        indexes,
        tags: s.get("tags").cloned(),
    })
}

fn check_limit(limit: &'static str, max: usize, actual: usize) -> Result<()> {
    if actual > max {
        return Err(LedgerError::LimitExceeded { limit, max, actual });
    }
    Ok(())
}

/// QLDB's table name rule: 1–128 characters of `[A-Za-z_][A-Za-z0-9_]*`, prefix `_ql_` reserved.
pub fn validate_table_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > limits::TABLE_NAME_MAX_CHARS {
        return Err(LedgerError::InvalidInput(format!(
            "invalid table name {name:?}: 1-{} characters of [A-Za-z_][A-Za-z0-9_]*",
            limits::TABLE_NAME_MAX_CHARS
        )));
    }
    if name.starts_with("_ql_") {
        return Err(LedgerError::InvalidInput(format!(
            "invalid table name {name:?}: the prefix _ql_ is reserved"
        )));
    }
    Ok(())
}

fn validate_index_field(field: &str) -> Result<()> {
    if field.is_empty() || field.chars().count() > limits::INDEX_FIELD_MAX_CHARS {
        return Err(LedgerError::InvalidInput(format!(
            "invalid index field {field:?}: 1-{} characters",
            limits::INDEX_FIELD_MAX_CHARS
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, id: &str) -> CatalogChange {
        CatalogChange::CreateTable {
            table_id: id.into(),
            name: name.into(),
            tags: None,
        }
    }

    #[test]
    fn create_drop_undrop_and_round_trip() {
        let limits = Limits::default();
        let mut c = Catalog::default();
        c.apply(&create("Vehicle", "T1"), &limits).unwrap();
        assert!(matches!(
            c.apply(&create("Vehicle", "T2"), &limits),
            Err(LedgerError::TableExists(_))
        ));
        c.apply(
            &CatalogChange::CreateIndex {
                table_id: "T1".into(),
                index_id: "I1".into(),
                field: "VIN".into(),
            },
            &limits,
        )
        .unwrap();
        c.apply(
            &CatalogChange::DropTable {
                table_id: "T1".into(),
            },
            &limits,
        )
        .unwrap();
        assert!(c.active("Vehicle").is_none());
        c.apply(&create("Vehicle", "T2"), &limits).unwrap();
        assert!(matches!(
            c.apply(
                &CatalogChange::UndropTable {
                    table_id: "T1".into()
                },
                &limits
            ),
            Err(LedgerError::TableExists(_))
        ));
        let back = Catalog::from_element(&c.to_element()).unwrap();
        assert_eq!(back, c);
        for change in [
            create("A", "X"),
            CatalogChange::DropIndex {
                table_id: "T1".into(),
                index_id: "I1".into(),
            },
        ] {
            assert_eq!(
                CatalogChange::from_element(&change.to_element()).unwrap(),
                change
            );
        }
    }

    #[test]
    fn limits_and_names() {
        let limits = Limits {
            active_tables_max: 1,
            ..Limits::default()
        };
        let mut c = Catalog::default();
        c.apply(&create("A", "1"), &limits).unwrap();
        assert!(matches!(
            c.apply(&create("B", "2"), &limits),
            Err(LedgerError::LimitExceeded { .. })
        ));
        for bad_name in ["", "1abc", "a-b", "_ql_x"] {
            assert!(validate_table_name(bad_name).is_err(), "{bad_name}");
        }
    }
}
