//! `quill consistency`: proves that a ledger's digest extends an older digest (for example one
//! QLDB issued before the ledger was exported and imported), embedded on a data directory or
//! through a server's `GetConsistencyProof`, and checks the proof locally with
//! `quill_verify::verify_digest_consistency`.

use anyhow::{bail, Context as _};
use hyper::Method;
use ion_rs::Element;
use quill_verify::Hash;
use serde_json::{json, Value};

use crate::args::{parse_block_address, ConsistencyArgs};
use crate::http::{Endpoint, Signer};
use crate::render::pretty;
use crate::store::LedgerTarget;
use crate::CorruptionFound;

/// A tip given as `{strandId:"…",sequenceNo:N}` or as a bare N.
struct Tip {
    strand_id: Option<String>,
    sequence_no: u64,
}

fn parse_tip(text: &str, flag: &str) -> anyhow::Result<Tip> {
    if let Ok(sequence_no) = text.trim().parse::<u64>() {
        return Ok(Tip {
            strand_id: None,
            sequence_no,
        });
    }
    let address = parse_block_address(text).with_context(|| format!("{flag} {text:?}"))?;
    Ok(Tip {
        strand_id: Some(address.strand_id),
        sequence_no: address.sequence_no,
    })
}

/// What the proof links: the older digest (given), the newer one (from the ledger).
struct Answer {
    strand_id: String,
    digest: Hash,
    tip: u64,
    proof: Vec<Hash>,
}

/// Runs the command: prints both digests and the proof as Ion, then `verified`; a proof that
/// does not verify is [`CorruptionFound`].
pub fn run(args: ConsistencyArgs) -> anyhow::Result<()> {
    quill_ledger::validate_ledger_name(&args.ledger)?;
    let from_digest = Hash::from_base64(args.from_digest.trim())
        .context("--from-digest must be a base64 SHA-256 digest (32 bytes)")?;
    let from = parse_tip(&args.from_tip, "--from-tip")?;
    let to = args
        .to_tip
        .as_deref()
        .map(|text| parse_tip(text, "--to-tip"))
        .transpose()?;
    let answer = match &args.endpoint {
        Some(url) => {
            let endpoint = Endpoint::parse(url, args.ca_cert.as_deref())?;
            ask_server(&endpoint, &args, &from, to.as_ref())?
        }
        None => prove_embedded(
            LedgerTarget {
                store: args.store.clone().check()?,
                ledger: args.ledger.clone(),
            },
            &from,
            to.as_ref(),
        )?,
    };
    for tip in [Some(&from), to.as_ref()].into_iter().flatten() {
        if let Some(strand) = &tip.strand_id {
            if *strand != answer.strand_id {
                bail!(
                    "tip strandId {strand} is not ledger {}'s strand {}",
                    args.ledger,
                    answer.strand_id
                );
            }
        }
    }
    let address = |sequence_no: u64| {
        Element::from(
            Element::struct_builder()
                .with_field("strandId", Element::string(answer.strand_id.as_str()))
                .with_field("sequenceNo", Element::int(sequence_no as i64))
                .build(),
        )
    };
    let report: Element = Element::struct_builder()
        .with_field("fromDigest", Element::blob(from_digest.as_bytes()))
        .with_field("fromDigestTipAddress", address(from.sequence_no))
        .with_field("digest", Element::blob(answer.digest.as_bytes()))
        .with_field("digestTipAddress", address(answer.tip))
        .with_field(
            "proof",
            Element::from(
                Element::sequence_builder()
                    .push_all(answer.proof.iter().map(|h| Element::blob(h.as_bytes())))
                    .build_list(),
            ),
        )
        .build()
        .into();
    println!("{}", pretty(&report));
    quill_verify::verify_digest_consistency(
        from.sequence_no,
        &from_digest,
        answer.tip,
        &answer.digest,
        &answer.proof,
    )
    .map_err(|error| {
        CorruptionFound(format!(
            "the digest at sequenceNo {} does not extend the given digest at sequenceNo {}: \
             {error}",
            answer.tip, from.sequence_no
        ))
    })?;
    println!("verified");
    Ok(())
}

fn prove_embedded(target: LedgerTarget, from: &Tip, to: Option<&Tip>) -> anyhow::Result<Answer> {
    let ledger = target.open()?;
    let digest = match to {
        Some(tip) => ledger.digest_at(tip.sequence_no)?,
        None => ledger.digest(),
    };
    if from.sequence_no > digest.tip.sequence_no {
        bail!(
            "--from-tip {} is after the digest tip {}",
            from.sequence_no,
            digest.tip.sequence_no
        );
    }
    let proof = ledger.consistency_proof(from.sequence_no, digest.tip.sequence_no)?;
    Ok(Answer {
        strand_id: ledger.strand_id().to_owned(),
        digest: digest.digest,
        tip: digest.tip.sequence_no,
        proof,
    })
}

fn text_at<'a>(reply: &'a Value, path: &[&str]) -> anyhow::Result<&'a str> {
    path.iter()
        .try_fold(reply, |value, key| value.get(*key))
        .and_then(Value::as_str)
        .with_context(|| format!("the server's reply has no {}", path.join(".")))
}

fn ask_server(
    endpoint: &Endpoint,
    args: &ConsistencyArgs,
    from: &Tip,
    to: Option<&Tip>,
) -> anyhow::Result<Answer> {
    // A bare sequence number needs the strand id: GetDigest gives it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signer = Signer::from_env(&args.region);
    let ledger_path = format!("/ledgers/{}", args.ledger);
    let post = |path: String, body: Value| -> anyhow::Result<Value> {
        runtime.block_on(async {
            let mut connection = endpoint.connect().await?;
            let (status, bytes) = connection
                .request(
                    Method::POST,
                    &path,
                    &[("content-type", "application/json")],
                    serde_json::to_vec(&body)?,
                    signer.as_ref(),
                )
                .await?;
            let reply: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{path}: the reply is not JSON (status {status})"))?;
            if status != 200 {
                bail!("{path}: status {status}: {reply}");
            }
            Ok(reply)
        })
    };
    let current = post(format!("{ledger_path}/digest"), json!({}))?;
    let tip_text = text_at(&current, &["DigestTipAddress", "IonText"])?;
    let strand_id = parse_block_address(tip_text)?.strand_id;
    let address = |sequence_no: u64| json!({"IonText": format!("{{strandId:\"{strand_id}\",sequenceNo:{sequence_no}}}")});
    let mut request = json!({"FromDigestTipAddress": address(from.sequence_no)});
    if let Some(to) = to {
        request["DigestTipAddress"] = address(to.sequence_no);
    }
    let reply = post(format!("{ledger_path}/consistency-proof"), request)?;
    let digest = Hash::from_base64(text_at(&reply, &["Digest"])?)
        .context("the server's Digest is not a base64 hash")?;
    let tip = parse_block_address(text_at(&reply, &["DigestTipAddress", "IonText"])?)?;
    let proof = quill_verify::parse_proof(text_at(&reply, &["Proof", "IonText"])?)?;
    Ok(Answer {
        strand_id,
        digest,
        tip: tip.sequence_no,
        proof,
    })
}
