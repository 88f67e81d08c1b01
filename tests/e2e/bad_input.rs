//! Bad input never stops the worker and is never dropped: each case ends in
//! a failed result record and a dead letter naming the reason.

use serde_json::json;

use crate::harness::*;

#[test]
fn malformed_and_unroutable_messages_are_dead_lettered_and_the_worker_goes_on() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push_raw(&redis, "this is not json {");
    push_raw(&redis, r#"{"params": {"x": 1}}"#);
    push(
        &redis,
        &[
            json!({"id": "unknown-1", "task_type": "no_such_type", "reply_to": "replies", "params": {}}),
            json!({"id": "good-1", "task_type": "echo", "params": {"ok": true}}),
        ],
    );
    assert_ok(&run_burst(
        &redis,
        &plugins,
        &["--unknown-type-grace-ms", "0"],
    ));

    // The good task after the bad ones still ran.
    assert_eq!(result(&redis, "good-1").unwrap()["status"], "succeeded");

    let unknown = result(&redis, "unknown-1").unwrap();
    assert_eq!(unknown["status"], "failed");
    assert_eq!(unknown["error"]["kind"], "unknown_task_type");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_type")
    );
    let reply: Option<String> = redis::Commands::lpop(&mut redis.conn(), "replies", None).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply.unwrap()).unwrap(),
        unknown
    );

    let dead = dead_letters(&redis);
    assert_eq!(dead.len(), 3, "{dead:?}");
    let by_kind = |kind: &str| {
        dead.iter()
            .find(|d| d["error"]["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {dead:?}"))
            .clone()
    };
    assert_eq!(by_kind("malformed")["message"], "this is not json {");
    assert_eq!(
        by_kind("missing_task_type")["message"],
        r#"{"params": {"x": 1}}"#
    );
    let d = by_kind("unknown_task_type");
    assert_eq!(d["id"], "unknown-1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(d["message"].as_str().unwrap()).unwrap()["task_type"],
        "no_such_type"
    );
    // Malformed messages get an id and a failed record too.
    let malformed_id = by_kind("malformed")["id"].as_str().unwrap().to_owned();
    assert_eq!(
        result(&redis, &malformed_id).unwrap()["error"]["kind"],
        "malformed"
    );
    assert_eq!(stat(&redis, "failed"), 3);
    assert_eq!(stat(&redis, "dead"), 3);
}

#[test]
fn plugin_errors_traps_end_in_named_outcomes() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[
            json!({"id": "fatal-1", "task_type": "fail_fatal", "params": {}}),
            json!({"id": "trap-1", "task_type": "trap", "max_retries": 0, "params": {}}),
            json!({"id": "retryable-1", "task_type": "fail_retryable", "max_retries": 0, "params": {}}),
        ],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    let fatal = result(&redis, "fatal-1").unwrap();
    assert_eq!(
        (fatal["status"].as_str(), fatal["error"]["kind"].as_str()),
        (Some("failed"), Some("fatal"))
    );
    assert_eq!(fatal["error"]["message"], "bad input");
    let trap = result(&redis, "trap-1").unwrap();
    assert_eq!(trap["error"]["kind"], "trap", "{trap}");
    assert!(
        trap["error"]["message"].as_str().unwrap().contains("trap"),
        "{trap}"
    );
    let retryable = result(&redis, "retryable-1").unwrap();
    assert_eq!(retryable["error"]["kind"], "retryable");
    assert_eq!(retryable["error"]["message"], "upstream busy");
    for id in ["fatal-1", "trap-1", "retryable-1"] {
        assert!(dead_letter(&redis, id).is_some(), "{id} not dead-lettered");
    }
    // The panic message reached the log through the captured stderr.
    assert!(stderr.contains("boom"), "{stderr}");
}
