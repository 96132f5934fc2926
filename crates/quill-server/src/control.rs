//! The QLDB control plane (REST-JSON): ledgers, digests, blocks, revisions and tags.
//!
//! Every handler blocks (control files are fsynced, proofs read the journal): the HTTP layer
//! runs [`handle`] on a blocking thread. Errors use the control plane's names
//! (`InvalidParameterException`, `ResourceNotFoundException`, …).

use std::collections::BTreeMap;

use ion_rs::Element;
use quill_ledger::{BlockAddress, Ledger};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorKind, Plane};
use crate::exports;
use crate::ion_codec::text_depth_within;
use crate::limits::{
    LIST_RESULTS_MAX, TAGS_PER_RESOURCE_MAX, TAG_KEY_MAX_CHARS, TAG_VALUE_MAX_CHARS,
};
use crate::registry::{ControlRecord, NewLedger, Registry, AWS_OWNED_KMS_KEY};
use crate::session::Sessions;
use crate::sigv4::percent_decode;

/// Longest Ion text accepted for a block address (a real one is about 60 characters).
const ADDRESS_TEXT_MAX_CHARS: usize = 1_024;
/// Nesting accepted in an address (a real one has one level).
const ADDRESS_DEPTH_MAX: usize = 4;

/// What the control plane needs from the server.
pub struct Context<'a> {
    /// The ledgers.
    pub registry: &'a Registry,
    /// Sessions, ended when their ledger is deleted.
    pub sessions: &'a Sessions,
    /// Journal exports.
    pub exports: &'a exports::Exports,
    /// Region for ARNs.
    pub region: &'a str,
    /// Account id for ARNs.
    pub account_id: &'a str,
}

/// One control-plane request.
pub struct ControlRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Raw (percent-encoded) path.
    pub path: &'a str,
    /// Raw query string.
    pub query: &'a str,
    /// Body bytes.
    pub body: &'a [u8],
}

/// True when the path belongs to the control plane.
pub fn is_control_path(path: &str) -> bool {
    // Every data-plane request asks this: no allocation.
    ["/ledgers", "/tags/", "/journal-s3-exports"]
        .iter()
        .any(|prefix| {
            path == *prefix
                || path
                    .strip_prefix(prefix.trim_end_matches('/'))
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

fn decode_segment(segment: &str) -> Result<String, ApiError> {
    String::from_utf8(percent_decode(segment))
        .map_err(|_| ApiError::invalid_parameter("Path is not valid UTF-8"))
}

/// Routes and runs a control-plane request; returns the status and JSON body.
pub fn handle(
    context: &Context<'_>,
    request: &ControlRequest<'_>,
) -> Result<(u16, Value), ApiError> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let body = request.body;
    match (request.method, segments.as_slice()) {
        ("POST", ["ledgers"]) => create_ledger(context, body),
        ("GET", ["ledgers"]) => list_ledgers(context, request.query),
        (method, ["ledgers", name, rest @ ..]) => {
            let name = decode_segment(name)?;
            ledger_operation(context, method, &name, rest, request.query, body)
        }
        (method, ["tags", arn]) => {
            let arn = decode_segment(arn)?;
            tags_operation(context, method, &arn, request.query, body)
        }
        ("GET", ["journal-s3-exports"]) => exports::list_journal_s3_exports(context, request.query),
        _ => Err(ApiError::new(
            ErrorKind::UnknownOperation,
            format!(
                "No control-plane operation for {} {}",
                request.method, request.path
            ),
        )),
    }
}

fn ledger_operation(
    context: &Context<'_>,
    method: &str,
    name: &str,
    rest: &[&str],
    query: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    match (method, rest) {
        ("GET", []) => describe_ledger(context, name),
        ("PATCH", []) => update_ledger(context, name, body),
        ("DELETE", []) => delete_ledger(context, name),
        ("PATCH", ["permissions-mode"]) => update_permissions_mode(context, name, body),
        ("POST", ["digest"]) => get_digest(context, name),
        ("POST", ["block"]) => get_block(context, name, body),
        ("POST", ["revision"]) => get_revision(context, name, body),
        ("POST", ["consistency-proof"]) => get_consistency_proof(context, name, body),
        ("POST", ["journal-s3-exports"]) => exports::export_journal_to_s3(context, name, body),
        ("GET", ["journal-s3-exports"]) => {
            exports::list_journal_s3_exports_for_ledger(context, name, query)
        }
        ("GET", ["journal-s3-exports", export_id]) => {
            let export_id = decode_segment(export_id)?;
            exports::describe_journal_s3_export(context, name, &export_id)
        }
        _ => Err(ApiError::new(
            ErrorKind::UnknownOperation,
            "No such ledger operation",
        )),
    }
}

pub(crate) fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorKind::Serialization,
            format!("Invalid request body: {e}"),
        )
    })
}

