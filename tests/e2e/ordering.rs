//! `ordering_key` (issue #21): tasks of one key run one at a time, in push
//! order, across workers, retries, dead letters, delays and a `kill -9`;
//! tasks without a key, and other keys, are not held back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// `sluice stats --json` against `redis`.
fn stats(redis: &RedisServer) -> Value {
    let mut cmd = sluice();
    cmd.args(["stats", "--json", "--redis-url", &redis.url()]);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until `done` holds, polling; panics with `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (started_at, finished_at) of a result record.
fn span(record: &Value) -> (u64, u64) {
    (
        record["started_at"].as_u64().unwrap(),
        record["finished_at"].as_u64().unwrap(),
    )
}

/// Asserts that the records, in push order, ran one after the other.
fn assert_in_order(key: &str, records: &[(String, Value)]) {
    for pair in records.windows(2) {
        let ((a, ra), (b, rb)) = (&pair[0], &pair[1]);
        let ((_, a_end), (b_start, _)) = (span(ra), span(rb));
        assert!(
            a_end <= b_start,
            "key {key}: {b} started at {b_start} before {a} (pushed first) finished at {a_end}"
        );
    }
}

const FAST_LEASE: [&str; 4] = ["--lease-ms", "1500", "--heartbeat-ms", "300"];

#[test]
fn keyed_tasks_run_in_push_order_across_two_workers_retries_and_a_kill_9() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    const KEYS: usize = 12;
    const PER_KEY: usize = 10;
    let mut messages = Vec::new();
    let mut keyed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut retried = Vec::new();
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            let id = format!("k{k}-{seq}");
            // Every fifth task fails its first attempt (retryably).
            let succeed_on = if (seq * KEYS + k) % 5 == 2 { 2 } else { 1 };
            if succeed_on == 2 {
                retried.push(id.clone());
            }
            messages.push(json!({
                "id": id, "task_type": "attempt", "ordering_key": format!("acct-{k}"),
                "params": {"succeed_on": succeed_on, "ms": 25},
                "backoff_base_ms": 100, "backoff_cap_ms": 200,
            }));
            keyed.entry(format!("acct-{k}")).or_default().push(id);
        }
        for f in 0..4 {
            messages.push(json!({
                "id": format!("free-{seq}-{f}"), "task_type": "attempt",
                "params": {"succeed_on": 1, "ms": 25},
            }));
        }
    }
    push(&redis, &messages);
    let args: Vec<&str> = ["--concurrency", "16"]
        .into_iter()
        .chain(FAST_LEASE)
        .collect();
    // The worker to kill starts alone, so that the only in-flight list is its own.
    let mut doomed = WorkerProcess::spawn(&redis, &plugins, &args);
    let mut conn = redis.conn();
    let mut inflight = String::new();
    wait_until(
        "the first worker's in-flight list",
        Duration::from_secs(60),
        || {
            let lists: Vec<String> =
                redis::Commands::keys(&mut conn, "{task_queue}:inflight:*").unwrap();
            inflight = lists.into_iter().next().unwrap_or_default();
            !inflight.is_empty()
        },
    );
    let survivor = WorkerProcess::spawn(&redis, &plugins, &args);
    let keyed_in_flight = |conn: &mut redis::Connection| -> Vec<String> {
        let held: Vec<String> = redis::Commands::lrange(conn, &inflight, 0, -1).unwrap();
        held.iter()
            .map(|m| serde_json::from_str::<Value>(m).unwrap())
            .filter(|m| m.get("ordering_key").is_some())
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    wait_until(
        "keyed tasks in flight on the first worker",
        Duration::from_secs(60),
        || !keyed_in_flight(&mut conn).is_empty(),
    );
    doomed.signal("KILL");
    doomed.wait(Duration::from_secs(10));
    // What the killed worker held: back at the head of the queue once its
    // lease expires, to run again before any later task of its key.
    let crashed = keyed_in_flight(&mut conn);
    assert!(!crashed.is_empty(), "the kill caught keyed tasks in flight");

    let mut records: BTreeMap<String, Value> = BTreeMap::new();
    for m in &messages {
        let id = m["id"].as_str().unwrap();
        let r = wait_result(&redis, id, Duration::from_secs(90));
        assert_eq!(r["status"], "succeeded", "{id}: {r}");
        records.insert(id.to_owned(), r);
    }
    assert!(
        stat(&redis, "recovered") >= crashed.len() as i64,
        "the killed worker's tasks {crashed:?} were recovered by the other; log:\n{}",
        survivor.log()
    );
    for id in &retried {
        assert_eq!(records[id]["attempts"], 2, "{id} was retried once");
    }
    for (key, ids) in &keyed {
        let runs: Vec<(String, Value)> = ids
            .iter()
            .map(|id| (id.clone(), records[id].clone()))
            .collect();
        assert_in_order(key, &runs);
    }
    // Different keys, and tasks without a key, ran side by side.
    let overlap = |a: &Value, b: &Value| {
        let ((a0, a1), (b0, b1)) = (span(a), span(b));
        a0 < b1 && b0 < a1
    };
    let keyed_runs: Vec<(&String, &Value)> = records
        .iter()
        .filter(|(id, _)| id.starts_with('k'))
        .collect();
    let free_runs: Vec<&Value> = records
        .iter()
        .filter(|(id, _)| id.starts_with("free"))
        .map(|(_, r)| r)
        .collect();
    assert!(
        keyed_runs.iter().any(|(a, ra)| keyed_runs
            .iter()
            .any(|(b, rb)| a.split('-').next() != b.split('-').next() && overlap(ra, rb))),
        "tasks of different keys never ran at the same time"
    );
    assert!(
        free_runs
            .iter()
            .enumerate()
            .any(|(i, a)| free_runs[i + 1..].iter().any(|b| overlap(a, b))),
        "tasks without a key never ran at the same time"
    );
    let s = stats(&redis);
    assert_eq!(
        (
            &s["ordering_keys"],
            &s["ordering_parked"],
            &s["ordering_blocked"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "every key released: {s}"
    );
}

#[test]
fn a_retry_blocks_its_key_in_stats_and_a_dead_letter_releases_it() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[
            // Fails twice (retries ~1 s and ~2 s later), then succeeds.
            json!({"id": "first", "task_type": "attempt", "ordering_key": "acct",
                   "params": {"succeed_on": 3}, "backoff_base_ms": 1000, "backoff_cap_ms": 2000}),
            json!({"id": "fatal", "task_type": "fail_fatal", "ordering_key": "acct"}),
            json!({"id": "last", "task_type": "echo", "ordering_key": "acct", "params": {"n": 3}}),
            json!({"id": "other", "task_type": "echo", "ordering_key": "other"}),
            json!({"id": "free", "task_type": "echo"}),
        ],
    );
    let _worker = WorkerProcess::spawn(&redis, &plugins, &["--concurrency", "4"]);
    wait_until("the first retry", Duration::from_secs(30), || {
        stat(&redis, "retried") >= 1
    });
    let s = stats(&redis);
    assert_eq!(s["ordering_blocked"], 1, "{s}");
    assert_eq!(s["ordering_parked"], 2, "fatal and last wait: {s}");
    let mut cmd = sluice();
    cmd.args(["stats", "--redis-url", &redis.url()]);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["ordering_blocked", "1"])),
        "{table}"
    );
    // Other keys and unkeyed tasks are not held back by the retry.
    for id in ["other", "free"] {
        assert_eq!(
            wait_result(&redis, id, Duration::from_secs(30))["status"],
            "succeeded"
        );
    }
    assert_eq!(result(&redis, "last"), None, "last waits behind first");

    let last = wait_result(&redis, "last", Duration::from_secs(30));
    let first = result(&redis, "first").unwrap();
    let fatal = result(&redis, "fatal").unwrap();
    assert_eq!(
        (&first["status"], &first["attempts"]),
        (&json!("succeeded"), &json!(3))
    );
    assert_eq!(fatal["status"], "failed");
    assert!(
        dead_letter(&redis, "fatal").is_some(),
        "fatal is dead-lettered"
    );
    assert_eq!(
        last["status"], "succeeded",
        "the dead letter released the key"
    );
    assert_in_order(
        "acct",
        &[
            ("first".into(), first),
            ("fatal".into(), fatal),
            ("last".into(), last),
        ],
    );
    let s = stats(&redis);
    assert_eq!(
        (
            &s["ordering_keys"],
            &s["ordering_parked"],
            &s["ordering_blocked"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "{s}"
    );
}

#[test]
fn a_delayed_keyed_task_keeps_its_place_in_the_key_order() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[
            json!({"id": "later", "task_type": "echo", "ordering_key": "doc", "delay_ms": 1500}),
            json!({"id": "next", "task_type": "echo", "ordering_key": "doc"}),
            json!({"id": "elsewhere", "task_type": "echo", "ordering_key": "doc-2"}),
        ],
    );
    let _worker = WorkerProcess::spawn(&redis, &plugins, &["--concurrency", "4"]);
    let elsewhere = wait_result(&redis, "elsewhere", Duration::from_secs(30));
    let next = wait_result(&redis, "next", Duration::from_secs(30));
    let later = result(&redis, "later").expect("later ran before next");
    assert_in_order(
        "doc",
        &[("later".into(), later.clone()), ("next".into(), next)],
    );
    assert!(
        span(&elsewhere).1 <= span(&later).0,
        "another key is not held back by the delay"
    );
}

#[test]
fn an_ordering_key_too_long_or_not_a_string_is_malformed_and_holds_nothing() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let long = "k".repeat(257);
    push(
        &redis,
        &[
            json!({"task_type": "echo", "ordering_key": long}),
            json!({"task_type": "echo", "ordering_key": 42}),
            json!({"id": "ok", "task_type": "echo", "ordering_key": "k".repeat(256)}),
        ],
    );
    let out = run_burst(&redis, &plugins, &[]);
    assert_ok(&out);
    assert_eq!(result(&redis, "ok").unwrap()["status"], "succeeded");
    let mut errors: Vec<String> = dead_letters(&redis)
        .iter()
        .map(|d| {
            assert_eq!(d["error"]["kind"], "malformed", "{d}");
            d["error"]["message"].as_str().unwrap().to_owned()
        })
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("\"ordering_key\" is 257 bytes long"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("\"ordering_key\" must be a string"),
        "{errors:?}"
    );
    let s = stats(&redis);
    assert_eq!(
        (&s["ordering_keys"], &s["ordering_parked"]),
        (&json!(0), &json!(0)),
        "{s}"
    );
}

#[test]
fn keys_are_per_tenant_a_retry_in_one_tenant_holds_back_nobody_in_another() {
    let redis = RedisServer::start();
    let dir = TempDir::new("ordering-tenants");
    let mut config = String::from("concurrency = 4\n");
    for tenant in ["a", "b"] {
        let plugins = dir.path().join(tenant);
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(built_plugin("misbehave"), plugins.join("misbehave.wasm")).unwrap();
        config.push_str(&format!(
            "\n[[tenant]]\nname = \"{tenant}\"\nplugins = \"{tenant}\"\n"
        ));
    }
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, config).unwrap();
    let mut conn = redis.conn();
    let a = [
        json!({"id": "a0", "task_type": "attempt", "ordering_key": "acct",
               "params": {"succeed_on": 2}, "backoff_base_ms": 1500, "backoff_cap_ms": 1500}),
        json!({"id": "a1", "task_type": "echo", "ordering_key": "acct"}),
    ];
    let b = [
        json!({"id": "b0", "task_type": "echo", "ordering_key": "acct"}),
        json!({"id": "b1", "task_type": "echo", "ordering_key": "acct"}),
    ];
    for (queue, messages) in [("a", &a), ("b", &b)] {
        for m in messages {
            let _: i64 = redis::Commands::rpush(&mut conn, queue, m.to_string()).unwrap();
        }
    }
    let mut cmd = sluice();
    cmd.args(["worker", "--redis-url", &redis.url(), "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _worker = KillOnDrop(cmd.spawn().unwrap());
    let record = |queue: &str, id: &str| -> Option<Value> {
        let json: Option<String> =
            redis::Commands::get(&mut redis.conn(), format!("{{{queue}}}:result:{id}")).unwrap();
        json.map(|j| serde_json::from_str(&j).unwrap())
    };
    let fin = |queue: &str, id: &str| {
        let mut out = None;
        wait_until(&format!("{queue}/{id}"), Duration::from_secs(30), || {
            out = record(queue, id).filter(|r| r["status"] != "retrying");
            out.is_some()
        });
        out.unwrap()
    };
    let b1 = fin("b", "b1");
    assert_eq!(b1["status"], "succeeded");
    assert!(
        record("a", "a1").is_none(),
        "tenant a's acct waits for a0's retry, tenant b's acct does not"
    );
    let blocked: bool =
        redis::Commands::sismember(&mut conn, "{a}:order:retrying", "acct").unwrap();
    assert!(blocked, "the key is held under tenant a's own hash tag");
    let a1 = fin("a", "a1");
    let a0 = record("a", "a0").unwrap();
    assert_eq!(
        (&a0["status"], &a0["attempts"]),
        (&json!("succeeded"), &json!(2))
    );
    assert_in_order("a/acct", &[("a0".into(), a0), ("a1".into(), a1)]);
}

/// A child process killed (and reaped) when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
