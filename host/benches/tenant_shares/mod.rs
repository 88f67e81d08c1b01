//! Multi-tenant figures for `cargo xtask bench` (issue #18):
//!
//! - **metering cost**: the per-task cost (sequential, µs p50) of the
//!   `burn-cpu` plugin on a light and a heavy task, on an engine without
//!   fuel and on one metering fuel, and what one read of the thread CPU
//!   clock costs (every task reads it twice per poll of its guest call);
//! - **CPU shares**: two equal-weight tenants, one with tasks 10× as costly,
//!   both backlogged on one worker: each one's share of the CPU while both
//!   had work, and of the task starts;
//! - **pickup**: a small tenant's pickup latency (enqueue → start, ms, from
//!   its records) at a paced rate while a big tenant has a backlog queued.

use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::{Value, json};
use sluice::queue::Retention;
use sluice::sandbox::{Plugin, Sandbox, SandboxConfig, TaskInput, TaskLimits, thread_cpu_time};
use sluice::tenant::{ConfigFile, ServeOptions, TenantSpec, Tenants};
use sluice::worker::WorkerConfig;

use super::harness;

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Sequential per-task cost of `burn` tasks of `iterations`, µs p50: (no fuel, fuel).
fn burn_cost(rt: &tokio::runtime::Runtime, iterations: u64, runs: usize) -> (f64, f64) {
    let dir = harness::TempDir::new("bench-burn");
    let path = dir.path().join("burn-cpu.wasm");
    std::fs::copy(harness::built_plugin("burn-cpu"), &path).unwrap();
    let params = json!({ "iterations": iterations }).to_string();
    let measure = |consume_fuel: bool| {
        let sandbox = Sandbox::new(SandboxConfig {
            consume_fuel,
            ..SandboxConfig::default()
        })
        .unwrap();
        rt.block_on(async {
            let plugin = Plugin::load(&sandbox, &path).await.unwrap();
            let limits = TaskLimits {
                fuel: consume_fuel.then_some(u64::MAX / 4),
                ..TaskLimits::default()
            };
            let cancel = Default::default();
            let mut costs = Vec::new();
            for i in 0..runs + runs / 10 {
                let input = TaskInput {
                    id: "m",
                    task_type: "burn",
                    params: &params,
                    attempt: 1,
                };
                let t = Instant::now();
                let (outcome, _) = sandbox.run_metered(&plugin, &input, &cancel, &limits).await;
                outcome.unwrap();
                if i >= runs / 10 {
                    costs.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            p50(costs)
        })
    };
    // Interleave to spread machine noise over both.
    let plain = measure(false);
    let fuel = measure(true);
    (plain, fuel)
}

/// What metering costs per task (see the module docs).
pub fn metering(rt: &tokio::runtime::Runtime, smoke: bool) -> Value {
    let runs = if smoke { 100 } else { 2_000 };
    let (light_plain, light_fuel) = burn_cost(rt, 1_000, runs);
    let (heavy_plain, heavy_fuel) = burn_cost(rt, 1_000_000, runs / 10);
    let reads = 1_000_000;
    let t = Instant::now();
    let mut sink = Duration::ZERO;
    for _ in 0..reads {
        sink += thread_cpu_time();
    }
    std::hint::black_box(sink);
    let clock_ns = t.elapsed().as_secs_f64() * 1e9 / reads as f64;
    let pct = |plain: f64, fuel: f64| ((fuel / plain - 1.0) * 1000.0).round() / 10.0;
    json!({
        "burn_1k_us_p50": light_plain, "burn_1k_fuel_us_p50": light_fuel,
        "burn_1k_fuel_overhead_pct": pct(light_plain, light_fuel),
        "burn_1m_us_p50": heavy_plain, "burn_1m_fuel_us_p50": heavy_fuel,
        "burn_1m_fuel_overhead_pct": pct(heavy_plain, heavy_fuel),
        "cpu_clock_read_ns": (clock_ns * 10.0).round() / 10.0,
    })
}

fn spec(dir: &std::path::Path, name: &str, plugin: &str) -> TenantSpec {
    let plugins = dir.join(name);
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        harness::built_plugin(plugin),
        plugins.join(format!("{plugin}.wasm")),
    )
    .unwrap();
    TenantSpec {
        name: name.into(),
        queue: name.into(),
        plugins,
        weight: 1.0,
        max_concurrency: None,
        rate_per_sec: None,
        cpu_ms_per_min: None,
        fuel_per_task: None,
        memory_bytes: None,
        timeout_ms: None,
        allowed_outbound_hosts: None,
        reply_to_prefix: format!("{name}:"),
        max_message_bytes: None,
    }
}

fn records(conn: &mut redis::Connection, queue: &str) -> Vec<Value> {
    let keys: Vec<String> = conn.keys(format!("{{{queue}}}:result:*")).unwrap();
    keys.iter()
        .filter_map(|k| conn.get::<_, Option<String>>(k).unwrap())
        .map(|j| serde_json::from_str(&j).unwrap())
        .collect()
}

fn serve(
    rt: &tokio::runtime::Runtime,
    url: &str,
    config: &ConfigFile,
    concurrency: usize,
    burst: bool,
) -> (Tenants, Sandbox) {
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: (concurrency * 2 + 8) as u32,
        ..SandboxConfig::default()
    })
    .unwrap();
    let worker = WorkerConfig {
        concurrency,
        burst,
        ..WorkerConfig::default()
    };
    let options = ServeOptions {
        redis: sluice::connection::RedisConfig::single(url),
        retention: Retention {
            result_ttl_secs: 600,
            ..Retention::default()
        },
        watch: false,
        base_id: "bench".into(),
    };
    let tenants = rt
        .block_on(Tenants::load(config, &sandbox, &worker, &options))
        .unwrap();
    (tenants, sandbox)
}

