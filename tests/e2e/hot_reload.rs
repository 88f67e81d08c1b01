//! Drop-in plugins at runtime: hot reload without losing work, versions in
//! result records, and the metrics endpoint.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// Deploys `bytes` as `dir/name` the safe way: write a temporary file, then rename.
fn deploy(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// `misbehave.wasm` with a custom section appended: a different component
/// (another SHA-256) with the same behaviour.
fn misbehave_variant(tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(built_plugin("misbehave")).unwrap();
    let name = b"sluice-test";
    let payload = tag.as_bytes();
    let len = 1 + name.len() + payload.len();
    assert!(len < 128 && name.len() < 128);
    bytes.extend_from_slice(&[0, len as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn tasks_for_a_plugin_not_yet_deployed_wait_and_complete_when_it_is_dropped_in() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("noop", "")]);
    let worker = WorkerProcess::spawn(&redis, &plugins, &[]);
    let ids: Vec<String> = (0..5).map(|i| format!("early-{i}")).collect();
    for id in &ids {
        push(
            &redis,
            &[json!({"id": id, "task_type": "echo", "params": {"id": id}})],
        );
    }
    wait_for(Duration::from_secs(20), "the tasks to wait", || {
        worker
            .log()
            .contains("no plugin handles this task type yet")
    });
    assert!(ids.iter().all(|id| result(&redis, id).is_none()));
    deploy(
        plugins.path(),
        "misbehave.wasm",
        &std::fs::read(built_plugin("misbehave")).unwrap(),
    );
    for id in &ids {
        let r = wait_result(&redis, id, Duration::from_secs(30));
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["plugin"], "misbehave");
    }
    assert!(worker.log().contains("plugin added"), "{}", worker.log());
    assert_eq!(dead_letters(&redis).len(), 0);
}

#[test]
fn a_task_type_still_unknown_after_the_grace_period_is_dead_lettered() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("noop", "")]);
    let _worker = WorkerProcess::spawn(&redis, &plugins, &["--unknown-type-grace-ms", "1500"]);
    push(
        &redis,
        &[json!({"id": "orphan", "task_type": "nobody_handles_this"})],
    );
    let r = wait_result(&redis, "orphan", Duration::from_secs(30));
    assert_eq!(r["error"]["kind"], "unknown_task_type");
    assert!(r["finished_at"].as_u64().unwrap() >= r["started_at"].as_u64().unwrap());
    let d = dead_letter(&redis, "orphan").unwrap();
    assert!(
        d["error"]["message"].as_str().unwrap().contains("waited"),
        "{d}"
    );
}

