//! Follow-up tasks (`sluice:plugin@0.2.0` `enqueue`), pushed atomically with
//! their parent's success: chains, refusals, the depth limit, crash safety,
//! and 0.1.0 components beside 0.2.0 ones.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// `misbehave` allowed to enqueue `echo` and (for chains) `enqueue`.
const MAY_ENQUEUE: &str = "may_enqueue = [\"echo\", \"enqueue\"]\n";

fn children_of(redis: &RedisServer, parent: &str) -> Vec<Value> {
    all_results(redis)
        .into_iter()
        .filter(|r| r["parent_id"] == parent)
        .collect()
}

fn echo_follow_up() -> Value {
    json!([{"task_type": "echo", "params": {"step": 2}}])
}

#[test]
fn the_generate_then_parse_chain_runs_from_one_push() {
    let redis = RedisServer::start();
    let data = TempDir::new("chain-data");
    let plugins = Plugins::new(&[
        (
            "generate-log-file",
            &format!(
                "may_enqueue = [\"parse_log_file\"]\n[[dir]]\nhost = \"{}\"\nguest = \"/data\"\nmode = \"read-write\"\n",
                data.path().display()
            ),
        ),
        (
            "parse-log-file",
            &format!(
                "[[dir]]\nhost = \"{}\"\nguest = \"/data\"\n",
                data.path().display()
            ),
        ),
    ]);
    push(
        &redis,
        &[json!({"id": "gen", "task_type": "generate_log_file",
                 "params": {"file": "chain.log", "lines": 50, "then_parse": true}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let parent = result(&redis, "gen").unwrap();
    assert_eq!(parent["status"], "succeeded", "{parent}");
    let child_id = parent["result"]["parse_task"].as_str().unwrap().to_owned();
    assert_eq!(parent["children"], json!([child_id]), "{parent}");
    let child = result(&redis, &child_id).unwrap();
    assert_eq!(child["status"], "succeeded", "{child}");
    assert_eq!(child["task_type"], "parse_log_file");
    assert_eq!(child["parent_id"], "gen", "{child}");
    assert_eq!(child["result"]["lines"], 50, "{child}");
    assert!(parent.get("parent_id").is_none(), "{parent}");

    // `sluice result` of the parent lists its children.
    let output = sluice()
        .args(["result", "gen", "--redis-url", &redis.url()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && shown.contains("\"children\""),
        "{shown}"
    );
    assert!(shown.contains(&child_id), "{shown}");
}

#[test]
fn a_parent_that_fails_after_enqueue_leaves_no_follow_up() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", MAY_ENQUEUE)]);
    push(
        &redis,
        &[
            json!({"id": "fatal", "task_type": "enqueue", "max_retries": 0,
                   "params": {"follow_ups": echo_follow_up(), "then": "fail_fatal"}}),
            json!({"id": "retried", "task_type": "enqueue", "max_retries": 1,
                   "params": {"follow_ups": echo_follow_up(), "then": "fail_first"}}),
        ],
    );
    // A long-running worker: a burst worker does not wait for the retry.
    let _worker = WorkerProcess::spawn(&redis, &plugins, &["--backoff-base-ms", "10"]);
    let r = wait_result(&redis, "fatal", Duration::from_secs(60));
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r.get("children").is_none(), "{r}");
    assert!(children_of(&redis, "fatal").is_empty());
    // Retried once: only the successful second attempt's follow-up exists.
    let r = wait_result(&redis, "retried", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while children_of(&redis, "retried")
        .first()
        .is_none_or(|c| c["status"] != "succeeded")
    {
        assert!(Instant::now() < deadline, "the follow-up did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        (r["status"].as_str(), r["attempts"].as_u64()),
        (Some("succeeded"), Some(2)),
        "{r}"
    );
    let children = children_of(&redis, "retried");
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0]["result"], json!({"step": 2, "from_attempt": 2}));
    assert_eq!(r["children"], json!([children[0]["id"]]));
    assert_eq!(pending(&redis), 0);
}

#[test]
fn a_worker_killed_between_enqueue_and_ack_leaves_only_the_final_attempts_follow_ups() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", MAY_ENQUEUE)]);
    let fast = ["--lease-ms", "1500", "--heartbeat-ms", "300"];
    push(
        &redis,
        &[json!({"id": "killed", "task_type": "enqueue",
                 "params": {"follow_ups": echo_follow_up(), "sleep_ms": 3000}})],
    );
    let mut a = WorkerProcess::spawn(&redis, &plugins, &fast);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a.log().contains("follow-up enqueued") {
        assert!(Instant::now() < deadline, "no enqueue; log:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    a.signal("KILL");
    a.wait(Duration::from_secs(5));
    assert_eq!(
        pending(&redis),
        0,
        "nothing pushed before the acknowledgement"
    );
    // The reaper of another worker recovers the task once A's lease expired
    // and runs it again: that run's follow-up is the only one pushed.
    let _b = WorkerProcess::spawn(&redis, &plugins, &fast);
    let r = wait_result(&redis, "killed", Duration::from_secs(120));
    assert_eq!(r["status"], "succeeded", "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let children = loop {
        let children = children_of(&redis, "killed");
        if !children.is_empty() || Instant::now() > deadline {
            break children;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(r["children"], json!([children[0]["id"]]), "{r}");
    assert_eq!(children[0]["result"]["from_attempt"], r["attempts"], "{r}");
}

#[test]
fn a_type_outside_may_enqueue_is_refused() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "may_enqueue = [\"echo\"]\n")]);
    push(
        &redis,
        &[
            json!({"id": "refused", "task_type": "enqueue", "max_retries": 0,
                   "params": {"follow_ups": [{"task_type": "fail_fatal"}]}}),
            json!({"id": "partly-refused", "task_type": "enqueue", "max_retries": 0,
                   "params": {"follow_ups": [{"task_type": "echo"}], "again": true}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "refused").unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "fatal", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("may_enqueue") && message.contains("fail_fatal"),
        "{message}"
    );
    // The echo it did enqueue before the refused `enqueue` dies with it.
    assert!(children_of(&redis, "partly-refused").is_empty());
    assert_eq!(all_results(&redis).len(), 2);
}

#[test]
fn a_chain_stops_at_chain_depth() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", &format!("{MAY_ENQUEUE}chain_depth = 3\n"))]);
    push(
        &redis,
        &[
            json!({"id": "root", "task_type": "enqueue", "max_retries": 0, "params": {"again": true}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let results = all_results(&redis);
    assert_eq!(results.len(), 4, "depths 0..=3: {results:?}");
    let failed: Vec<&Value> = results.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    let message = failed[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("chain_depth"), "{message}");
    // Walk the chain from the root through `children`.
    let mut id = "root".to_owned();
    for _ in 0..3 {
        let r = result(&redis, &id).unwrap();
        assert_eq!(r["status"], "succeeded", "{r}");
        let child = r["children"][0].as_str().unwrap().to_owned();
        assert_eq!(result(&redis, &child).unwrap()["parent_id"], id.as_str());
        id = child;
    }
    assert_eq!(result(&redis, &id).unwrap()["status"], "failed");
}

#[test]
fn a_0_1_component_runs_beside_0_2_ones() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("noop", ""), ("misbehave", MAY_ENQUEUE)]);
    push(
        &redis,
        &[
            json!({"id": "old", "task_type": "noop"}),
            json!({"id": "new", "task_type": "enqueue", "params": {"follow_ups": echo_follow_up()}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "old").unwrap();
    assert_eq!(
        (r["status"].as_str(), &r["result"]),
        (Some("succeeded"), &json!({})),
        "{r}"
    );
    assert_eq!(result(&redis, "new").unwrap()["status"], "succeeded");
    assert_eq!(children_of(&redis, "new").len(), 1);
}