fn arn(context: &Context<'_>, name: &str) -> String {
    format!(
        "arn:aws:qldb:{}:{}:ledger/{name}",
        context.region, context.account_id
    )
}

/// A ledger as DescribeLedger shows it. Quill does not encrypt ledgers at rest, so the reply
/// has no `EncryptionDescription` (and CreateLedger no `KmsKeyArn`): both are optional in
/// QLDB's model, and any value would claim a protection that is not there. The `KmsKey` a
/// client sends is recorded in `control.json`, unused.
fn describe(context: &Context<'_>, control: &ControlRecord) -> Value {
    json!({
        "Name": control.name,
        "Arn": arn(context, &control.name),
        "State": control.state,
        "CreationDateTime": control.creation_date_time,
        "PermissionsMode": control.permissions_mode,
        "DeletionProtection": control.deletion_protection,
    })
}

fn check_permissions_mode(mode: &str) -> Result<(), ApiError> {
    match mode {
        "ALLOW_ALL" | "STANDARD" => Ok(()),
        other => Err(ApiError::invalid_parameter(format!(
            "PermissionsMode must be ALLOW_ALL or STANDARD, got {other:?}"
        ))),
    }
}

pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > TAGS_PER_RESOURCE_MAX {
        return Err(ApiError::invalid_parameter(format!(
            "At most {TAGS_PER_RESOURCE_MAX} tags per resource"
        )));
    }
    for (key, value) in tags {
        let key_length = key.chars().count();
        if key_length == 0 || key_length > TAG_KEY_MAX_CHARS {
            return Err(ApiError::invalid_parameter(
                "Tag keys must be 1-128 characters",
            ));
        }
        if value.chars().count() > TAG_VALUE_MAX_CHARS {
            return Err(ApiError::invalid_parameter(
                "Tag values must be 0-256 characters",
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateLedgerRequest {
    name: String,
    permissions_mode: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    deletion_protection: Option<bool>,
    kms_key: Option<String>,
}

fn create_ledger(context: &Context<'_>, body: &[u8]) -> Result<(u16, Value), ApiError> {
    let request: CreateLedgerRequest = parse_body(body)?;
    check_permissions_mode(&request.permissions_mode)?;
    check_tags(&request.tags)?;
    let control = context.registry.create(NewLedger {
        name: request.name,
        permissions_mode: request.permissions_mode,
        // QLDB turns deletion protection on unless told otherwise.
        deletion_protection: request.deletion_protection.unwrap_or(true),
        kms_key: request
            .kms_key
            .unwrap_or_else(|| AWS_OWNED_KMS_KEY.to_string()),
        tags: request.tags,
    })?;
    tracing::info!(ledger = %control.name, "created ledger");
    Ok((200, describe(context, &control)))
}

fn describe_ledger(context: &Context<'_>, name: &str) -> Result<(u16, Value), ApiError> {
    let control = context.registry.describe(name)?;
    Ok((200, describe(context, &control)))
}

pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                String::from_utf8_lossy(&percent_decode(&s.replace('+', " "))).into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// A list call's `max_results` (1-100, default 100).
pub(crate) fn max_results(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    match pairs.iter().find(|(n, _)| n == "max_results") {
        None => Ok(LIST_RESULTS_MAX),
        Some((_, value)) => value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LIST_RESULTS_MAX).contains(n))
            .ok_or_else(|| ApiError::invalid_parameter("max_results must be 1-100")),
    }
}

/// The name a list call's `next_token` continues after (see [`encode_next_token`]).
pub(crate) fn after_token(pairs: &[(String, String)]) -> Result<Option<String>, ApiError> {
    pairs
        .iter()
        .find(|(n, _)| n == "next_token")
        .map(|(_, token)| decode_next_token(token))
        .transpose()
}

fn list_ledgers(context: &Context<'_>, query: &str) -> Result<(u16, Value), ApiError> {
    let pairs = query_pairs(query);
    let (max_results, after) = (max_results(&pairs)?, after_token(&pairs)?);
    let ledgers: Vec<ControlRecord> = context
        .registry
        .list()
        .into_iter()
        .filter(|c| after.as_ref().is_none_or(|after| &c.name > after))
        .collect();
    let page: Vec<Value> = ledgers
        .iter()
        .take(max_results)
        .map(
            |c| json!({"Name": c.name, "State": c.state, "CreationDateTime": c.creation_date_time}),
        )
        .collect();
    let mut reply = json!({ "Ledgers": page });
    if ledgers.len() > max_results {
        reply["NextToken"] = json!(encode_next_token(&ledgers[max_results - 1].name));
    }
    Ok((200, reply))
}

/// ListLedgers' NextToken: the last name returned, hex-encoded so it meets the 4-character
/// minimum and the token charset.
pub(crate) fn encode_next_token(last_name: &str) -> String {
    format!("next{}", hex::encode(last_name))
}

pub(crate) fn decode_next_token(token: &str) -> Result<String, ApiError> {
    token
        .strip_prefix("next")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::invalid_parameter("next_token is not valid"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateLedgerRequest {
    deletion_protection: Option<bool>,
    kms_key: Option<String>,
}

fn update_ledger(context: &Context<'_>, name: &str, body: &[u8]) -> Result<(u16, Value), ApiError> {
    let request: UpdateLedgerRequest = parse_body(body)?;
    let control = context.registry.update(name, |control| {
        if let Some(protection) = request.deletion_protection {
            control.deletion_protection = protection;
        }
        if let Some(key) = request.kms_key {
            control.kms_key = key;
        }
        Ok(())
    })?;
    let mut reply = describe(context, &control);
    if let Some(object) = reply.as_object_mut() {
        object.remove("PermissionsMode");
    }
    Ok((200, reply))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionsModeRequest {
    permissions_mode: String,
}

fn update_permissions_mode(
    context: &Context<'_>,
    name: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let request: PermissionsModeRequest = parse_body(body)?;
    check_permissions_mode(&request.permissions_mode)?;
    let control = context.registry.update(name, |control| {
        control.permissions_mode = request.permissions_mode;
        Ok(())
    })?;
    Ok((
        200,
        json!({"Name": name, "Arn": arn(context, name), "PermissionsMode": control.permissions_mode}),
    ))
}

fn delete_ledger(context: &Context<'_>, name: &str) -> Result<(u16, Value), ApiError> {
    context.registry.delete(name)?;
    context.sessions.end_all(Some(name));
    tracing::info!(ledger = %name, "deleted ledger");
    Ok((200, json!({})))
}

fn ion_text_address(address: &BlockAddress) -> String {
    format!(
        "{{strandId:\"{}\",sequenceNo:{}}}",
        address.strand_id, address.sequence_no
    )
}

fn get_digest(context: &Context<'_>, name: &str) -> Result<(u16, Value), ApiError> {
    let (ledger, _) = context.registry.get(name)?;
    let digest = ledger.digest();
    Ok((
        200,
        json!({
            "Digest": digest.digest.to_base64(),
            "DigestTipAddress": {"IonText": ion_text_address(&digest.tip)},
        }),
    ))
}

#[derive(Deserialize)]
struct IonTextHolder {
    #[serde(rename = "IonText")]
    ion_text: String,
}

/// Parses `{strandId:"…",sequenceNo:N}` and checks it names this ledger's strand.
fn parse_address(
    ledger: &Ledger,
    holder: &IonTextHolder,
    parameter: &str,
) -> Result<u64, ApiError> {
    let invalid = |why: &str| ApiError::invalid_parameter(format!("{parameter} {why}"));
    let text = &holder.ion_text;
    if text.len() > ADDRESS_TEXT_MAX_CHARS || !text_depth_within(text.as_bytes(), ADDRESS_DEPTH_MAX)
    {
        return Err(invalid("is too large"));
    }
    let value = Element::read_one(text.as_bytes()).map_err(|_| invalid("is not one Ion value"))?;
    let fields = value
        .as_struct()
        .ok_or_else(|| invalid("must be an Ion struct"))?;
    let strand = fields.get("strandId").and_then(|s| s.as_string());
    if strand != Some(ledger.strand_id()) {
        return Err(invalid("does not name this ledger's strand"));
    }
    fields
        .get("sequenceNo")
        .and_then(|n| n.as_i64())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| invalid("needs a non-negative integer sequenceNo"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetBlockRequest {
    block_address: IonTextHolder,
    digest_tip_address: Option<IonTextHolder>,
}

fn ledger_error(error: quill_ledger::LedgerError) -> ApiError {
    ApiError::from_ledger(&error, Plane::Control)
}

fn tip_at_or_after(
    ledger: &Ledger,
    tip: Option<&IonTextHolder>,
    sequence_no: u64,
) -> Result<Option<u64>, ApiError> {
    let Some(tip) = tip else { return Ok(None) };
    let tip = parse_address(ledger, tip, "DigestTipAddress")?;
    if tip < sequence_no {
        return Err(ApiError::invalid_parameter(
            "DigestTipAddress must not be before BlockAddress",
        ));
    }
    Ok(Some(tip))
}

fn get_block(context: &Context<'_>, name: &str, body: &[u8]) -> Result<(u16, Value), ApiError> {
    let request: GetBlockRequest = parse_body(body)?;
    let (ledger, _) = context.registry.get(name)?;
    let sequence_no = parse_address(&ledger, &request.block_address, "BlockAddress")?;
    let tip = tip_at_or_after(&ledger, request.digest_tip_address.as_ref(), sequence_no)?;
    let block = ledger.block(sequence_no).map_err(ledger_error)?;
    let mut reply = json!({"Block": {"IonText": block.to_string()}});
    if let Some(tip) = tip {
        let proof = ledger.block_proof(sequence_no, tip).map_err(ledger_error)?;
        reply["Proof"] = json!({"IonText": quill_verify::proof_to_ion_text(&proof)});
    }
    Ok((200, reply))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRevisionRequest {
    block_address: IonTextHolder,
    document_id: String,
    digest_tip_address: Option<IonTextHolder>,
}

fn get_revision(context: &Context<'_>, name: &str, body: &[u8]) -> Result<(u16, Value), ApiError> {
    let request: GetRevisionRequest = parse_body(body)?;
    let (ledger, _) = context.registry.get(name)?;
    let sequence_no = parse_address(&ledger, &request.block_address, "BlockAddress")?;
    let tip = tip_at_or_after(&ledger, request.digest_tip_address.as_ref(), sequence_no)?;
    let document_id = request.document_id.as_str();
    let revision = ledger
        .revision(sequence_no, document_id)
        .map_err(ledger_error)?;
    let mut reply = json!({"Revision": {"IonText": revision.to_element().to_string()}});
    if let Some(tip) = tip {
        let proof = ledger
            .revision_proof(sequence_no, document_id, tip)
            .map_err(ledger_error)?;
        reply["Proof"] = json!({"IonText": quill_verify::proof_to_ion_text(&proof)});
    }
    Ok((200, reply))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetConsistencyProofRequest {
    from_digest_tip_address: IonTextHolder,
    digest_tip_address: Option<IonTextHolder>,
}

/// `GetConsistencyProof` (a Quill extension, `POST /ledgers/{name}/consistency-proof`): the
/// proof that the digest at `DigestTipAddress` (default: the current digest, returned with it)
/// extends the digest at `FromDigestTipAddress`, which the caller saved earlier and checks
/// with `quill_verify::verify_digest_consistency`.
fn get_consistency_proof(
    context: &Context<'_>,
    name: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let request: GetConsistencyProofRequest = parse_body(body)?;
    let (ledger, _) = context.registry.get(name)?;
    let from = parse_address(
        &ledger,
        &request.from_digest_tip_address,
        "FromDigestTipAddress",
    )?;
    let digest = match &request.digest_tip_address {
        Some(tip) => {
            let tip = parse_address(&ledger, tip, "DigestTipAddress")?;
            ledger.digest_at(tip).map_err(ledger_error)?
        }
        None => ledger.digest(),
    };
    if from > digest.tip.sequence_no {
        return Err(ApiError::invalid_parameter(
            "FromDigestTipAddress must not be after DigestTipAddress",
        ));
    }
    let proof = ledger
        .consistency_proof(from, digest.tip.sequence_no)
        .map_err(ledger_error)?;
    let from_address = BlockAddress {
        strand_id: ledger.strand_id().to_owned(),
        sequence_no: from,
    };
    Ok((
        200,
        json!({
            "Proof": {"IonText": quill_verify::proof_to_ion_text(&proof)},
            "Digest": digest.digest.to_base64(),
            "DigestTipAddress": {"IonText": ion_text_address(&digest.tip)},
            "FromDigestTipAddress": {"IonText": ion_text_address(&from_address)},
        }),
    ))
}

/// A taggable resource: a ledger, or one of its tables.
#[derive(Debug, PartialEq)]
enum TagTarget {
    /// `arn:aws:qldb:<region>:<account>:ledger/<name>`.
    Ledger(String),
    /// `arn:aws:qldb:<region>:<account>:ledger/<name>/table/<tableId>`.
    Table { ledger: String, table_id: String },
}

/// The resource an ARN of this server names.
fn tag_target(context: &Context<'_>, arn: &str) -> Result<TagTarget, ApiError> {
    let prefix = format!(
        "arn:aws:qldb:{}:{}:ledger/",
        context.region, context.account_id
    );
    let invalid = || {
        ApiError::invalid_parameter(format!(
            "{arn} is not a ledger, table or journal stream ARN of this server"
        ))
    };
    let rest = arn.strip_prefix(&prefix).ok_or_else(invalid)?;
    match rest.split_once('/') {
        None => Ok(TagTarget::Ledger(rest.to_string())),
        Some((ledger, path)) => match path.strip_prefix("table/") {
            Some(table_id) if !table_id.is_empty() && !table_id.contains('/') => {
                Ok(TagTarget::Table {
                    ledger: ledger.to_string(),
                    table_id: table_id.to_string(),
                })
            }
            _ => Err(invalid()),
        },
    }
}

/// A table's current tags: those TagResource/UntagResource left in `control.json`, else the
/// `aws_tags` of its CREATE TABLE. Unknown ledgers and tables are ResourceNotFound.
fn table_tags(
    context: &Context<'_>,
    ledger_name: &str,
    table_id: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let (ledger, control) = context.registry.get(ledger_name)?;
    let mut tx = ledger.begin().map_err(ledger_error)?;
    let table = tx.table_by_id(table_id);
    tx.abort();
    let table = match table {
        Ok(table) => table,
        Err(quill_ledger::LedgerError::UnknownTable(_)) => {
            return Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Table {table_id} does not exist in ledger {ledger_name}"),
            ))
        }
        Err(error) => return Err(ledger_error(error)),
    };
    if let Some(tags) = control.table_tags.get(&table.table_id) {
        return Ok(tags.clone());
    }
    let Some(created) = table.tags.as_ref().and_then(Element::as_struct) else {
        return Ok(BTreeMap::new());
    };
    Ok(created
        .iter()
        .filter_map(|(key, value)| Some((key.text()?.to_string(), value.as_text()?.to_string())))
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceRequest {
    tags: BTreeMap<String, String>,
}

/// What TagResource or UntagResource does to a resource's tags.
pub(crate) enum TagChange {
    /// Adds or replaces these tags.
    Add(BTreeMap<String, String>),
    /// Removes these keys (absent keys are ignored).
    Remove(Vec<String>),
}

impl TagChange {
    /// The change a tag request asks for: `POST` adds the body's tags, `DELETE` removes the
    /// `tagKeys` of the query; `None` for another method.
    pub(crate) fn of_request(
        method: &str,
        query: &str,
        body: &[u8],
    ) -> Result<Option<TagChange>, ApiError> {
        Ok(match method {
            "POST" => Some(TagChange::Add(parse_body::<TagResourceRequest>(body)?.tags)),
            "DELETE" => Some(TagChange::Remove(
                query_pairs(query)
                    .into_iter()
                    .filter(|(n, _)| n == "tagKeys")
                    .map(|(_, v)| v)
                    .collect(),
            )),
            _ => None,
        })
    }

    pub(crate) fn apply(&self, tags: &mut BTreeMap<String, String>) -> Result<(), ApiError> {
        match self {
            TagChange::Add(added) => {
                let mut updated = tags.clone();
                updated.extend(added.clone());
                check_tags(&updated)?;
                *tags = updated;
            }
            TagChange::Remove(keys) => {
                for key in keys {
                    tags.remove(key);
                }
            }
        }
        Ok(())
    }
}

/// ListTagsForResource (GET), TagResource (POST) and UntagResource (DELETE) on a ledger or
/// table ARN. Changes are persisted in the ledger's `control.json` before the reply.
fn tags_operation(
    context: &Context<'_>,
    method: &str,
    arn: &str,
    query: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let target = tag_target(context, arn)?;
    let (name, table) = match &target {
        TagTarget::Ledger(name) => (name.as_str(), None),
        TagTarget::Table { ledger, table_id } => (
            ledger.as_str(),
            Some((table_id.as_str(), table_tags(context, ledger, table_id)?)),
        ),
    };
    let change = match method {
        "GET" => {
            let tags = match table {
                Some((_, tags)) => tags,
                None => context.registry.get(name)?.1.tags,
            };
            return Ok((200, json!({ "Tags": tags })));
        }
        _ => TagChange::of_request(method, query, body)?
            .ok_or_else(|| ApiError::new(ErrorKind::UnknownOperation, "No such tag operation"))?,
    };
    context.registry.update(name, |control| match &table {
        None => change.apply(&mut control.tags),
        Some((table_id, current)) => change.apply(
            control
                .table_tags
                .entry((*table_id).to_string())
                .or_insert_with(|| current.clone()),
        ),
    })?;
    Ok((200, json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ServerLimits;
    use std::sync::Arc;

    fn run(
        registry: &Registry,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, Value), ApiError> {
        let sessions = Sessions::new(ServerLimits::default(), Arc::default());
        let exports = exports::Exports::open(registry);
        let context = Context {
            registry,
            sessions: &sessions,
            exports: &exports,
            region: "us-east-1",
            account_id: "000000000000",
        };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        handle(
            &context,
            &ControlRequest {
                method,
                path,
                query,
                body: body.as_bytes(),
            },
        )
    }

    #[test]
    fn routes_reject_unknown_operations_and_exports() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Default::default()).unwrap();
        let error = run(&registry, "PUT", "/ledgers/x/nothing", "").unwrap_err();
        assert_eq!(error.kind, ErrorKind::UnknownOperation);
        // Streams are routed by the server before this module (see `crate::streams`).
        let error = run(
            &registry,
            "POST",
            "/ledgers/x/journal-kinesis-streams",
            "{}",
        )
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::UnknownOperation);
        let error = run(&registry, "POST", "/ledgers/x/journal-s3-exports", "{}").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidParameter);
        let error = run(&registry, "GET", "/ledgers/missing", "").unwrap_err();
        assert_eq!(error.kind, ErrorKind::ResourceNotFound);
        let error = run(
            &registry,
            "POST",
            "/ledgers",
            r#"{"Name":"--","PermissionsMode":"STANDARD"}"#,
        );
        assert_eq!(error.unwrap_err().kind, ErrorKind::InvalidParameter);
        let error = run(
            &registry,
            "POST",
            "/ledgers",
            r#"{"Name":"a","PermissionsMode":"NONE"}"#,
        );
        assert_eq!(error.unwrap_err().kind, ErrorKind::InvalidParameter);
        let error = run(&registry, "GET", "/tags/arn%3Aaws%3As3%3A%3A%3Ab", "").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidParameter);
        let (status, body) = run(&registry, "GET", "/ledgers?max_results=5", "").unwrap();
        assert_eq!((status, body), (200, json!({"Ledgers": []})));
        assert!(run(&registry, "GET", "/ledgers?max_results=0", "").is_err());
        assert!(run(&registry, "GET", "/ledgers?next_token=zzzz", "").is_err());
    }

    #[test]
    fn tag_targets_are_ledgers_or_tables_of_this_server() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Default::default()).unwrap();
        let sessions = Sessions::new(ServerLimits::default(), Arc::default());
        let exports = exports::Exports::open(&registry);
        let context = Context {
            registry: &registry,
            sessions: &sessions,
            exports: &exports,
            region: "us-east-1",
            account_id: "000000000000",
        };
        let prefix = "arn:aws:qldb:us-east-1:000000000000:ledger/";
        assert_eq!(
            tag_target(&context, &format!("{prefix}books")).unwrap(),
            TagTarget::Ledger("books".into())
        );
        assert_eq!(
            tag_target(
                &context,
                &format!("{prefix}books/table/5PLf9SXwndd63lPaSIa0O6")
            )
            .unwrap(),
            TagTarget::Table {
                ledger: "books".into(),
                table_id: "5PLf9SXwndd63lPaSIa0O6".into()
            }
        );
        for bad in [
            format!("{prefix}books/table/"),
            format!("{prefix}books/table/a/b"),
            format!("{prefix}books/stream/x"),
            "arn:aws:qldb:eu-west-1:000000000000:ledger/books".to_string(),
        ] {
            let error = tag_target(&context, &bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidParameter, "{bad}");
        }
    }

    #[test]
    fn ledgers_claim_no_encryption_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Default::default()).unwrap();
        let body = r#"{"Name":"plain","PermissionsMode":"STANDARD","KmsKey":"my-key"}"#;
        let (_, created) = run(&registry, "POST", "/ledgers", body).unwrap();
        let (_, described) = run(&registry, "GET", "/ledgers/plain", "").unwrap();
        let (_, updated) = run(&registry, "PATCH", "/ledgers/plain", r#"{"KmsKey":"k2"}"#).unwrap();
        for reply in [&created, &described, &updated] {
            assert_eq!(reply["Name"], "plain");
            assert!(reply.get("EncryptionDescription").is_none(), "{reply}");
            assert!(reply.get("KmsKeyArn").is_none(), "{reply}");
        }
    }

    #[test]
    fn next_tokens_round_trip() {
        let token = encode_next_token("my-ledger");
        assert!(token.len() >= 4);
        assert_eq!(decode_next_token(&token).unwrap(), "my-ledger");
    }

    #[test]
    fn control_paths() {
        assert!(is_control_path("/ledgers"));
        assert!(is_control_path("/ledgers/x/digest"));
        assert!(is_control_path("/tags/arn"));
        assert!(!is_control_path("/"));
        assert!(!is_control_path("/ledgersx"));
    }
}
