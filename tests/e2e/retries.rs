//! Retries with backoff, dead letters, delayed tasks, and the operator CLI.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

fn sluice_cli(redis: &RedisServer, args: &[&str]) -> String {
    let mut cmd = sluice();
    cmd.args(args).args(["--redis-url", &redis.url()]);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn retries_with_backoff_then_success_exhaustion_and_fatal() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "backoff_base_ms = 50\n")]);
    push(
        &redis,
        &[
            json!({"id": "flaky", "task_type": "attempt", "params": {"succeed_on": 3}}),
            json!({"id": "hopeless", "task_type": "fail_retryable", "max_retries": 2}),
            json!({"id": "fatal", "task_type": "fail_fatal"}),
        ],
    );
    let _w = WorkerProcess::spawn(&redis, &plugins, &[]);
    let flaky = wait_result(&redis, "flaky", Duration::from_secs(30));
    assert_eq!(flaky["status"], "succeeded", "{flaky}");
    assert_eq!(flaky["attempts"], 3);
    assert_eq!(flaky["result"], json!({"attempt": 3}));

    let hopeless = wait_result(&redis, "hopeless", Duration::from_secs(30));
    assert_eq!(hopeless["status"], "failed");
    assert_eq!(hopeless["attempts"], 3, "first attempt + 2 retries");
    let dead = dead_letter(&redis, "hopeless").unwrap();
    assert_eq!(
        (dead["attempts"].as_u64(), dead["error"]["kind"].as_str()),
        (Some(3), Some("retryable"))
    );

    let fatal = wait_result(&redis, "fatal", Duration::from_secs(30));
    assert_eq!(fatal["attempts"], 1, "fatal errors are not retried");
    assert!(dead_letter(&redis, "fatal").is_some());
    assert_eq!(stat(&redis, "retried"), 4);
    assert_eq!(stat(&redis, "dead"), 2);
}

#[test]
fn delayed_tasks_do_not_run_before_their_time() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    push(
        &redis,
        &[
            json!({"id": "later", "task_type": "echo", "delay_ms": 1500}),
            json!({"id": "at", "task_type": "echo", "run_at": now + 1000}),
            json!({"id": "now", "task_type": "echo"}),
        ],
    );
    let _w = WorkerProcess::spawn(&redis, &plugins, &[]);
    let first = wait_result(&redis, "now", Duration::from_secs(20));
    let later = wait_result(&redis, "later", Duration::from_secs(20));
    let at = wait_result(&redis, "at", Duration::from_secs(20));
    assert!(
        later["started_at"].as_u64().unwrap() >= now + 1500,
        "{later}"
    );
    assert!(at["started_at"].as_u64().unwrap() >= now + 1000, "{at}");
    assert!(first["started_at"].as_u64().unwrap() < later["started_at"].as_u64().unwrap());
}

#[test]
fn dead_letters_can_be_listed_shown_requeued_and_purged() {
    let redis = RedisServer::start();
    push(
        &redis,
        &[
            json!({"id": "d1", "task_type": "echo", "params": {"n": 1}}),
            json!({"id": "d2", "task_type": "echo", "params": {"n": 2}}),
            json!({"id": "d3", "task_type": "echo", "params": {"n": 3}}),
        ],
    );
    // A worker without the plugin dead-letters them as unknown task types.
    assert_ok(&run_burst(
        &redis,
        &Plugins::new(&[("noop", "")]),
        &["--unknown-type-grace-ms", "0"],
    ));
    let listed = sluice_cli(&redis, &["dead", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let shown: serde_json::Value =
        serde_json::from_str(&sluice_cli(&redis, &["dead", "show", "d2"])).unwrap();
    assert_eq!(shown["error"]["kind"], "unknown_task_type");
    assert!(shown["message"].as_str().unwrap().contains("\"n\":2"));
    let stats: serde_json::Value =
        serde_json::from_str(&sluice_cli(&redis, &["stats", "--json"])).unwrap();
    assert_eq!(
        (stats["dead"].as_u64(), stats["pending"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(stats["counters"]["failed"], 3);
    assert!(sluice_cli(&redis, &["stats"]).contains("dead       3"));

    // Requeue one, then the rest, to a worker that has the plugin.
    assert_eq!(
        sluice_cli(&redis, &["dead", "requeue", "d2"]).trim(),
        "requeued d2"
    );
    assert_eq!(pending(&redis), 1);
    let plugins = Plugins::new(&[("misbehave", "")]);
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "d2").unwrap();
    assert_eq!(
        (r["status"].as_str(), r["attempts"].as_u64()),
        (Some("succeeded"), Some(1))
    );
    assert_eq!(r["result"], json!({"n": 2}));
    assert_eq!(
        sluice_cli(&redis, &["dead", "requeue", "--all"]).trim(),
        "requeued 2"
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(result(&redis, "d1").unwrap()["status"], "succeeded");
    assert_eq!(result(&redis, "d3").unwrap()["status"], "succeeded");

    // Purge.
    push(&redis, &[json!({"id": "d4", "task_type": "fail_fatal"})]);
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(sluice_cli(&redis, &["dead", "purge"]).trim(), "purged 1");
    assert_eq!(sluice_cli(&redis, &["dead", "list"]), "");
    // Unknown ids are errors.
    let mut cmd = sluice();
    cmd.args(["dead", "show", "nope", "--redis-url", &redis.url()]);
    assert!(!wait_output(cmd, Duration::from_secs(30)).status.success());
}

#[test]
fn keys_written_by_a_run_all_expire_or_are_bounded() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[
            json!({"id": "a", "task_type": "echo"}),
            json!({"id": "b", "task_type": "fail_fatal"}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &["--result-ttl-secs", "60"]));
    let mut c = redis.conn();
    let keys: Vec<String> = redis::Commands::keys(&mut c, "*").unwrap();
    for key in keys {
        let ttl: i64 = redis::Commands::ttl(&mut c, &key).unwrap();
        let bounded = [
            "{task_queue}:stats",
            "{task_queue}:dead",
            "{task_queue}:dead:index",
        ];
        assert!(
            ttl > 0 || bounded.contains(&key.as_str()),
            "{key} has no TTL and is not a bounded key"
        );
        if key.contains(":result:") {
            assert!(ttl <= 60);
        }
    }
}
