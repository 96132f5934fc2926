//! Re-verifies an export read back from storage: every object the completed manifest lists,
//! in order, each block's hashes (quill-verify, QLDB's rules) and the hash chain between them.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ion_rs::Element;
use quill_verify::{dot, merkle_root, Hash};
use serde_json::Value as Json;

use crate::error::{ExportError, Result};

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedExport {
    /// The completed manifest.
    pub manifest: PathBuf,
    /// Data objects read.
    pub objects: usize,
    /// Blocks verified.
    pub blocks: u64,
    /// Sequence numbers of the first and last block.
    pub range: Option<(u64, u64)>,
}

fn bad(detail: impl Into<String>) -> ExportError {
    ExportError::Verification(detail.into())
}

/// The `*.completed.manifest` files under `root`, sorted.
pub fn completed_manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(".completed.manifest") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// JSON manifests open with `{"`; Ion text ones with `{keys`, Ion binary with its marker.
pub(crate) fn is_json(bytes: &[u8]) -> bool {
    let mut visible = bytes.iter().filter(|b| !b.is_ascii_whitespace());
    visible.next() == Some(&b'{') && visible.next() == Some(&b'"')
}

/// One block's identity and chain fields, whatever the format.
struct Link {
    sequence_no: u64,
    hash: Hash,
    previous: Option<Hash>,
}

fn ion_link(block: &Element) -> Result<Link> {
    let hash = quill_verify::verify_block(block).map_err(|e| bad(e.to_string()))?;
    let fields = block
        .as_struct()
        .ok_or_else(|| bad("a block is not a struct"))?;
    let sequence_no = fields
        .get("blockAddress")
        .and_then(Element::as_struct)
        .and_then(|a| a.get("sequenceNo"))
        .and_then(Element::as_i64)
        .ok_or_else(|| bad("a block has no blockAddress.sequenceNo"))?;
    let previous = match fields.get("previousBlockHash").and_then(Element::as_blob) {
        Some(bytes) => Some(Hash(
            bytes
                .try_into()
                .map_err(|_| bad("previousBlockHash is not 32 bytes"))?,
        )),
        None => None,
    };
    Ok(Link {
        sequence_no: sequence_no as u64,
        hash,
        previous,
    })
}

fn json_hash(value: &Json, name: &str) -> Result<Hash> {
    let text = value
        .as_str()
        .ok_or_else(|| bad(format!("{name} is not a base64 string")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| bad(format!("{name} is not base64")))?;
    Ok(Hash(
        bytes
            .try_into()
            .map_err(|_| bad(format!("{name} is not 32 bytes")))?,
    ))
}

/// JSON Lines lose Ion's types, so revision and `transactionInfo` hashes cannot be recomputed;
/// what can is checked: `entriesHash` is the Merkle root of `entriesHashList`, and `blockHash`
/// is `dot(entriesHash, previousBlockHash)`.
fn json_link(block: &Json) -> Result<Link> {
    let list: Vec<Hash> = block["entriesHashList"]
        .as_array()
        .ok_or_else(|| bad("a block has no entriesHashList"))?
        .iter()
        .map(|h| json_hash(h, "entriesHashList"))
        .collect::<Result<_>>()?;
    let entries = json_hash(&block["entriesHash"], "entriesHash")?;
    if merkle_root(&list) != Some(entries) {
        return Err(bad("entriesHash is not the root of entriesHashList"));
    }
    let previous = match &block["previousBlockHash"] {
        Json::Null => None,
        value => Some(json_hash(value, "previousBlockHash")?),
    };
    let hash = json_hash(&block["blockHash"], "blockHash")?;
    if hash != previous.map_or(entries, |p| dot(&entries, &p)) {
        return Err(bad("blockHash is not dot(entriesHash, previousBlockHash)"));
    }
    let sequence_no = block["blockAddress"]["sequenceNo"]
        .as_u64()
        .ok_or_else(|| bad("a block has no blockAddress.sequenceNo"))?;
    Ok(Link {
        sequence_no,
        hash,
        previous,
    })
}

/// The `first-last` range a data object's name claims (`…/{strandId}.{first}-{last}.ext`).
pub(crate) fn claimed_range(key: &str) -> Result<(u64, u64)> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let range = name
        .split('.')
        .nth(1)
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    range.ok_or_else(|| bad(format!("{key} is not named strandId.first-last.ext")))
}

/// Verifies the export whose completed manifest is `manifest`, its keys relative to `root`
/// (the bucket's root, or the directory given to `quill export --to`).
pub fn verify_export(root: &Path, manifest: &Path) -> Result<VerifiedExport> {
    let bytes = fs::read(manifest)?;
    let json = is_json(&bytes);
    let keys: Vec<String> = if json {
        let value: Json = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        value["keys"]
            .as_array()
            .ok_or_else(|| bad("the manifest has no keys"))?
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("a key is not text"))
            })
            .collect::<Result<_>>()?
    } else {
        let value = Element::read_one(bytes)?;
        value
            .as_struct()
            .and_then(|s| s.get("keys"))
            .and_then(Element::as_sequence)
            .ok_or_else(|| bad("the manifest has no keys"))?
            .elements()
            .map(|k| {
                k.as_text()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("a key is not text"))
            })
            .collect::<Result<_>>()?
    };
    let mut verified = VerifiedExport {
        manifest: manifest.to_owned(),
        objects: keys.len(),
        blocks: 0,
        range: None,
    };
    let mut last: Option<Link> = None;
    for key in &keys {
        let body = fs::read(root.join(key))?;
        let links: Vec<Link> = if json {
            std::str::from_utf8(&body)
                .map_err(|_| bad(format!("{key} is not UTF-8")))?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|line| {
                    let block: Json =
                        serde_json::from_str(line).map_err(|e| bad(format!("{key}: {e}")))?;
                    json_link(&block)
                })
                .collect::<Result<_>>()?
        } else {
            Element::read_all(body)?
                .iter()
                .map(ion_link)
                .collect::<Result<_>>()?
        };
        let (first, final_seq) = claimed_range(key)?;
        let actual = (
            links.first().map(|l| l.sequence_no),
            links.last().map(|l| l.sequence_no),
        );
        if actual != (Some(first), Some(final_seq)) {
            return Err(bad(format!(
                "{key} holds blocks {actual:?}, not {first}-{final_seq}"
            )));
        }
        for link in links {
            if let Some(previous) = &last {
                if link.sequence_no != previous.sequence_no + 1 {
                    return Err(bad(format!(
                        "block {} follows block {}",
                        link.sequence_no, previous.sequence_no
                    )));
                }
                if link.previous != Some(previous.hash) {
                    return Err(bad(format!(
                        "block {}'s previousBlockHash is not block {}'s hash",
                        link.sequence_no, previous.sequence_no
                    )));
                }
            }
            verified.blocks += 1;
            verified.range = Some((
                verified.range.map_or(link.sequence_no, |r| r.0),
                link.sequence_no,
            ));
            last = Some(link);
        }
    }
    Ok(verified)
}
