//! Permissions: QLDB's STANDARD permissions mode, driven by a policy file of IAM-like
//! statements per access key (`quill serve --policy FILE`).
//!
//! ```json
//! {
//!   "AccessKeys": {
//!     "reader": {
//!       "Statement": [
//!         {"Effect": "Allow", "Action": "qldb:SendCommand",
//!          "Resource": "arn:aws:qldb:*:*:ledger/shop"},
//!         {"Effect": "Allow", "Action": ["qldb:PartiQLSelect"],
//!          "Resource": ["arn:aws:qldb:*:*:ledger/shop/table-name/Item",
//!                       "arn:aws:qldb:*:*:ledger/shop/information_schema/user_tables"]},
//!         {"Effect": "Deny", "Action": "qldb:PartiQL*",
//!          "Resource": "arn:aws:qldb:*:*:ledger/shop/table-name/Secret"}
//!       ]
//!     }
//!   }
//! }
//! ```
//!
//! Rules, as IAM evaluates them:
//! - A request is allowed when some `Allow` statement matches its action and resource and no
//!   `Deny` statement does: an explicit deny wins, and anything not allowed is denied.
//! - `Action` and `Resource` are a string or a list of strings; `*` matches any run of
//!   characters (`/` included) and `?` one character. Actions compare case-insensitively,
//!   resources exactly. Every action pattern must match a QLDB action (typos fail at start).
//! - **An access key without an entry is an administrator**: everything is allowed, so
//!   setups without a policy keep working. Only keys listed in the file are restricted.
//!
//! What is checked, for restricted keys:
//! - Every control-plane request, against its IAM action (`qldb:DescribeLedger`, …) and the
//!   ledger ARN (`qldb:ListLedgers` and `qldb:ListJournalS3Exports` against `*`; tags
//!   against the ARN in the path; exports and streams against their ledger's ARN).
//! - Every `SendCommand` (any ledger, any permissions mode): `qldb:SendCommand` on the ledger.
//! - In ledgers whose permissions mode is `STANDARD`, every statement: each PartiQL action it
//!   performs ([`quill_partiql::access`]) on each table it touches. A table is named by two
//!   ARNs, and a statement matching either applies: QLDB's `…:ledger/L/table/TABLE_ID` and
//!   Quill's `…:ledger/L/table-name/NAME` (a name grant follows the name across DROP and a
//!   new CREATE; an id grant stays with that table). `CREATE TABLE` is checked against
//!   `ledger/L/table/*` (and the name), `information_schema.user_tables` against
//!   `ledger/L/information_schema/user_tables`. A denied statement fails with QLDB's
//!   `AccessDeniedException` "Access denied. Unable to run the statement due to insufficient
//!   permissions or an improper variable reference" (also for a table that does not exist,
//!   so existence does not leak) and leaves the transaction as it was. `ALLOW_ALL` ledgers
//!   run every statement a key may send.
//!
//! Identities come from SigV4, so a policy needs `--auth credentials`: the server refuses to
//! start with a policy and `--auth none`, where every caller is an administrator.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ion_rs::Element;
use quill_ledger::Transaction;
use quill_partiql::access::{statement_accesses, Access, Action, Target};
use serde::Deserialize;

use crate::error::{ApiError, ErrorKind, ServerError};
use crate::sigv4::percent_decode;

/// QLDB's message for a statement the caller may not run (drivers show it as is).
pub const STATEMENT_DENIED: &str = "Access denied. Unable to run the statement due to \
                                    insufficient permissions or an improper variable reference";