#[test]
fn replacing_a_plugin_while_tasks_stream_in_switches_versions_and_loses_nothing() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[(
        "misbehave",
        "version = \"1.0.0\"\nenv = { PLUGIN_VERSION = \"v1\" }\n",
    )]);
    let worker = WorkerProcess::spawn(&redis, &plugins, &["--concurrency", "4"]);
    // A producer streams tasks until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let url = redis.url();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                let m = json!({"id": format!("r{n}"), "task_type": "env", "params": {"name": "PLUGIN_VERSION"}});
                let _: i64 = redis::Commands::rpush(&mut c, "task_queue", m.to_string()).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
    };
    wait_for(Duration::from_secs(30), "some v1 results", || {
        stat(&redis, "succeeded") >= 50
    });
    // New manifest and new component, each renamed into place.
    deploy(
        plugins.path(),
        "misbehave.toml",
        b"version = \"2.0.0\"\nenv = { PLUGIN_VERSION = \"v2\" }\n",
    );
    deploy(plugins.path(), "misbehave.wasm", &misbehave_variant("v2"));
    wait_for(Duration::from_secs(60), "the new version", || {
        worker.log().contains("plugin replaced")
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = producer.join().unwrap();
    let mut records: Vec<serde_json::Value> = (0..n)
        .map(|i| wait_result(&redis, &format!("r{i}"), Duration::from_secs(60)))
        .collect();
    assert_eq!(
        stat(&redis, "succeeded"),
        n as i64,
        "every task exactly once"
    );
    assert_eq!(stat(&redis, "processed"), n as i64);
    records.sort_by_key(|r| r["started_at"].as_u64());
    let versions: Vec<&str> = records
        .iter()
        .map(|r| r["result"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(versions.first(), Some(&"v1"));
    assert_eq!(versions.last(), Some(&"v2"), "{}", worker.log());
    let v2 = records
        .iter()
        .filter(|r| r["result"]["value"] == "v2")
        .collect::<Vec<_>>();
    assert!(v2.iter().all(|r| r["plugin_version"] == "2.0.0"));
    let hashes: HashSet<&str> = records
        .iter()
        .map(|r| r["plugin_sha256"].as_str().unwrap())
        .collect();
    assert_eq!(
        hashes.len(),
        2,
        "two distinct components served: {hashes:?}"
    );
    assert!(worker.log().contains("plugin replaced"));
}

#[test]
fn a_truncated_component_never_replaces_a_working_one() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let worker = WorkerProcess::spawn(&redis, &plugins, &[]);
    push(&redis, &[json!({"id": "before", "task_type": "echo"})]);
    let before = wait_result(&redis, "before", Duration::from_secs(30));
    let good = std::fs::read(built_plugin("misbehave")).unwrap();
    // Copied in place without a rename: the worker sees a half-written file.
    std::fs::write(
        plugins.path().join("misbehave.wasm"),
        &good[..good.len() / 2],
    )
    .unwrap();
    wait_for(Duration::from_secs(20), "the reload error", || {
        worker.log().contains("keeping the previous version")
    });
    let log = worker.log();
    assert!(
        log.contains("misbehave.wasm") && log.contains("not a valid WebAssembly component"),
        "{log}"
    );
    push(&redis, &[json!({"id": "after", "task_type": "echo"})]);
    let after = wait_result(&redis, "after", Duration::from_secs(30));
    assert_eq!(after["status"], "succeeded");
    assert_eq!(
        after["plugin_sha256"], before["plugin_sha256"],
        "still the old version"
    );
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn metrics_counters_match_what_was_processed() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let worker = WorkerProcess::spawn(&redis, &plugins, &["--metrics-addr", &addr]);
    for i in 0..7 {
        push(
            &redis,
            &[json!({"id": format!("ok{i}"), "task_type": "echo"})],
        );
    }
    push(
        &redis,
        &[
            json!({"id": "bad1", "task_type": "fail_fatal"}),
            json!({"id": "bad2", "task_type": "fail_fatal"}),
        ],
    );
    for id in ["ok6", "bad1", "bad2"] {
        wait_result(&redis, id, Duration::from_secs(30));
    }
    wait_for(Duration::from_secs(10), "metrics endpoint", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(http_get(port, "/healthz").0, 200);
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    // Gauges refresh every second.
    std::thread::sleep(Duration::from_millis(1200));
    let (status, metrics) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("sluice_tasks_succeeded_total{task_type=\"echo\",plugin=\"misbehave\"}"),
        7.0
    );
    assert_eq!(
        value("sluice_tasks_started_total{task_type=\"echo\",plugin=\"misbehave\"}"),
        7.0
    );
    assert_eq!(
        value("sluice_tasks_failed_total{task_type=\"fail_fatal\",plugin=\"misbehave\"}"),
        2.0
    );
    assert_eq!(
        value(
            "sluice_tasks_dead_lettered_total{task_type=\"fail_fatal\",plugin=\"misbehave\",reason=\"fatal\"}"
        ),
        2.0
    );
    assert_eq!(
        value("sluice_task_duration_seconds_count{task_type=\"echo\",plugin=\"misbehave\"}"),
        7.0
    );
    assert_eq!(
        value("sluice_sandbox_instantiate_seconds_count{plugin=\"misbehave\"}"),
        9.0
    );
    assert_eq!(
        value("sluice_queue_depth{queue=\"task_queue\",state=\"dead\"}"),
        2.0
    );
    assert_eq!(
        value("sluice_queue_depth{queue=\"task_queue\",state=\"pending\"}"),
        0.0
    );
    drop(worker);
}
