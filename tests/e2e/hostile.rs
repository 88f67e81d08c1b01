//! A hostile plugin (the test plugin `misbehave`) among ordinary tasks:
//! every hostile task ends in a named outcome, ordinary tasks keep flowing,
//! and the worker's log, memory and Redis footprint stay bounded.

use std::net::TcpListener;
use std::time::Duration;

use redis::Commands;
use serde_json::{Value, json};

use crate::harness::*;

/// A number from `/proc/<pid>/status` (kB), e.g. `VmHWM` (peak resident memory).
fn proc_status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Redis's `used_memory`, bytes.
fn redis_used_memory(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn hostile_tasks_end_in_named_outcomes_while_ordinary_tasks_keep_flowing() {
    let redis = RedisServer::start();
    let baseline = redis_used_memory(&redis);
    // Somewhere a plugin might try to connect to; nothing may ever arrive.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let plugins = Plugins::new(&[(
        "misbehave",
        "timeout_ms = 5000\nmemory_bytes = 33554432\nmax_retries = 0\n",
    )]);
    // (id, task type, params, expected error kind or None for success)
    let hostile: Vec<(&str, &str, Value, Option<&str>)> = vec![
        ("loop", "loop_forever", json!({}), Some("timeout")),
        ("memory-bomb", "alloc_forever", json!({}), Some("memory")),
        ("recursion", "recurse", json!({}), Some("trap")),
        (
            "passwd",
            "read_file",
            json!({"path": "/etc/passwd"}),
            Some("fatal"),
        ),
        (
            "escape",
            "read_file",
            json!({"path": "/../../etc/passwd"}),
            Some("fatal"),
        ),
        ("env", "env_all", json!({}), None),
        (
            "stdout-flood",
            "stdout_flood",
            json!({"bytes": 4 << 20}),
            None,
        ),
        ("log-flood", "log_flood", json!({"lines": 100_000}), None),
        (
            "huge-result",
            "huge_result",
            json!({"bytes": 6 << 20}),
            Some("result_too_large"),
        ),
        ("socket", "connect", json!({"addr": addr}), Some("fatal")),
        ("exit", "exit", json!({"code": 3}), Some("trap")),
    ];
    let mut messages = Vec::new();
    let mut ordinary = Vec::new();
    for (i, (id, task_type, params, _)) in hostile.iter().enumerate() {
        messages.push(json!({"id": id, "task_type": task_type, "params": params}));
        for j in 0..10 {
            let id = format!("ordinary-{i}-{j}");
            messages.push(json!({"id": id, "task_type": "version"}));
            ordinary.push(id);
        }
    }
    push(&redis, &messages);

    let mut worker = WorkerProcess::spawn(&redis, &plugins, &["--concurrency", "4"]);
    let limit = Duration::from_secs(120);
    for id in &ordinary {
        let r = wait_result(&redis, id, limit);
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    for (id, _, _, expected) in &hostile {
        let r = wait_result(&redis, id, limit);
        match expected {
            Some(kind) => {
                assert_eq!(r["status"], "failed", "{id}: {r}");
                assert_eq!(r["error"]["kind"], *kind, "{id}: {r}");
                assert!(dead_letter(&redis, id).is_some(), "{id} dead-lettered");
            }
            None => assert_eq!(r["status"], "succeeded", "{id}: {r}"),
        }
    }
    let peak_rss_kb = proc_status_kb(worker.pid(), "VmHWM");
    worker.signal("TERM");
    assert!(worker.wait(Duration::from_secs(30)).success());

    // Capabilities: no environment, no network.
    assert_eq!(
        result(&redis, "env").unwrap()["result"],
        json!({"vars": []})
    );
    assert!(
        listener
            .accept()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the plugin reached the listener"
    );

    // The worker's log: floods capped and reported once, with the task id.
    let log = worker.log();
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("log lines dropped"))
        .collect();
    assert_eq!(reports.len(), 1, "reported once: {reports:?}");
    assert!(
        reports[0].contains("log-flood"),
        "with the task id: {}",
        reports[0]
    );
    // ~96-byte lines: the 64 KiB budget keeps ~680 of them.
    let dropped: u64 = reports[0]
        .split(" log lines dropped")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", reports[0]));
    assert!((99_000..100_000).contains(&dropped), "{}", reports[0]);
    let kept = log.lines().filter(|l| l.contains("log flood line")).count() as u64;
    assert_eq!(
        kept + dropped,
        100_000,
        "every call is either logged or counted"
    );
    assert!(log.contains("output truncated"));

    // Redis: every record small, memory back near the baseline.
    let mut c = redis.conn();
    let keys: Vec<String> = c.keys("{task_queue}:result:*").unwrap();
    assert_eq!(keys.len(), ordinary.len() + hostile.len());
    let largest = keys
        .iter()
        .map(|k| c.strlen::<_, usize>(k).unwrap())
        .max()
        .unwrap();
    let used = redis_used_memory(&redis);
    eprintln!(
        "hostile run: worker peak RSS {} KiB, worker log {} bytes, largest result record {largest} bytes, redis used_memory {baseline} -> {used} bytes",
        peak_rss_kb,
        log.len()
    );
    assert!(log.len() < 1 << 20, "worker log {} bytes", log.len());
    assert!(largest < 16 << 10, "largest record {largest} bytes");
    assert!(used < baseline + (8 << 20), "redis used_memory {used}");
    assert!(peak_rss_kb < 256 << 10, "worker peak RSS {peak_rss_kb} KiB");
}