/// Every IAM action QLDB defines, for checking the action patterns of a policy.
const QLDB_ACTIONS: &[&str] = &[
    "qldb:CreateLedger",
    "qldb:DescribeLedger",
    "qldb:ListLedgers",
    "qldb:UpdateLedger",
    "qldb:UpdateLedgerPermissionsMode",
    "qldb:DeleteLedger",
    "qldb:GetDigest",
    "qldb:GetBlock",
    "qldb:GetRevision",
    "qldb:TagResource",
    "qldb:UntagResource",
    "qldb:ListTagsForResource",
    "qldb:ExportJournalToS3",
    "qldb:DescribeJournalS3Export",
    "qldb:ListJournalS3Exports",
    "qldb:ListJournalS3ExportsForLedger",
    "qldb:StreamJournalToKinesis",
    "qldb:DescribeJournalKinesisStream",
    "qldb:ListJournalKinesisStreamsForLedger",
    "qldb:CancelJournalKinesisStream",
    "qldb:SendCommand",
    "qldb:PartiQLCreateTable",
    "qldb:PartiQLCreateIndex",
    "qldb:PartiQLDropTable",
    "qldb:PartiQLDropIndex",
    "qldb:PartiQLUndropTable",
    "qldb:PartiQLDelete",
    "qldb:PartiQLInsert",
    "qldb:PartiQLUpdate",
    "qldb:PartiQLSelect",
    "qldb:PartiQLHistoryFunction",
    "qldb:PartiQLRedact",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PolicyFile {
    access_keys: HashMap<String, KeyPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyPolicy {
    statement: Vec<StatementFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct StatementFile {
    #[serde(default)]
    sid: Option<String>,
    effect: Effect,
    action: OneOrMany,
    resource: OneOrMany,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Effect {
    Allow,
    Deny,
}

/// One policy statement, checked.
#[derive(Debug, Clone)]
struct Rule {
    effect: Effect,
    /// Lower-cased action patterns.
    actions: Vec<String>,
    resources: Vec<String>,
}

impl Rule {
    fn matches(&self, action: &str, resources: &[String]) -> bool {
        let action = action.to_ascii_lowercase();
        self.actions.iter().any(|pattern| glob(pattern, &action))
            && self
                .resources
                .iter()
                .any(|pattern| resources.iter().any(|resource| glob(pattern, resource)))
    }
}

/// `*` matches any run of characters, `?` any one; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // Greedy matching with backtracking to the last `*`: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The policy file: rules per access key, and this server's ARN prefix.
#[derive(Debug, Clone)]
pub struct Permissions {
    keys: HashMap<String, Arc<[Rule]>>,
    arn_prefix: Arc<str>,
}

impl Permissions {
    /// Parses a policy (format in the module docs) for a server with this region and
    /// account. Errors name the line or the statement and field at fault.
    pub fn parse(text: &str, region: &str, account_id: &str) -> Result<Permissions, String> {
        let file: PolicyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for (key, policy) in file.access_keys {
            let mut rules = Vec::with_capacity(policy.statement.len());
            for (index, statement) in policy.statement.into_iter().enumerate() {
                let place = match &statement.sid {
                    Some(sid) => format!("AccessKeys.{key}.Statement[{index}] (Sid {sid})"),
                    None => format!("AccessKeys.{key}.Statement[{index}]"),
                };
                rules.push(check_statement(statement, &place)?);
            }
            keys.insert(key, rules.into());
        }
        Ok(Permissions {
            keys,
            arn_prefix: format!("arn:aws:qldb:{region}:{account_id}:").into(),
        })
    }

    /// Reads and parses a policy file (see [`Permissions::parse`]).
    pub fn load(path: &Path, region: &str, account_id: &str) -> Result<Permissions, ServerError> {
        let error = |detail: String| ServerError::Policy {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Permissions::parse(&text, region, account_id).map_err(error)
    }

    /// The caller with this (verified) access key: restricted when the policy lists it, an
    /// administrator otherwise.
    pub fn caller(&self, access_key_id: &str) -> Caller {
        Caller {
            restriction: self.keys.get(access_key_id).map(|rules| Restriction {
                access_key_id: access_key_id.into(),
                rules: rules.clone(),
                arn_prefix: self.arn_prefix.clone(),
            }),
            read_only: false,
        }
    }
}

fn check_statement(statement: StatementFile, place: &str) -> Result<Rule, String> {
    let actions = statement.action.into_vec();
    let resources = statement.resource.into_vec();
    if actions.is_empty() || resources.is_empty() {
        return Err(format!("{place}: Action and Resource must not be empty"));
    }
    for (index, action) in actions.iter().enumerate() {
        let pattern = action.to_ascii_lowercase();
        if !QLDB_ACTIONS
            .iter()
            .any(|known| glob(&pattern, &known.to_ascii_lowercase()))
        {
            return Err(format!(
                "{place}.Action[{index}]: {action:?} matches no QLDB action (e.g. qldb:PartiQLSelect)"
            ));
        }
    }
    for (index, resource) in resources.iter().enumerate() {
        if resource != "*" && !resource.starts_with("arn:") {
            return Err(format!(
                "{place}.Resource[{index}]: {resource:?} is neither \"*\" nor an ARN"
            ));
        }
    }
    Ok(Rule {
        effect: statement.effect,
        actions: actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
        resources,
    })
}

/// Who sent a request, as far as permissions go.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `None` for an administrator (no policy entry, no policy, or no authentication).
    restriction: Option<Restriction>,
    /// Serving a mirror's copy: whatever the policy allows, only reads.
    read_only: bool,
}

#[derive(Debug, Clone)]
struct Restriction {
    access_key_id: Arc<str>,
    rules: Arc<[Rule]>,
    arn_prefix: Arc<str>,
}

impl Restriction {
    fn allows(&self, action: &str, resources: &[String]) -> bool {
        let matching = |effect| {
            self.rules
                .iter()
                .any(|rule| rule.effect == effect && rule.matches(action, resources))
        };
        !matching(Effect::Deny) && matching(Effect::Allow)
    }

    fn arn(&self, resource: &str) -> String {
        format!("{}{resource}", self.arn_prefix)
    }
}

/// What a caller of a mirror's copy may do on the control plane: read.
pub const READ_ONLY_CONTROL_ACTIONS: &[&str] = &[
    "qldb:ListLedgers",
    "qldb:DescribeLedger",
    "qldb:GetDigest",
    "qldb:GetBlock",
    "qldb:GetRevision",
    "qldb:ListTagsForResource",
    "qldb:ListJournalS3Exports",
    "qldb:ListJournalS3ExportsForLedger",
    "qldb:DescribeJournalS3Export",
    "qldb:ListJournalKinesisStreamsForLedger",
    "qldb:DescribeJournalKinesisStream",
];

/// QLDB answers a statement it will not run with a BadRequestException; so does a mirror.
fn read_only_refusal() -> ApiError {
    ApiError::bad_request(
        "This ledger is a read-only mirror: it runs only SELECT statements (history() \
         included); write to the ledger it mirrors",
    )
}

fn access_denied(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::AccessDenied, message)
}

impl Caller {
    /// A caller allowed everything.
    pub fn administrator() -> Caller {
        Caller::default()
    }

    /// The same caller, allowed only to read ([`READ_ONLY_CONTROL_ACTIONS`], statements that
    /// only select or read history): for a server of a mirror's copy.
    pub fn read_only(self) -> Caller {
        Caller {
            read_only: true,
            ..self
        }
    }

    /// True for a caller of a mirror's copy ([`Caller::read_only`]): every statement is
    /// checked, whatever the ledger's permissions mode.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// True when nothing is checked for this caller.
    pub fn is_administrator(&self) -> bool {
        self.restriction.is_none() && !self.read_only
    }

    /// Checks an API-level action (`qldb:SendCommand`, control-plane actions) on a resource
    /// given relative to this server's ARN prefix (`ledger/shop`), or `*`.
    pub fn authorize(&self, action: &str, resource: &str) -> Result<(), ApiError> {
        let Some(restriction) = &self.restriction else {
            return Ok(());
        };
        let resource = if resource == "*" {
            resource.to_string()
        } else {
            restriction.arn(resource)
        };
        self.authorize_arn(action, &resource)
    }

    /// Checks a control-plane request (routes that are no operation are left to the handler,
    /// which rejects them).
    pub fn authorize_control(&self, method: &str, path: &str, body: &[u8]) -> Result<(), ApiError> {
        if self.is_administrator() {
            return Ok(());
        }
        let operation = control_operation(method, path, body);
        if let Some((action, _)) = &operation {
            if self.read_only && !READ_ONLY_CONTROL_ACTIONS.contains(action) {
                return Err(read_only_refusal());
            }
        }
        match operation {
            None => Ok(()),
            Some((action, ControlResource::Any)) => self.authorize(action, "*"),
            Some((action, ControlResource::Relative(resource))) => {
                self.authorize(action, &resource)
            }
            Some((action, ControlResource::Arn(arn))) => self.authorize_arn(action, &arn),
        }
    }

    /// Checks an action on a full ARN (tags name their resource by ARN).
    pub fn authorize_arn(&self, action: &str, arn: &str) -> Result<(), ApiError> {
        let Some(restriction) = &self.restriction else {
            return Ok(());
        };
        if restriction.allows(action, &[arn.to_string()]) {
            return Ok(());
        }
        Err(access_denied(format!(
            "Access key {} is not authorized to perform: {action} on resource: {arn}",
            restriction.access_key_id
        )))
    }

    /// Checks every action `statement` would perform in `ledger` (a STANDARD-mode ledger),
    /// resolving table names through `tx`'s catalog. A statement that does not parse is let
    /// through: running it reports the syntax error and touches nothing.
    pub fn authorize_statement(
        &self,
        ledger: &str,
        tx: &mut Transaction,
        statement: &str,
        parameters: &[Element],
    ) -> Result<(), ApiError> {
        if self.is_administrator() {
            return Ok(());
        }
        let Ok(parsed) = quill_partiql::parser::parse(statement) else {
            return Ok(());
        };
        let accesses = statement_accesses(&parsed, parameters);
        if self.read_only
            && accesses
                .iter()
                .any(|a| !matches!(a.action, Action::Select | Action::HistoryFunction))
        {
            return Err(read_only_refusal());
        }
        let Some(restriction) = &self.restriction else {
            return Ok(());
        };
        for access in accesses {
            let allowed = table_arns(restriction, ledger, tx, &access)
                .is_some_and(|arns| restriction.allows(access.action.iam_name(), &arns));
            if !allowed {
                tracing::debug!(
                    access_key = %restriction.access_key_id,
                    action = access.action.iam_name(),
                    target = ?access.target,
                    "statement denied"
                );
                return Err(access_denied(STATEMENT_DENIED));
            }
        }
        Ok(())
    }
}

/// The ARNs naming an access's target, or `None` when it names no table that exists (or
/// cannot be known before the statement runs).
fn table_arns(
    restriction: &Restriction,
    ledger: &str,
    tx: &mut Transaction,
    access: &Access,
) -> Option<Vec<String>> {
    let ledger = format!("ledger/{ledger}");
    let table = |id: &str, name: &str| {
        vec![
            restriction.arn(&format!("{ledger}/table/{id}")),
            restriction.arn(&format!("{ledger}/table-name/{name}")),
        ]
    };
    match &access.target {
        Target::NewTable(name) => Some(table("*", name)),
        Target::TableName(name) => tx.table(name).ok().map(|t| table(&t.table_id, &t.name)),
        Target::TableId(id) => tx.table_by_id(id).ok().map(|t| table(&t.table_id, &t.name)),
        Target::Catalog => Some(vec![
            restriction.arn(&format!("{ledger}/information_schema/user_tables"))
        ]),
        Target::Dynamic => None,
    }
}

/// The IAM action and resource of a control-plane request (`None` for a route that is not
/// an operation; the handler rejects it).
pub fn control_operation(
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<(&'static str, ControlResource)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ledger = |name: &str| ControlResource::Relative(format!("ledger/{name}"));
    let operation = match (method, segments.as_slice()) {
        ("POST", ["ledgers"]) => {
            #[derive(Deserialize)]
            struct Named {
                #[serde(rename = "Name", default)]
                name: String,
            }
            let name = serde_json::from_slice::<Named>(body)
                .map(|n| n.name)
                .unwrap_or_default();
            ("qldb:CreateLedger", ledger(&name))
        }
        ("GET", ["ledgers"]) => ("qldb:ListLedgers", ControlResource::Any),
        ("GET", ["journal-s3-exports"]) => ("qldb:ListJournalS3Exports", ControlResource::Any),
        (method, ["ledgers", name, rest @ ..]) => {
            let action = match (method, rest) {
                ("GET", []) => "qldb:DescribeLedger",
                ("PATCH", []) => "qldb:UpdateLedger",
                ("DELETE", []) => "qldb:DeleteLedger",
                ("PATCH", ["permissions-mode"]) => "qldb:UpdateLedgerPermissionsMode",
                ("POST", ["digest"]) => "qldb:GetDigest",
                ("POST", ["block"]) => "qldb:GetBlock",
                ("POST", ["revision"]) => "qldb:GetRevision",
                // GetConsistencyProof (a Quill extension) proves digests.
                ("POST", ["consistency-proof"]) => "qldb:GetDigest",
                // The journal event tail (a Quill extension) reads blocks.
                ("GET", ["journal", "events"]) => "qldb:GetBlock",
                // So does the journal block range (a Quill extension, for mirrors).
                ("GET", ["journal", "blocks"]) => "qldb:GetBlock",
                ("POST", ["journal-s3-exports"]) => "qldb:ExportJournalToS3",
                ("GET", ["journal-s3-exports"]) => "qldb:ListJournalS3ExportsForLedger",
                ("GET", ["journal-s3-exports", _]) => "qldb:DescribeJournalS3Export",
                ("POST", ["journal-kinesis-streams"]) => "qldb:StreamJournalToKinesis",
                ("GET", ["journal-kinesis-streams"]) => "qldb:ListJournalKinesisStreamsForLedger",
                ("GET", ["journal-kinesis-streams", _]) => "qldb:DescribeJournalKinesisStream",
                ("DELETE", ["journal-kinesis-streams", _]) => "qldb:CancelJournalKinesisStream",
                // Quill's NATS streams are authorized as QLDB's Kinesis streams.
                ("POST", ["journal-nats-streams"]) => "qldb:StreamJournalToKinesis",
                ("GET", ["journal-nats-streams"]) => "qldb:ListJournalKinesisStreamsForLedger",
                ("GET", ["journal-nats-streams", _]) => "qldb:DescribeJournalKinesisStream",
                ("DELETE", ["journal-nats-streams", _]) => "qldb:CancelJournalKinesisStream",
                _ => return None,
            };
            let name = String::from_utf8(percent_decode(name)).ok()?;
            (action, ledger(&name))
        }
        (method, ["tags", arn]) => {
            let action = match method {
                "GET" => "qldb:ListTagsForResource",
                "POST" => "qldb:TagResource",
                "DELETE" => "qldb:UntagResource",
                _ => return None,
            };
            let arn = String::from_utf8(percent_decode(arn)).ok()?;
            (action, ControlResource::Arn(arn))
        }
        _ => return None,
    };
    Some(operation)
}

/// The resource a control-plane action is checked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlResource {
    /// No resource-level permission (`*`).
    Any,
    /// Relative to this server's ARN prefix (`ledger/shop`).
    Relative(String),
    /// A full ARN from the request.
    Arn(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
      "AccessKeys": {
        "reader": {"Statement": [
          {"Effect": "Allow", "Action": "qldb:SendCommand", "Resource": "arn:aws:qldb:*:*:ledger/shop"},
          {"Effect": "Allow", "Action": ["qldb:PartiQLSelect", "qldb:Describe*"],
           "Resource": ["arn:aws:qldb:*:*:ledger/shop/table/*", "arn:aws:qldb:*:*:ledger/shop"]},
          {"Sid": "no-secrets", "Effect": "Deny", "Action": "qldb:partiql*",
           "Resource": "arn:aws:qldb:*:*:ledger/shop/table-name/Secret"}
        ]},
        "nobody": {"Statement": []}
      }
    }"#;

    fn permissions() -> Permissions {
        Permissions::parse(POLICY, "us-east-1", "000000000000").unwrap()
    }

    #[test]
    fn globs_match_like_iam() {
        assert!(glob("*", ""));
        assert!(glob(
            "arn:*:ledger/*",
            "arn:aws:qldb:r:a:ledger/shop/table/x"
        ));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*b*b", "abbab"));
        assert!(!glob("ledger/shop", "ledger/shopping"));
        assert!(glob("ledger/shop*", "ledger/shopping"));
        assert!(!glob("abc", "ab"));
    }

    #[test]
    fn keys_without_entries_are_administrators() {
        let permissions = permissions();
        let admin = permissions.caller("admin");
        assert!(admin.is_administrator());
        assert!(admin.authorize("qldb:DeleteLedger", "ledger/shop").is_ok());
        let nobody = permissions.caller("nobody");
        assert!(!nobody.is_administrator());
        let error = nobody.authorize("qldb:ListLedgers", "*").unwrap_err();
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert!(
            error.message.contains("qldb:ListLedgers"),
            "{}",
            error.message
        );
    }

    #[test]
    fn allows_need_a_matching_action_and_resource_and_deny_wins() {
        let reader = permissions().caller("reader");
        assert!(reader.authorize("qldb:SendCommand", "ledger/shop").is_ok());
        assert!(reader
            .authorize("qldb:SendCommand", "ledger/other")
            .is_err());
        assert!(reader
            .authorize("qldb:describeledger", "ledger/shop")
            .is_ok());
        assert!(reader
            .authorize("qldb:DeleteLedger", "ledger/shop")
            .is_err());
        let table = |rest: &str| format!("arn:aws:qldb:us-east-1:000000000000:ledger/shop/{rest}");
        let restriction = reader.restriction.as_ref().unwrap();
        let public = [table("table/ID1"), table("table-name/Item")];
        assert!(restriction.allows("qldb:PartiQLSelect", &public));
        assert!(!restriction.allows("qldb:PartiQLInsert", &public));
        let secret = [table("table/ID2"), table("table-name/Secret")];
        assert!(
            !restriction.allows("qldb:PartiQLSelect", &secret),
            "explicit deny wins"
        );
    }

    #[test]
    fn control_routes_map_to_iam_actions() {
        assert_eq!(
            control_operation("GET", "/ledgers/shop", b""),
            Some((
                "qldb:DescribeLedger",
                ControlResource::Relative("ledger/shop".into())
            ))
        );
        assert_eq!(
            control_operation(
                "POST",
                "/ledgers",
                br#"{"Name":"new","PermissionsMode":"STANDARD"}"#
            ),
            Some((
                "qldb:CreateLedger",
                ControlResource::Relative("ledger/new".into())
            ))
        );
        assert_eq!(
            control_operation("GET", "/ledgers", b""),
            Some(("qldb:ListLedgers", ControlResource::Any))
        );
        assert_eq!(
            control_operation(
                "DELETE",
                "/tags/arn%3Aaws%3Aqldb%3Ar%3Aa%3Aledger%2Fshop",
                b""
            ),
            Some((
                "qldb:UntagResource",
                ControlResource::Arn("arn:aws:qldb:r:a:ledger/shop".into())
            ))
        );
        assert_eq!(control_operation("PUT", "/ledgers/x/nothing", b""), None);
        let reader = permissions().caller("reader");
        assert!(reader
            .authorize_control("GET", "/ledgers/shop", b"")
            .is_ok());
        assert!(reader
            .authorize_control("POST", "/ledgers/shop/digest", b"")
            .is_err());
    }

    #[test]
    fn a_read_only_caller_only_reads_whatever_the_policy_allows() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = quill_ledger::Ledger::create(dir.path(), "shop", Default::default()).unwrap();
        ledger
            .transact(|tx| tx.create_table("Item", None).map(|_| ()))
            .unwrap();
        let reader = Caller::administrator().read_only();
        assert!(reader.is_read_only() && !reader.is_administrator());
        let mut tx = ledger.begin().unwrap();
        for statement in [
            "SELECT * FROM Item",
            "SELECT * FROM _ql_committed_Item",
            "SELECT * FROM history(Item)",
            "SELECT * FROM information_schema.user_tables",
        ] {
            assert!(
                reader
                    .authorize_statement("shop", &mut tx, statement, &[])
                    .is_ok(),
                "{statement}"
            );
        }
        for statement in [
            "INSERT INTO Item {'a': 1}",
            "UPDATE Item SET a = 2",
            "DELETE FROM Item",
            "FROM Item AS i SET i.a = 3",
            "CREATE TABLE Other",
            "CREATE INDEX ON Item (a)",
            "DROP TABLE Item",
            "EXEC redact_revision '{strandId:\"x\",sequenceNo:1}', 'a', 'b'",
        ] {
            let refused = reader
                .authorize_statement("shop", &mut tx, statement, &[])
                .unwrap_err();
            assert_eq!(refused.kind, ErrorKind::BadRequest, "{statement}");
            assert!(refused.message.contains("read-only mirror"), "{statement}");
        }
        // A policy's restrictions still apply on top.
        let policy = r#"{"AccessKeys": {"clerk": {"Statement": [
            {"Effect": "Allow", "Action": "qldb:GetDigest", "Resource": "*"}]}}}"#;
        let clerk = Permissions::parse(policy, "us-east-1", "000000000000")
            .unwrap()
            .caller("clerk")
            .read_only();
        assert_eq!(
            clerk
                .authorize_statement("shop", &mut tx, "SELECT * FROM Item", &[])
                .unwrap_err()
                .kind,
            ErrorKind::AccessDenied
        );
        for (method, path) in [
            ("GET", "/ledgers"),
            ("GET", "/ledgers/shop"),
            ("POST", "/ledgers/shop/digest"),
            ("POST", "/ledgers/shop/block"),
            ("POST", "/ledgers/shop/revision"),
            ("GET", "/ledgers/shop/journal/blocks"),
        ] {
            assert!(
                reader.authorize_control(method, path, b"{}").is_ok(),
                "{method} {path}"
            );
        }
        for (method, path) in [
            ("POST", "/ledgers"),
            ("DELETE", "/ledgers/shop"),
            ("PATCH", "/ledgers/shop"),
            ("PATCH", "/ledgers/shop/permissions-mode"),
            ("POST", "/ledgers/shop/journal-s3-exports"),
            ("POST", "/ledgers/shop/journal-kinesis-streams"),
            (
                "POST",
                "/tags/arn%3Aaws%3Aqldb%3Aus-east-1%3A0%3Aledger%2Fshop",
            ),
        ] {
            let refused = reader.authorize_control(method, path, b"{}").unwrap_err();
            assert_eq!(refused.kind, ErrorKind::BadRequest, "{method} {path}");
        }
    }

    #[test]
    fn statements_are_checked_against_table_ids_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = quill_ledger::Ledger::create(dir.path(), "shop", Default::default()).unwrap();
        let (item, secret) = ledger
            .transact(|tx| {
                Ok((
                    tx.create_table("Item", None)?,
                    tx.create_table("Secret", None)?,
                ))
            })
            .unwrap();
        let policy = format!(
            r#"{{"AccessKeys": {{"clerk": {{"Statement": [
                {{"Effect": "Allow", "Action": ["qldb:PartiQLSelect", "qldb:PartiQLInsert"],
                  "Resource": "arn:aws:qldb:us-east-1:000000000000:ledger/shop/table/{item}"}},
                {{"Effect": "Allow", "Action": "qldb:PartiQLHistoryFunction",
                  "Resource": "arn:aws:qldb:*:*:ledger/shop/table-name/Secret"}}
            ]}}}}}}"#
        );
        let clerk = Permissions::parse(&policy, "us-east-1", "000000000000")
            .unwrap()
            .caller("clerk");
        let mut tx = ledger.begin().unwrap();
        let mut check = |statement: &str, parameters: &[Element]| {
            clerk.authorize_statement("shop", &mut tx, statement, parameters)
        };
        assert!(check("SELECT * FROM Item", &[]).is_ok());
        assert!(check(
            "INSERT INTO Item ?",
            &[Element::null(ion_rs::IonType::Struct)]
        )
        .is_ok());
        assert!(check("SELECT * FROM history(Secret)", &[]).is_ok());
        assert!(check(
            "SELECT * FROM history(?)",
            &[Element::string(secret.as_str())]
        )
        .is_ok());
        assert!(check("SELECT * FROM history(Item)", &[]).is_err());
        assert!(check("DELETE FROM Item", &[]).is_err());
        let denied = check("SELECT * FROM Secret", &[]).unwrap_err();
        assert_eq!(
            (denied.kind, denied.message.as_str()),
            (ErrorKind::AccessDenied, STATEMENT_DENIED)
        );
        assert!(
            check("SELECT * FROM Nowhere", &[]).is_err(),
            "unknown tables are denied too"
        );
        assert!(check("SELECT * FROM history('a' || 'b')", &[]).is_err());
        assert!(
            check("SELECT * FROM", &[]).is_ok(),
            "syntax errors are left to the parser"
        );
        let mut admin_tx = ledger.begin().unwrap();
        assert!(Caller::administrator()
            .authorize_statement("shop", &mut admin_tx, "SELECT * FROM Nowhere", &[])
            .is_ok());
    }

    #[test]
    fn bad_policies_name_the_place() {
        let parse = |text: &str| Permissions::parse(text, "r", "a").unwrap_err();
        assert!(parse("{").contains("line 1"), "{}", parse("{"));
        let typo = parse(
            r#"{"AccessKeys": {"k": {"Statement": [
                {"Effect": "Allow", "Action": ["qldb:SendCommand", "qldb:PartiQLSelec"], "Resource": "*"}]}}}"#,
        );
        assert!(
            typo.contains("AccessKeys.k.Statement[0].Action[1]"),
            "{typo}"
        );
        let effect = parse(
            r#"{"AccessKeys": {"k": {"Statement": [{"Effect": "Alow", "Action": "qldb:*", "Resource": "*"}]}}}"#,
        );
        assert!(
            effect.contains("Alow") && effect.contains("line"),
            "{effect}"
        );
        let resource = parse(
            r#"{"AccessKeys": {"k": {"Statement": [{"Effect": "Allow", "Action": "qldb:*", "Resource": "ledger/x"}]}}}"#,
        );
        assert!(resource.contains("Resource[0]"), "{resource}");
        let unknown = parse(r#"{"AccessKeys": {}, "Extra": 1}"#);
        assert!(unknown.contains("Extra"), "{unknown}");
    }
}
