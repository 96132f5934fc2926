//! Control-plane operations: ledger lifecycle, tags, digests and proofs.

mod support;

use std::collections::BTreeMap;

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_server::registry::{ControlRecord, CONTROL_FILE};
use quill_verify::{
    parse_proof, verify_block, verify_digest_consistency, verify_proof, verify_revision, Hash,
};
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn ledger_lifecycle_with_deletion_protection() {
    let server = start(|_| {}).await;
    let address = server.address;
    let reply = create_ledger(address, "books").await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let created = reply.json();
    assert_eq!(
        created["Arn"],
        "arn:aws:qldb:us-east-1:000000000000:ledger/books"
    );
    assert_eq!(created["DeletionProtection"], true);
    assert_eq!(created["State"], "ACTIVE");
    assert!(created["CreationDateTime"].is_number());

    assert_eq!(
        create_ledger(address, "books").await.error(),
        "ResourceAlreadyExistsException"
    );
    assert_eq!(
        create_ledger(address, "bad--name").await.error(),
        "InvalidParameterException"
    );
    for name in ["cars", "dogs"] {
        assert_eq!(create_ledger(address, name).await.status, 200);
    }

    let reply = control(address, "GET", "/ledgers/books", Value::Null).await;
    assert_eq!(reply.json()["PermissionsMode"], "STANDARD");
    let reply = control(address, "GET", "/ledgers/nope", Value::Null).await;
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (404, "ResourceNotFoundException")
    );

    let first = control(address, "GET", "/ledgers?max_results=2", Value::Null)
        .await
        .json();
    let names: Vec<&str> = first["Ledgers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["books", "cars"]);
    let next = first["NextToken"].as_str().unwrap();
    let second = control(
        address,
        "GET",
        &format!("/ledgers?max_results=2&next_token={next}"),
        Value::Null,
    )
    .await
    .json();
    assert_eq!(second["Ledgers"][0]["Name"], "dogs");
    assert!(second.get("NextToken").is_none());

    let reply = control(address, "DELETE", "/ledgers/books", Value::Null).await;
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (412, "ResourcePreconditionNotMetException")
    );
    let reply = control(
        address,
        "PATCH",
        "/ledgers/books",
        json!({"DeletionProtection": false}),
    )
    .await;
    assert_eq!(reply.json()["DeletionProtection"], false);
    let reply = control(
        address,
        "PATCH",
        "/ledgers/books/permissions-mode",
        json!({"PermissionsMode": "ALLOW_ALL"}),
    )
    .await;
    assert_eq!(reply.json()["PermissionsMode"], "ALLOW_ALL");

    let arn = "/tags/arn%3Aaws%3Aqldb%3Aus-east-1%3A000000000000%3Aledger%2Fbooks";
    assert_eq!(
        control(
            address,
            "POST",
            arn,
            json!({"Tags": {"team": "a", "env": "dev"}})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        control(
            address,
            "DELETE",
            &format!("{arn}?tagKeys=env"),
            Value::Null
        )
        .await
        .status,
        200
    );
    assert_eq!(
        control(address, "GET", arn, Value::Null).await.json()["Tags"],
        json!({"team": "a"})
    );

    let token = start_session(address, "books").await;
    assert_eq!(
        control(address, "DELETE", "/ledgers/books", Value::Null)
            .await
            .status,
        200
    );
    assert!(!server.dir.path().join("ledgers/books").exists());
    let reply = send(
        address,
        &json!({"SessionToken": token, "StartTransaction": {}}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidSessionException");
    let reply = control(
        address,
        "POST",
        "/ledgers/books/journal-kinesis-streams",
        json!({}),
    )
    .await;
    assert_eq!(reply.error(), "ResourceNotFoundException");
    let reply = control(
        address,
        "POST",
        "/ledgers/books/journal-s3-exports",
        json!({}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidParameterException");
    server.shutdown().await;
}

/// Writes a ledger with one document before the server starts, as `quill` would find it.
fn prepare_ledger(dir: &std::path::Path) -> (String, u64) {
    let ledger_dir = dir.join("ledgers/books");
    let ledger = Ledger::create(&ledger_dir, "books", LedgerOptions::default()).unwrap();
    ledger.transact(|tx| tx.create_table("Book", None)).unwrap();
    let mut tx = ledger.begin().unwrap();
    let id = tx
        .insert("Book", Element::read_one(r#"{title: "Ion"}"#).unwrap())
        .unwrap();
    let receipt = tx.commit().unwrap();
    let sequence_no = receipt.block_address.unwrap().sequence_no;
    drop(ledger);
    let control = ControlRecord {
        name: "books".into(),
        state: "ACTIVE".into(),
        creation_date_time: 1_700_000_000.0,
        permissions_mode: "STANDARD".into(),
        deletion_protection: true,
        kms_key: "AWS_OWNED_KMS_KEY".into(),
        tags: BTreeMap::new(),
        table_tags: BTreeMap::new(),
    };
    std::fs::write(
        ledger_dir.join(CONTROL_FILE),
        serde_json::to_vec(&control).unwrap(),
    )
    .unwrap();
    (id, sequence_no)
}

#[tokio::test]
async fn digest_block_and_revision_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (document_id, sequence_no) = prepare_ledger(dir.path());
    let server = start_in(dir, |_| {}).await;
    let address = server.address;

    let digest_reply = control(address, "POST", "/ledgers/books/digest", json!({})).await;
    assert_eq!(digest_reply.status, 200, "{}", digest_reply.message());
    let digest = Hash::from_base64(digest_reply.json()["Digest"].as_str().unwrap()).unwrap();
    let tip = digest_reply.json()["DigestTipAddress"].clone();
    let tip_text = tip["IonText"].as_str().unwrap();
    let strand = Element::read_one(tip_text).unwrap();
    let strand = strand
        .as_struct()
        .unwrap()
        .get("strandId")
        .unwrap()
        .as_string()
        .unwrap()
        .to_string();
    let address_text = format!("{{strandId:\"{strand}\",sequenceNo:{sequence_no}}}");

    let reply = control(
        address,
        "POST",
        "/ledgers/books/block",
        json!({"BlockAddress": {"IonText": address_text}, "DigestTipAddress": tip}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let block = Element::read_one(reply.json()["Block"]["IonText"].as_str().unwrap()).unwrap();
    let proof = parse_proof(reply.json()["Proof"]["IonText"].as_str().unwrap()).unwrap();
    let block_hash = verify_block(&block).unwrap();
    verify_proof(&block_hash, &proof, &digest).unwrap();

    let reply = control(address, "POST", "/ledgers/books/revision", json!({
        "BlockAddress": {"IonText": address_text}, "DocumentId": document_id, "DigestTipAddress": tip})).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let revision =
        Element::read_one(reply.json()["Revision"]["IonText"].as_str().unwrap()).unwrap();
    let proof = parse_proof(reply.json()["Proof"]["IonText"].as_str().unwrap()).unwrap();
    verify_revision(&revision, &proof, &digest).unwrap();

    let reply = control(
        address,
        "POST",
        "/ledgers/books/block",
        json!({"BlockAddress": {"IonText": "{strandId:\"other\",sequenceNo:0}"}}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidParameterException");
    server.shutdown().await;
}

/// The ARN path of `ledger/books` plus `suffix`, percent-encoded as SDKs send it.
fn tags_path(suffix: &str) -> String {
    let arn = format!("arn:aws:qldb:us-east-1:000000000000:ledger/books{suffix}");
    format!("/tags/{}", arn.replace(':', "%3A").replace('/', "%2F"))
}

#[tokio::test]
async fn table_tags_come_from_create_table_and_tag_resource_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    prepare_ledger(dir.path());
    let table_id = {
        let ledger =
            Ledger::open(&dir.path().join("ledgers/books"), LedgerOptions::default()).unwrap();
        let tags = Element::read_one("{environment: \"production\"}").unwrap();
        ledger
            .transact(|tx| tx.create_table("Vehicle", Some(tags.clone())))
            .unwrap()
    };
    let mut server = start_in(dir, |_| {}).await;
    let address = server.address;
    let table = tags_path(&format!("/table/{table_id}"));
    let tags = |reply: Reply| reply.json()["Tags"].clone();

    // ListTagsForResource shows the tags given to CREATE TABLE ... WITH (aws_tags = …).
    let reply = control(address, "GET", &table, Value::Null).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    assert_eq!(tags(reply), json!({"environment": "production"}));

    let reply = control(address, "POST", &table, json!({"Tags": {"team": "dmv"}})).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let reply = control(
        address,
        "DELETE",
        &format!("{table}?tagKeys=environment"),
        Value::Null,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let reply = control(address, "GET", &table, Value::Null).await;
    assert_eq!(tags(reply), json!({"team": "dmv"}));
    // The ledger's own tags are separate.
    let reply = control(address, "GET", &tags_path(""), Value::Null).await;
    assert_eq!(tags(reply), json!({}));

    for (path, status, error) in [
        (tags_path("/table/NoSuchTable0000000000"), 404, "ResourceNotFoundException"),
        (
            format!("/tags/arn%3Aaws%3Aqldb%3Aus-east-1%3A000000000000%3Aledger%2Fnope%2Ftable%2F{table_id}"),
            404,
            "ResourceNotFoundException",
        ),
        (tags_path(&format!("/index/{table_id}")), 400, "InvalidParameterException"),
        (tags_path("/table/"), 400, "InvalidParameterException"),
    ] {
        for method in ["GET", "POST"] {
            let reply = control(address, method, &path, json!({"Tags": {"a": "b"}})).await;
            assert_eq!((reply.status, reply.error().as_str()), (status, error), "{method} {path}");
        }
    }

    // TagResource on a table is persisted (control.json), like the ledger's tags.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    server.shutdown().await;
    let server = start_in(dir, |_| {}).await;
    let reply = control(server.address, "GET", &table, Value::Null).await;
    assert_eq!(tags(reply), json!({"team": "dmv"}));
    server.shutdown().await;
}

/// GetConsistencyProof (a Quill extension): a digest saved earlier is proven to be a prefix of
/// the current digest, or of the digest at a given tip; bad tips are InvalidParameter.
#[tokio::test]
async fn consistency_proofs_link_an_old_digest_to_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    prepare_ledger(dir.path());
    let ledger_dir = dir.path().join("ledgers/books");
    let ledger = Ledger::open(&ledger_dir, LedgerOptions::default()).unwrap();
    let old = ledger.digest();
    for n in 0..5 {
        let data = Element::read_one(format!("{{n: {n}}}").as_bytes()).unwrap();
        ledger
            .transact(|tx| tx.insert("Book", data.clone()))
            .unwrap();
    }
    let middle = ledger.digest_at(old.tip.sequence_no + 2).unwrap();
    let current = ledger.digest();
    drop(ledger);
    let server = start_in(dir, |_| {}).await;
    let address = server.address;
    let tip_of = |sequence_no: u64| json!({"IonText": format!("{{strandId:\"{}\",sequenceNo:{sequence_no}}}", old.tip.strand_id)});

    let reply = control(
        address,
        "POST",
        "/ledgers/books/consistency-proof",
        json!({"FromDigestTipAddress": tip_of(old.tip.sequence_no)}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let body = reply.json();
    let digest = Hash::from_base64(body["Digest"].as_str().unwrap()).unwrap();
    assert_eq!(digest, current.digest);
    assert_eq!(body["DigestTipAddress"], tip_of(current.tip.sequence_no));
    let proof = parse_proof(body["Proof"]["IonText"].as_str().unwrap()).unwrap();
    verify_digest_consistency(
        old.tip.sequence_no,
        &old.digest,
        current.tip.sequence_no,
        &digest,
        &proof,
    )
    .unwrap();
    let mut forged = old.digest;
    forged.0[31] ^= 1;
    assert!(verify_digest_consistency(
        old.tip.sequence_no,
        &forged,
        current.tip.sequence_no,
        &digest,
        &proof
    )
    .is_err());

    let reply = control(
        address,
        "POST",
        "/ledgers/books/consistency-proof",
        json!({"FromDigestTipAddress": tip_of(old.tip.sequence_no),
               "DigestTipAddress": tip_of(middle.tip.sequence_no)}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let body = reply.json();
    assert_eq!(
        Hash::from_base64(body["Digest"].as_str().unwrap()).unwrap(),
        middle.digest
    );
    let proof = parse_proof(body["Proof"]["IonText"].as_str().unwrap()).unwrap();
    verify_digest_consistency(
        old.tip.sequence_no,
        &old.digest,
        middle.tip.sequence_no,
        &middle.digest,
        &proof,
    )
    .unwrap();

    for bad in [
        json!({"FromDigestTipAddress": tip_of(current.tip.sequence_no + 1)}),
        json!({"FromDigestTipAddress": tip_of(middle.tip.sequence_no + 1),
               "DigestTipAddress": tip_of(middle.tip.sequence_no)}),
        json!({"FromDigestTipAddress": {"IonText": "{strandId:\"other\",sequenceNo:0}"}}),
        json!({}),
    ] {
        let reply = control(
            address,
            "POST",
            "/ledgers/books/consistency-proof",
            bad.clone(),
        )
        .await;
        assert_ne!(reply.status, 200, "{bad}");
        assert!(
            ["InvalidParameterException", "SerializationException"]
                .contains(&reply.error().as_str()),
            "{bad}: {}",
            reply.error()
        );
    }
    server.shutdown().await;
}