/// CPU and task-start shares of two equal-weight tenants, one with 10×
/// costlier tasks, both backlogged.
pub fn shares(rt: &tokio::runtime::Runtime, url: &str, smoke: bool, concurrency: usize) -> Value {
    let dir = harness::TempDir::new("bench-tenants");
    let config = ConfigFile {
        path: dir.path().join("bench.toml"),
        worker: Default::default(),
        tenants: vec![
            spec(dir.path(), "heavy", "burn-cpu"),
            spec(dir.path(), "light", "burn-cpu"),
        ],
    };
    let light_tasks = if smoke { 400 } else { 4_000 };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let push = |conn: &mut redis::Connection, queue: &str, n: usize, iterations: u64| {
        let msgs: Vec<String> = (0..n)
            .map(|i| json!({"id": format!("{queue}-{i}"), "task_type": "burn", "params": {"iterations": iterations}}).to_string())
            .collect();
        for chunk in msgs.chunks(1000) {
            let _: i64 = conn.rpush(queue, chunk).unwrap();
        }
    };
    push(&mut conn, "heavy", light_tasks / 10, 2_000_000);
    push(&mut conn, "light", light_tasks, 200_000);
    let (tenants, _sandbox) = serve(rt, url, &config, concurrency.min(8), true);
    rt.block_on(tenants.run(std::future::pending())).unwrap();
    let heavy = records(&mut conn, "heavy");
    let light = records(&mut conn, "light");
    let last = |rs: &[Value]| {
        rs.iter()
            .filter_map(|r| r["finished_at"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let until = last(&heavy).min(last(&light));
    let window = |rs: &[Value]| {
        let inside: Vec<&Value> = rs
            .iter()
            .filter(|r| r["finished_at"].as_u64().unwrap_or(u64::MAX) <= until)
            .collect();
        let cpu: u64 = inside
            .iter()
            .filter_map(|r| r["usage"]["cpu_us"].as_u64())
            .sum();
        (cpu, inside.len())
    };
    let ((h_cpu, h_n), (l_cpu, l_n)) = (window(&heavy), window(&light));
    let total = (h_cpu + l_cpu).max(1) as f64;
    let mean = |cpu: u64, n: usize| cpu as f64 / n.max(1) as f64;
    json!({
        "heavy_cpu_share": (h_cpu as f64 / total * 1000.0).round() / 1000.0,
        "light_cpu_share": (l_cpu as f64 / total * 1000.0).round() / 1000.0,
        "heavy_starts": h_n, "light_starts": l_n,
        "heavy_cpu_us_per_task": mean(h_cpu, h_n).round(), "light_cpu_us_per_task": mean(l_cpu, l_n).round(),
    })
}

/// Pickup latency (enqueue → start, ms from the records) of `small` idle
/// tenants fed round robin at `rate` tasks/s, while tenant `big` has
/// `backlog` tasks queued (none: an idle worker).
#[allow(clippy::too_many_arguments)]
pub fn pickup(
    rt: &tokio::runtime::Runtime,
    url: &str,
    concurrency: usize,
    rate: u64,
    secs: u64,
    small: usize,
    backlog: usize,
) -> Value {
    let dir = harness::TempDir::new("bench-pickup");
    let mut tenants = vec![spec(dir.path(), "big", "noop")];
    tenants.extend((0..small).map(|i| spec(dir.path(), &format!("s{i}"), "noop")));
    let config = ConfigFile {
        path: dir.path().join("bench.toml"),
        worker: Default::default(),
        tenants,
    };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let msgs: Vec<String> = (0..backlog)
        .map(|i| json!({"id": format!("big-{i}"), "task_type": "noop"}).to_string())
        .collect();
    for chunk in msgs.chunks(1000) {
        let _: i64 = conn.rpush("big", chunk).unwrap();
    }
    let (tenants, _sandbox) = serve(rt, url, &config, concurrency, false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = rt.spawn(tenants.run(async {
        let _ = stop_rx.await;
    }));
    std::thread::sleep(Duration::from_millis(300));
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut sent = Vec::new();
    let start = Instant::now();
    let mut next = start;
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let queue = format!("s{}", i % small);
        let id = format!("small-{i}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let _: i64 = conn
            .rpush(&queue, json!({"id": id, "task_type": "noop"}).to_string())
            .unwrap();
        sent.push((queue, id, now));
        i += 1;
        next += period;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let big_left_at_end: i64 = conn.llen("big").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = Vec::new();
    for (queue, id, at) in &sent {
        loop {
            let r: Option<String> = conn.get(format!("{{{queue}}}:result:{id}")).unwrap();
            if let Some(r) = r {
                let r: Value = serde_json::from_str(&r).unwrap();
                latencies.push(r["started_at"].as_u64().unwrap().saturating_sub(*at) as f64);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "small tenant's task {id} never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = stop_tx.send(());
    rt.block_on(running).unwrap().unwrap();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    json!({
        "big_backlog": backlog, "big_left_when_done": big_left_at_end, "small_tenants": small,
        "rate": rate, "samples": latencies.len(),
        "pickup_p50_ms": pct(0.5), "pickup_p99_ms": pct(0.99),
    })
}
