//! The verification rules against every vector made with the real cojson
//! 0.20.19 code (`tests/data/vectors/`): IDs, canonical transactions, the
//! BLAKE3 chain, Ed25519 signatures, signer resolution, tampered batches.
//! (Engine replays of the recorded exchanges live in `src/sync/tests.rs`.)

mod common;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use maia_sync::verify::{
    Author, CanonicalTx, ChainState, Header, SigCache, VerifyError, canonicalize_tx,
    decode_signature, decode_signer, parse_session_id, short_hash_of_sessions,
};
use serde_json::Value;

fn vector(name: &str) -> Value {
    common::read_json(&common::data_dir().join("vectors").join(name))
}

/// The canonical forms of a JSON array of transactions (the first error).
fn canonical_txs(txs: &Value) -> Result<Vec<CanonicalTx>, VerifyError> {
    txs.as_array()
        .unwrap()
        .iter()
        .map(canonicalize_tx)
        .collect()
}

/// Verifies `txs` as one batch signed with `signature` after `chain`.
fn verify_after(
    chain: &ChainState,
    txs: &[CanonicalTx],
    signature: &Value,
    signer: &VerifyingKey,
) -> Result<ChainState, VerifyError> {
    chain.verify_batch(
        txs.iter().map(|t| &*t.json),
        signature.as_str().unwrap(),
        signer,
        &SigCache::default(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn primitives_keys_signatures_and_hashes() {
    let v = vector("primitives.json");
    // Signer secret → signer ID.
    let secret = bs58::decode(
        v["signer"]["signerSecret"]
            .as_str()
            .unwrap()
            .trim_start_matches("signerSecret_z"),
    )
    .into_vec()
    .unwrap();
    assert_eq!(hex(&secret), v["signer"]["signerSecretBytesHex"]);
    let key = SigningKey::from_bytes(&secret.try_into().unwrap());
    let signer_id = format!(
        "signer_z{}",
        bs58::encode(key.verifying_key().as_bytes()).into_string()
    );
    assert_eq!(signer_id, v["signer"]["signerID"]);
    let decoded = decode_signer(&signer_id).unwrap();
    assert_eq!(hex(decoded.as_bytes()), v["signer"]["signerIDBytesHex"]);
    // Signatures are over the signed bytes (a hash string in quotes).
    for s in v["signatures"].as_array().unwrap() {
        let bytes = s["signedBytesUtf8"].as_str().unwrap().as_bytes();
        let sig = decode_signature(s["signature"].as_str().unwrap()).unwrap();
        assert_eq!(hex(&sig.to_bytes()), s["signatureBytesHex"]);
        assert_eq!(
            decoded.verify(bytes, &sig).is_ok(),
            s["verifies"].as_bool().unwrap()
        );
        // Ed25519 is deterministic: we produce the same signature.
        assert_eq!(key.sign(bytes).to_bytes(), sig.to_bytes());
    }
    for b in v["blake3"].as_array().unwrap() {
        assert_eq!(
            hex(blake3::hash(b["inputUtf8"].as_str().unwrap().as_bytes()).as_bytes()),
            b["hashHex"]
        );
    }
    // shortHash of {a:1,b:2} (the same stable JSON as a sessions map).
    let sh = &v["shortHash"][0];
    assert_eq!(sh["stable"], "{\"a\":1,\"b\":2}");
    assert_eq!(
        short_hash_of_sessions([("b", 2), ("a", 1)]),
        sh["shortHash"].as_str().unwrap()
    );
    // Agent IDs split into their signer.
    let agent = v["agent"]["agentID"].as_str().unwrap();
    let sid = format!("{agent}_session_zTest");
    match parse_session_id(&sid) {
        (Author::Agent { signer }, false) => assert_eq!(signer, v["signer"]["signerID"]),
        other => panic!("agent session parsed as {other:?}"),
    }
}

#[test]
fn header_ids_and_priorities() {
    let v = vector("header-ids.json");
    for c in v["cases"].as_array().unwrap() {
        let note = c["note"].as_str().unwrap();
        let id = c["coValueId"].as_str().unwrap();
        assert_eq!(Header::id_of(&c["header"]).unwrap(), id, "{note}");
        let h = Header::verify(&c["header"], id).unwrap_or_else(|e| panic!("{note}: {e}"));
        assert_eq!(
            u64::from(h.priority),
            c["priority"].as_u64().unwrap(),
            "{note}"
        );
    }
    for c in v["negativeCases"].as_array().unwrap() {
        let note = c["note"].as_str().unwrap();
        let accepted = c["result"].as_str().unwrap().starts_with("accepted");
        let ours = Header::verify(&c["header"], c["claimedId"].as_str().unwrap());
        assert_eq!(ours.is_ok(), accepted, "{note}: {ours:?}");
    }
}

/// Feeds a session file's transactions one by one through the chain and
/// checks each intermediate signature and the canonical form.
fn check_session_file(name: &str) {
    let v = vector(name);
    let signer = decode_signer(v["signerID"].as_str().unwrap()).unwrap();
    let mut chain = ChainState::new();
    for t in v["transactions"].as_array().unwrap() {
        let canon = canonicalize_tx(&t["transaction"]).unwrap();
        let canon_value: Value = serde_json::from_str(&canon.json).unwrap();
        assert_eq!(canon_value, t["canonicalJson"], "{name} tx {}", t["index"]);
        chain = verify_after(&chain, &[canon], &t["signatureAfter"], &signer)
            .unwrap_or_else(|e| panic!("{name} tx {}: {e}", t["index"]));
        assert_eq!(chain.hash_string(), t["runningHashAfter"].as_str().unwrap());
    }
    // The whole content message verifies as one batch.
    let id = v["coValueId"].as_str().unwrap();
    Header::verify(&v["contentMessage"]["header"], id).unwrap();
    let entry = &v["contentMessage"]["new"][v["sessionID"].as_str().unwrap()];
    let txs = canonical_txs(&entry["newTransactions"]).unwrap();
    let ok = verify_after(&ChainState::new(), &txs, &entry["lastSignature"], &signer).is_ok();
    assert_eq!(
        ok,
        v["wholeBatchWithLastSignatureAcceptedByCojson"]
            .as_bool()
            .unwrap()
    );
}

#[test]
fn trusting_session_chain() {
    check_session_file("session-trusting.json");
}

#[test]
fn private_session_chain() {
    check_session_file("session-private.json");
}

#[test]
fn tampered_batches_get_cojsons_verdict() {
    let v = vector("tampered.json");
    for c in v["cases"].as_array().unwrap() {
        let note = c["note"].as_str().unwrap();
        // The key cojson verified with (the "wrong signer" case uses another).
        let signer = decode_signer(c["signerID"].as_str().unwrap()).unwrap();
        let mut chain = ChainState::new();
        if let Some(prefix) = c["alreadyKnownPrefix"].as_object() {
            let txs = canonical_txs(&prefix["txs"]).unwrap();
            chain = verify_after(&chain, &txs, &prefix["sig"], &signer)
                .unwrap_or_else(|e| panic!("{note}: prefix: {e}"));
        }
        let result = canonical_txs(&c["newTransactions"])
            .and_then(|txs| verify_after(&chain, &txs, &c["lastSignature"], &signer).map(|_| txs));
        let accepted = c["result"].as_str().unwrap() == "accepted";
        assert_eq!(result.is_ok(), accepted, "{note}: {result:?}");
        if let (Ok(txs), Some(stored)) = (&result, c["storedCanonicalAfter"].as_array()) {
            let ours: Vec<Value> = txs
                .iter()
                .map(|t| serde_json::from_str(&t.json).unwrap())
                .collect();
            let skip = stored.len() - ours.len();
            assert_eq!(&ours[..], &stored[skip..], "{note}: stored canonical form");
        }
    }
}

#[test]
fn account_sessions_resolve_to_the_initial_admin() {
    let v = vector("account-creation.json");
    let account_id = v["accountID"].as_str().unwrap();
    let account = Header::verify(&v["account"]["header"], account_id).unwrap();
    let account_signer = account
        .account_signer
        .expect("account header names an agent");
    for name in ["account", "profileGroup", "profile"] {
        Header::verify(&v[name]["header"], v[name]["id"].as_str().unwrap()).unwrap();
        for (sid, s) in v[name]["sessions"].as_object().unwrap() {
            let key = match parse_session_id(sid).0 {
                Author::Agent { signer } => {
                    assert_eq!(s["authorKind"], "agent");
                    decode_signer(signer).unwrap()
                }
                Author::Account(acc) => {
                    assert_eq!(s["authorKind"], "account");
                    assert_eq!(acc.as_str(), account_id);
                    account_signer
                }
                Author::Invalid(a) => panic!("invalid author {a}"),
            };
            assert_eq!(
                key,
                decode_signer(s["signerID"].as_str().unwrap()).unwrap(),
                "{name}"
            );
            // And the content message's signature verifies with that key.
            let entry = &v[name]["contentMessages"][0]["new"][sid];
            let txs = canonical_txs(&entry["newTransactions"]).unwrap();
            verify_after(&ChainState::new(), &txs, &entry["lastSignature"], &key)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
