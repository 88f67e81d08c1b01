//! The cost of `--wait-replicas N`: the same no-op burst against a master
//! with one replica, without `WAIT` and with `WAIT 1` after every
//! acknowledgement batch (Redis `WAIT`,
//! <https://redis.io/docs/latest/commands/wait/>). Prints tasks/s of both
//! and the ratio; the replica runs on the same machine, so the figure is
//! the round-trip and replication cost, without network latency.

use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::{Value, json};
use sluice::connection::RedisConfig;
use sluice::queue::{Queue, Retention};
use sluice::registry::{Registry, SharedRegistry};
use sluice::sandbox::{Plugin, Sandbox, SandboxConfig};
use sluice::worker::{Worker, WorkerConfig};

use crate::harness;

/// Runs `tasks` no-op tasks at `concurrency` with and without
/// `--wait-replicas 1`; returns the figures (JSON).
pub fn scenario(tasks: usize, concurrency: usize) -> Value {
    let master = harness::RedisServer::start();
    let port = master.port.to_string();
    let replica = harness::RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.conn())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(Instant::now() < deadline, "replica did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: (concurrency * 2 + 8) as u32,
        ..SandboxConfig::default()
    })
    .unwrap();
    let dir = harness::TempDir::new("bench-wait");
    let path = dir.path().join("noop.wasm");
    std::fs::copy(harness::built_plugin("noop"), &path).unwrap();
    let registry = rt.block_on(async {
        let plugin = Plugin::load(&sandbox, &path).await.unwrap();
        SharedRegistry::new(Registry::from_plugins(vec![plugin]).unwrap())
    });
    let mut rates = Vec::new();
    for wait in [0, 1] {
        let _: () = redis::cmd("FLUSHALL").query(&mut master.conn()).unwrap();
        let mut c = master.conn();
        let messages: Vec<String> = (0..tasks)
            .map(|i| json!({"id": format!("w{i}"), "task_type": "noop", "params": {}}).to_string())
            .collect();
        for chunk in messages.chunks(1000) {
            let _: i64 = c.rpush("task_queue", chunk).unwrap();
        }
        let config = RedisConfig {
            wait_replicas: wait,
            ..RedisConfig::single(&master.url())
        };
        let elapsed = rt.block_on(async {
            let queue = Queue::connect_with(&config, "task_queue", Retention::default())
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
                "bench-wait",
            );
            let t = Instant::now();
            worker.run(std::future::pending()).await.unwrap();
            t.elapsed()
        });
        let done: u64 = c.hget("{task_queue}:stats", "succeeded").unwrap();
        assert_eq!(done, tasks as u64, "every task ran (wait {wait})");
        rates.push(tasks as f64 / elapsed.as_secs_f64());
    }
    json!({
        "tasks": tasks,
        "concurrency": concurrency,
        "tasks_per_s_no_wait": rates[0].round(),
        "tasks_per_s_wait_1": rates[1].round(),
        "wait_over_no_wait": (rates[1] / rates[0] * 100.0).round() / 100.0,
    })
}
