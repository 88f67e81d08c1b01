//! Per-key order figures for `cargo xtask bench` (issue #21): the same job
//! (`parse_log_file` in a fresh WebAssembly instance per task, with `id`
//! and `reply_to`), queued N at a time and drained by one burst worker,
//! once without `ordering_key` and once spread over [`KEYS`] keys (task i
//! has key `acct-<i mod KEYS>`): tasks/s of each, Redis CPU per task, and
//! the keyed/unkeyed ratio (target ≥ 0.8: many keys must still use every
//! slot). A single hot key runs one task at a time by definition, so it is
//! not measured.

use std::time::Instant;

use serde_json::{Value, json};
use sluice::queue::{Queue, Retention};
use sluice::registry::{Registry, SharedRegistry};
use sluice::sandbox::{Plugin, Sandbox, SandboxConfig};
use sluice::worker::{Worker, WorkerConfig};

use super::harness;

/// Distinct `ordering_key`s of the keyed run.
pub const KEYS: usize = 1_000;

/// Queues `n` tasks, with an `ordering_key` when `keyed`.
fn push(conn: &mut redis::Connection, n: usize, keyed: bool, text: &str) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        let mut task = json!({
            "id": format!("ord{i}"), "task_type": "parse_log_file",
            "params": {"text": text}, "reply_to": "bench_replies",
        });
        if keyed {
            task["ordering_key"] = format!("acct-{}", i % KEYS).into();
        }
        pipe.rpush("task_queue", task.to_string()).ignore();
        if i % 1000 == 999 || i + 1 == n {
            pipe.query::<()>(conn).unwrap();
            pipe = redis::pipe();
        }
    }
}

/// Redis's CPU time so far (user + system), seconds.
fn redis_cpu_secs(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn).unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Runs both bursts of `tasks` tasks at `concurrency` against `url`; the
/// figures as JSON.
pub fn scenario(
    rt: &tokio::runtime::Runtime,
    url: &str,
    tasks: usize,
    concurrency: usize,
    text: &str,
) -> Value {
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: (concurrency * 2 + 8) as u32,
        ..SandboxConfig::default()
    })
    .unwrap();
    let dir = harness::TempDir::new("bench-ordering");
    let path = dir.path().join("parse-log-file.wasm");
    std::fs::copy(harness::built_plugin("parse-log-file"), &path).unwrap();
    let plugin = rt.block_on(Plugin::load(&sandbox, &path)).unwrap();
    let registry = SharedRegistry::new(Registry::from_plugins(vec![plugin]).unwrap());
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let retention = Retention {
        result_ttl_secs: 5,
        ..Retention::default()
    };
    let mut run = |keyed: bool| {
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
        push(&mut conn, tasks, keyed, text);
        let redis_cpu0 = redis_cpu_secs(&mut conn);
        let (elapsed, summary) = rt.block_on(async {
            let queue = Queue::connect(url, "task_queue", retention.clone())
                .await
                .unwrap();
            let worker = Worker::new(
                queue,
                registry.clone(),
                sandbox.clone(),
                WorkerConfig {
                    concurrency,
                    burst: true,
                    ..WorkerConfig::default()
                },
                "bench-ordering",
            );
            let t = Instant::now();
            let summary = worker.run(std::future::pending()).await.unwrap();
            (t.elapsed(), summary)
        });
        assert_eq!(summary.succeeded as usize, tasks, "{summary:?}");
        let redis_us = (redis_cpu_secs(&mut conn) - redis_cpu0) * 1e6 / tasks as f64;
        (tasks as f64 / elapsed.as_secs_f64(), redis_us)
    };
    // Unkeyed first, then keyed, then unkeyed again: the unkeyed figure is
    // the mean of the two, so a machine warming up or slowing down favours
    // neither side.
    let (plain_a, plain_redis_a) = run(false);
    let (keyed, keyed_redis) = run(true);
    let (plain_b, plain_redis_b) = run(false);
    let plain = (plain_a + plain_b) / 2.0;
    let plain_redis = (plain_redis_a + plain_redis_b) / 2.0;
    json!({
        "tasks": tasks, "concurrency": concurrency, "keys": KEYS,
        "unkeyed_tasks_per_s": plain.round(), "keyed_tasks_per_s": keyed.round(),
        "unkeyed_redis_cpu_us_per_task": (plain_redis * 10.0).round() / 10.0,
        "keyed_redis_cpu_us_per_task": (keyed_redis * 10.0).round() / 10.0,
        "keyed_over_unkeyed": (keyed / plain * 100.0).round() / 100.0,
    })
}
