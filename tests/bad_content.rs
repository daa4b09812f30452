//! Bad sync messages over real sockets: each gets the reply docs/protocol.md
//! names (or none), a clear log line, and nothing else changes: another
//! client in the same test keeps syncing throughout.

mod common;

use common::{WsClient, data_dir, read_json, start_server};
use serde_json::{Value, json};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(400);

fn vector(name: &str) -> Value {
    read_json(&data_dir().join("vectors").join(name))
}

fn content(v: &Value, case: &Value, after: u64, with_header: bool) -> Value {
    let mut m = json!({
        "action": "content", "id": v["coValueId"], "priority": 3,
        "new": { v["sessionID"].as_str().unwrap(): {
            "after": after, "newTransactions": case["newTransactions"], "lastSignature": case["lastSignature"]
        }}
    });
    if with_header {
        m["header"] = v["header"].clone();
    }
    m
}

fn case<'a>(v: &'a Value, note_prefix: &str) -> &'a Value {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["note"].as_str().unwrap().starts_with(note_prefix))
        .unwrap_or_else(|| panic!("no tampered case {note_prefix:?}"))
}

/// A good client uploads one of the account-creation CoValues and a
/// watcher subscribed to it receives it: proof the server still serves.
fn good_client_syncs(good: &mut WsClient, watcher: &mut WsClient, acc: &Value, name: &str) {
    let msg = &acc[name]["contentMessages"][0];
    good.send(msg);
    let ack = good.recv();
    assert_eq!(ack["action"], "known", "{name}: {ack}");
    assert_eq!(
        ack["sessions"], acc[name]["knownState"]["sessions"],
        "{name}"
    );
    let fwd = watcher.recv();
    assert_eq!(fwd["action"], "content", "{name} forwarded: {fwd}");
    assert_eq!(fwd["id"], acc[name]["id"]);
}

#[test]
fn bad_messages_are_rejected_while_others_keep_syncing() {
    let server = start_server(&["--in-memory"]);
    let t = vector("tampered.json");
    let acc = vector("account-creation.json");
    let id = t["coValueId"].as_str().unwrap();

    let mut good = WsClient::connect(server.addr);
    let mut watcher = WsClient::connect(server.addr);
    for name in ["account", "profileGroup", "profile"] {
        watcher.send(&json!({"action":"load","id":acc[name]["id"],"header":false,"sessions":{}}));
        assert_eq!(watcher.recv()["header"], false, "{name} not there yet");
    }

    let mut bad = WsClient::connect(server.addr);
    // Not JSON: the whole frame is dropped, no reply.
    bad.send_text("{\"action\":\"load\",\"id\":\"co_zX\"}\n{not json");
    assert_eq!(bad.recv_within(QUIET), None);
    assert!(
        server
            .logs
            .wait_for("invalid JSON", Duration::from_secs(5))
            .is_some()
    );

    // A header that does not hash to the id: dropped, no reply.
    let mut wrong = content(&t, case(&t, "valid: whole"), 0, true);
    wrong["header"]["uniqueness"] = json!("someone else");
    bad.send(&wrong);
    assert_eq!(bad.recv_within(QUIET), None);
    assert!(
        server
            .logs
            .wait_for("CoValue ID mismatch", Duration::from_secs(5))
            .is_some()
    );

    good_client_syncs(&mut good, &mut watcher, &acc, "account");

    // Content without a header for an unknown CoValue: correction.
    bad.send(&content(&t, case(&t, "valid: whole"), 0, false));
    assert_eq!(
        bad.recv(),
        json!({"action":"known","isCorrection":true,"id":id,"header":false,"sessions":{}})
    );

    // A forged signature (tampered changes): acked with nothing accepted.
    bad.send(&content(&t, case(&t, "tampered changes"), 0, true));
    assert_eq!(
        bad.recv(),
        json!({"action":"known","id":id,"header":true,"sessions":{}})
    );
    assert!(
        server
            .logs
            .wait_for("signature does not match", Duration::from_secs(5))
            .is_some()
    );
    // From now on this peer's content for the CoValue is ignored.
    bad.send(&content(&t, case(&t, "valid: whole"), 0, false));
    assert_eq!(bad.recv_within(QUIET), None, "errored for this peer");

    good_client_syncs(&mut good, &mut watcher, &acc, "profileGroup");

    // A broken hash chain (reordered transactions) on another connection.
    let mut bad2 = WsClient::connect(server.addr);
    bad2.send(&content(&t, case(&t, "transactions reordered"), 0, false));
    assert_eq!(
        bad2.recv(),
        json!({"action":"known","id":id,"header":true,"sessions":{}})
    );
    // A gap: after=5 when the server holds 0 → correction with its state.
    let mut bad3 = WsClient::connect(server.addr);
    bad3.send(&content(&t, case(&t, "valid: whole"), 5, false));
    assert_eq!(
        bad3.recv(),
        json!({"action":"known","isCorrection":true,"id":id,"header":true,"sessions":{}})
    );
    // The valid batch from a clean connection is accepted.
    bad3.send(&content(&t, case(&t, "valid: whole"), 0, false));
    let sid = t["sessionID"].as_str().unwrap();
    assert_eq!(
        bad3.recv(),
        json!({"action":"known","id":id,"header":true,"sessions":{sid:3}})
    );

    good_client_syncs(&mut good, &mut watcher, &acc, "profile");
    // The forger never got the valid content forwarded (errored for it)…
    assert_eq!(bad.recv_within(QUIET), None);
    // …and the server is still alive for everyone.
    let mut late = WsClient::connect(server.addr);
    late.send(&json!({"action":"load","id":id,"header":false,"sessions":{}}));
    let got = late.recv();
    assert_eq!(
        got["new"][sid]["newTransactions"].as_array().unwrap().len(),
        3
    );
}
