//! The side-by-side benchmark: Sluice (WebAssembly `parse_log_file`, a no-op
//! component, and the same pipeline with a native Rust parser) against the
//! seed article's worker (`shared/peers/seed_worker.py`), on one private
//! `redis-server`, in one run.
//!
//! Run it with `cargo xtask bench [-- --tasks N]` (release build). Under
//! `cargo test --bench pipeline` it does a small smoke run.
//!
//! For each worker it reports tasks/s at saturation (N tasks queued first,
//! then a burst worker) with the CPU each task cost the worker and Redis
//! (µs), pickup latency p50/p99 (enqueue → handler start) at a fixed offered
//! rate, peak RSS and resident memory after a tenth of the tasks (MiB; flat
//! means no growth), Redis's `used_memory` once the result records (TTL
//! [`RESULT_TTL_SECS`]) of a [`WARM_UP_TASKS`] warm-up burst and then those of
//! the run expired (MiB; the two should match), and the per-task sandbox
//! cost (sequential, µs: the whole fresh sandbox, and instantiate + call
//! alone; the JSON line splits it into setup, instantiate, call, teardown);
//! then the ratios Sluice/seed and wasm/native. A fourth Sluice row,
//! `wasm-parse-reuse`, runs the same plugin opted in to `instance_reuse`
//! ([`REUSE`] tasks per instance), with its ratios printed apart: the
//! targets are for a fresh instance per task.
//!
//! The main rows' tasks carry `id` and `reply_to`, so both Sluice and the
//! seed's worker push a result per task. Two more rows, `wasm-parse-bare`
//! and `seed-python-bare`, run the seed article's bare
//! `{"task_type", "params"}` tasks (see [`Format`]), with a Sluice/seed
//! ratio of their own.
//!
//! Then the per-key order figures (`ordering_keys`): the same wasm
//! `parse_log_file` job with 1 000 `ordering_key`s and with none, tasks/s of
//! each and their ratio (issue #21; target ≥ 0.8).
//!
//! Sluice runs 256 tasks at once by default (`--concurrency`): enough for
//! fetches and acknowledgements to travel in batches while both cores stay
//! busy (64 measured ~25 % fewer tasks/s here; 512 no more than 256).
//! Each Sluice scenario runs in a child process of its own so that its peak
//! RSS is its own. Everything shares the machine's cores with Redis.

#[path = "../../tests/e2e/harness.rs"]
#[allow(unused_imports, missing_docs)]
mod harness;

/// Multi-tenant figures: metering cost, CPU shares, pickup under a backlog.
#[path = "tenant_shares/mod.rs"]
mod tenant_shares;

/// Per-key order figures: 1 000 `ordering_key`s vs none, same job.
#[path = "ordering_keys/mod.rs"]
mod ordering_keys;
/// The cost of `--wait-replicas` (Redis `WAIT` after each acknowledgement batch).
#[path = "wait_replicas/mod.rs"]
mod wait_replicas;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Commands;
use serde_json::{Value, json};
use sluice::queue::{Queue, Retention};
use sluice::registry::{Registry, SharedRegistry};
use sluice::sandbox::{Plugin, RunTimings, Sandbox, SandboxConfig, TaskFailure, TaskInput};
use sluice::worker::{Summary, TaskStartProbe, Worker, WorkerConfig};

/// The `sluice` binary's allocator (see its `main.rs`), so that the
/// benchmark measures what the worker runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const LOG_LINES: usize = 20;

/// `instance_reuse` of the `wasm-parse-reuse` scenario: the opt-in
/// speed/isolation trade-off, measured beside the default fresh instance.
const REUSE: u32 = 100;

struct Args {
    smoke: bool,
    tasks: usize,
    concurrency: usize,
    rate: u64,
    latency_secs: u64,
    scenario: Option<String>,
    redis_url: Option<String>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let smoke = !argv.iter().any(|a| a == "--bench");
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let num = |name: &str, full: u64, smoke_value: u64| {
        get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { smoke_value } else { full })
    };
    Args {
        smoke,
        tasks: num("--tasks", 200_000, 2_000) as usize,
        concurrency: num("--concurrency", 256, 8) as usize,
        rate: num("--rate", 1_000, 500),
        latency_secs: num("--latency-secs", 5, 1),
        scenario: get("--scenario"),
        redis_url: get("--redis-url"),
    }
}

/// The 20-line log every `parse_log_file` task carries inline (built once:
/// the benchmark enqueues hundreds of thousands of tasks).
fn log_text() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let levels = [
            "INFO", "INFO", "DEBUG", "WARN", "ERROR", "INFO", "TRACE", "ERROR", "INFO", "FATAL",
        ];
        (0..LOG_LINES)
            .map(|i| {
                format!(
                    "2026-11-24T03:47:{:02}.{:03}Z {:<5} [svc{}] event {} happened: code={}",
                    i,
                    i * 7,
                    levels[i % 10],
                    i % 3,
                    i,
                    i % 4
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    &TEXT
}

/// What the enqueued tasks look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `id`, `task_type`, `params` and `reply_to`: each worker also pushes a
    /// result record onto the reply list (the seed's worker too), so both do
    /// the same work.
    WithReply,
    /// The seed article's bare `{"task_type", "params"}`: the seed's worker
    /// writes nothing back, Sluice still acknowledges and stores a result
    /// record under the id it assigns.
    Bare,
}

fn message(task_type: &str, id: &str, format: Format) -> String {
    let params = if task_type == "noop" {
        json!({})
    } else {
        json!({"text": log_text()})
    };
    match format {
        Format::WithReply => {
            json!({"id": id, "task_type": task_type, "params": params, "reply_to": "bench_replies"})
        }
        Format::Bare => json!({"task_type": task_type, "params": params}),
    }
    .to_string()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A `/proc/self/status` memory line (`VmHWM`, `VmRSS`), MiB.
fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    proc_status_mib("VmRSS:")
}

/// TTL of the result records the saturation run writes, seconds.
const RESULT_TTL_SECS: u64 = 2;

/// Tasks of the burst before Redis's baseline memory is measured.
const WARM_UP_TASKS: usize = 1_000;

/// The sum of numeric `fields` of one `INFO` section of Redis.
fn redis_info_sum(conn: &mut redis::Connection, section: &str, fields: &[&str]) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(conn)
        .unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| fields.contains(name))
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

/// Redis's `used_memory`, MiB.
fn redis_used_memory_mib(conn: &mut redis::Connection) -> f64 {
    redis_info_sum(conn, "memory", &["used_memory"]) / (1024.0 * 1024.0)
}

/// Redis's `used_memory` (MiB) once the run's result records have expired
/// and its reply list is consumed (as a producer would), waiting at most 30 s.
fn redis_memory_after_expiry(conn: &mut redis::Connection) -> f64 {
    let _: () = redis::cmd("DEL").arg("bench_replies").query(conn).unwrap();
    std::thread::sleep(Duration::from_secs(RESULT_TTL_SECS));
    let deadline = Instant::now() + Duration::from_secs(30);
    // What stays: the queue's few fixed keys (workers, stats).
    while Instant::now() < deadline && redis::cmd("DBSIZE").query::<u64>(conn).unwrap_or(0) > 10 {
        std::thread::sleep(Duration::from_millis(200));
    }
    redis_used_memory_mib(conn)
}

/// CPU time (user + system) this process has used, seconds (`/proc/self/stat`,
/// clock ticks of 10 ms).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time (user + system) the Redis server has used, seconds (`INFO cpu`).
fn redis_cpu_secs(conn: &mut redis::Connection) -> f64 {
    redis_info_sum(conn, "cpu", &["used_cpu_user", "used_cpu_sys"])
}

/// `secs` of CPU spread over `tasks`, in µs per task (one decimal).
fn us_per_task(secs: f64, tasks: usize) -> f64 {
    (secs / tasks as f64 * 1e7).round() / 10.0
}

fn push_all(conn: &mut redis::Connection, task_type: &str, format: Format, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.rpush("task_queue", message(task_type, &format!("sat{i}"), format))
            .ignore();
        if i % 1000 == 999 || i + 1 == n {
            pipe.query::<()>(conn).unwrap();
            pipe = redis::pipe();
        }
    }
}

/// Pushes `rate` tasks per second for `secs`, recording each send time (Unix µs).
fn paced_producer(url: &str, task_type: &str, rate: u64, secs: u64) -> HashMap<String, u64> {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut sent = HashMap::new();
    let start = Instant::now();
    let n = rate * secs;
    for i in 0..n {
        let due = start + Duration::from_micros(i * 1_000_000 / rate);
        while Instant::now() < due {
            std::thread::sleep(
                due.saturating_duration_since(Instant::now())
                    .min(Duration::from_micros(200)),
            );
        }
        let id = format!("lat{i}");
        let msg = message(task_type, &id, Format::WithReply);
        sent.insert(id, now_us());
        let _: i64 = conn.rpush("task_queue", msg).unwrap();
    }
    sent
}

fn latencies_ms(sent: &HashMap<String, u64>, started: &HashMap<String, u64>) -> (f64, f64, usize) {
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(id, s)| {
            started
                .get(id)
                .map(|t| t.saturating_sub(*s) as f64 / 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&lat, 0.5), percentile(&lat, 0.99), lat.len())
}

// ---------------------------------------------------------------- Sluice child

fn sluice_scenario(name: &str, a: &Args) -> Value {
    let url = a.redis_url.clone().expect("--redis-url");
    let (base, format) = match name.strip_suffix("-bare") {
        Some(base) => (base, Format::Bare),
        None => (name, Format::WithReply),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: (a.concurrency * 2 + 8) as u32,
        ..SandboxConfig::default()
    })
    .unwrap();
    let (task_type, plugin) = rt.block_on(async {
        match base {
            "native-parse" => {
                let handler: sluice::sandbox::NativeHandler = Arc::new(|t: &TaskInput<'_>| {
                    #[derive(serde::Deserialize)]
                    struct P {
                        text: String,
                    }
                    let p: P = serde_json::from_str(t.params)
                        .map_err(|e| TaskFailure::Fatal(e.to_string()))?;
                    Ok(serde_json::to_string(&parse_log_file::parse_log_text(&p.text)).unwrap())
                });
                (
                    "parse_log_file",
                    Plugin::native("parse-log-file-native", &["parse_log_file"], handler),
                )
            }
            _ => {
                let (file, task_type) = if base == "wasm-noop" {
                    ("noop", "noop")
                } else {
                    ("parse-log-file", "parse_log_file")
                };
                // Load the component alone, without the example manifest's directory grant.
                let dir = harness::TempDir::new("bench-plugin");
                let path = dir.path().join(format!("{file}.wasm"));
                std::fs::copy(harness::built_plugin(file), &path).unwrap();
                if base == "wasm-parse-reuse" {
                    let manifest = format!("instance_reuse = {REUSE}\n");
                    std::fs::write(path.with_extension("toml"), manifest).unwrap();
                }
                (task_type, Plugin::load(&sandbox, &path).await.unwrap())
            }
        }
    });

    // Per-task sandbox cost, sequential: the whole fresh sandbox (store,
    // instance, call, teardown) and, separately, instantiate + call.
    let params = if task_type == "noop" {
        "{}".to_owned()
    } else {
        json!({"text": log_text()}).to_string()
    };
    let (mut costs, parts) = rt.block_on(async {
        let cancel = Default::default();
        let (mut costs, mut parts) = (Vec::new(), Vec::new());
        for i in 0..2_000u32 {
            let input = TaskInput {
                id: "cost",
                task_type,
                params: &params,
                attempt: 1,
            };
            let t = Instant::now();
            let (outcome, timings) = sandbox.run_timed(&plugin, &input, &cancel).await;
            let total = t.elapsed();
            outcome.unwrap();
            if i >= 100 {
                costs.push(total.as_secs_f64() * 1e6);
                parts.push(timings);
            }
        }
        (costs, parts)
    });
    let median_us = |f: &dyn Fn(&RunTimings) -> Duration| {
        let mut v: Vec<f64> = parts.iter().map(|t| f(t).as_secs_f64() * 1e6).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        percentile(&v, 0.5)
    };
    let sandbox_parts = json!({
        "instantiate_call_us_p50": median_us(&|t| t.instantiate + t.call),
        "setup_us_p50": median_us(&|t| t.setup),
        "instantiate_us_p50": median_us(&|t| t.instantiate),
        "call_us_p50": median_us(&|t| t.call),
        "teardown_us_p50": median_us(&|t| t.teardown),
    });
    costs.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let registry = SharedRegistry::new(Registry::from_plugins(vec![plugin]).unwrap());
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();

    // Saturation: N tasks queued, then a burst worker. Result records get a
    // short TTL so that Redis's memory can be seen returning to its baseline,
    // which is measured the same way after a short warm-up burst (the
    // queue's scripts loaded and its fixed keys written).
    let retention = Retention {
        result_ttl_secs: RESULT_TTL_SECS,
        ..Retention::default()
    };
    let warm_up = WARM_UP_TASKS.min(a.tasks);
    push_all(&mut conn, task_type, format, warm_up);
    let (_, summary) = burst(
        &rt,
        &url,
        &registry,
        &sandbox,
        &retention,
        a,
        Arc::new(|_: &str| {}),
    );
    assert_eq!(summary.succeeded as usize, warm_up, "{summary:?}");
    let redis_mem0 = redis_memory_after_expiry(&mut conn);
    push_all(&mut conn, task_type, format, a.tasks);
    let (cpu0, redis_cpu0) = (process_cpu_secs(), redis_cpu_secs(&mut conn));
    // Resident memory once a tenth of the tasks has started, to compare with the peak.
    let rss_early = Arc::new(Mutex::new(f64::NAN));
    let (started, early, tenth) = (
        Arc::new(AtomicUsize::new(0)),
        rss_early.clone(),
        a.tasks / 10,
    );
    let probe = Arc::new(move |_: &str| {
        if started.fetch_add(1, Ordering::Relaxed) == tenth {
            *early.lock().unwrap() = rss_mib();
        }
    });
    let (elapsed, summary) = burst(&rt, &url, &registry, &sandbox, &retention, a, probe);
    assert_eq!(summary.succeeded as usize, a.tasks, "{summary:?}");
    let throughput = a.tasks as f64 / elapsed.as_secs_f64();
    let worker_cpu_us = us_per_task(process_cpu_secs() - cpu0, a.tasks);
    let redis_cpu_us = us_per_task(redis_cpu_secs(&mut conn) - redis_cpu0, a.tasks);

    // Pickup latency at a fixed offered rate (tasks with ids, to match
    // send and start times; bare tasks only measure throughput).
    let (p50, p99, n) = if format == Format::Bare {
        (f64::NAN, f64::NAN, 0)
    } else {
        pickup_latency(&rt, &url, &registry, &sandbox, task_type, retention, a)
    };
    let redis_mem_after = redis_memory_after_expiry(&mut conn);
    let rss_early = *rss_early.lock().unwrap();
    json!({
        "worker": name, "tasks": a.tasks, "concurrency": a.concurrency, "tasks_per_s": throughput.round(),
        "worker_cpu_us_per_task": worker_cpu_us, "redis_cpu_us_per_task": redis_cpu_us,
        "pickup_p50_ms": p50, "pickup_p99_ms": p99, "latency_samples": n, "offered_rate": a.rate,
        "peak_rss_mib": peak_rss_mib(), "rss_mib_at_10pct": rss_early, "rss_mib_at_end": rss_mib(),
        "redis_mem_baseline_mib": redis_mem0, "redis_mem_after_expiry_mib": redis_mem_after,
        "sandbox_us_p50": percentile(&costs, 0.5), "sandbox_us_p99": percentile(&costs, 0.99),
        "sandbox_parts": sandbox_parts,
    })
}

/// A burst worker over the queued tasks: (wall time, its summary).
fn burst(
    rt: &tokio::runtime::Runtime,
    url: &str,
    registry: &SharedRegistry,
    sandbox: &Sandbox,
    retention: &Retention,
    a: &Args,
    on_start: TaskStartProbe,
) -> (Duration, Summary) {
    rt.block_on(async {
        let queue = Queue::connect(url, "task_queue", retention.clone())
            .await
            .unwrap();
        let worker = Worker::new(
            queue,
            registry.clone(),
            sandbox.clone(),
            WorkerConfig {
                concurrency: a.concurrency,
                burst: true,
                ..WorkerConfig::default()
            },
            "bench",
        )
        .on_task_start(on_start);
        let t = Instant::now();
        let summary = worker.run(std::future::pending()).await.unwrap();
        (t.elapsed(), summary)
    })
}

/// Pickup latency (enqueue → handler start) at `a.rate` tasks/s for
/// `a.latency_secs`: (p50 ms, p99 ms, samples).
fn pickup_latency(
    rt: &tokio::runtime::Runtime,
    url: &str,
    registry: &SharedRegistry,
    sandbox: &Sandbox,
    task_type: &str,
    retention: Retention,
    a: &Args,
) -> (f64, f64, usize) {
    let started: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let config = WorkerConfig {
        concurrency: a.concurrency,
        ..WorkerConfig::default()
    };
    let (sent, started) = rt.block_on(async {
        let queue = Queue::connect(url, "task_queue", retention).await.unwrap();
        let probe_started = started.clone();
        let worker = Worker::new(
            queue,
            registry.clone(),
            sandbox.clone(),
            config,
            "bench-latency",
        )
        .on_task_start(Arc::new(move |id: &str| {
            probe_started
                .lock()
                .unwrap()
                .insert(id.to_owned(), now_us());
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (url2, tt, rate, secs) = (url.to_owned(), task_type.to_owned(), a.rate, a.latency_secs);
        let sent = tokio::task::spawn_blocking(move || paced_producer(&url2, &tt, rate, secs))
            .await
            .unwrap();
        while started.lock().unwrap().len() < sent.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(());
        running.await.unwrap().unwrap();
        let started = started.lock().unwrap().clone();
        (sent, started)
    });
    latencies_ms(&sent, &started)
}

// ---------------------------------------------------------------- seed worker

const SEED_WRAPPER: &str = r#"
import json, sys, time, atexit, resource
sys.path.insert(0, sys.argv[1])
out_path = sys.argv[2]
import seed_worker
started = {}
orig = seed_worker.task_handler
def handler(task):
    started[task.get("id")] = int(time.time() * 1e6)
    return orig(task)
seed_worker.task_handler = handler
def dump():
    u = resource.getrusage(resource.RUSAGE_SELF)
    json.dump({"started": started, "rss_kib": u.ru_maxrss, "cpu_s": u.ru_utime + u.ru_stime}, open(out_path, "w"))
atexit.register(dump)
sys.argv = ["seed_worker.py"] + sys.argv[3:]
seed_worker.main()
"#;

/// The seed's worker on N tasks of `format`; pickup latency only for tasks
/// with ids.
fn seed_scenario(url: &str, a: &Args, format: Format) -> Option<Value> {
    let seed_dir = harness::workspace().join("../shared/peers");
    if !seed_dir.join("seed_worker.py").is_file() {
        eprintln!("seed worker: skipped ({} not found)", seed_dir.display());
        return None;
    }
    let Some(python) = harness::python_with_redis() else {
        eprintln!(
            "seed worker: skipped (no Python with redis-py: run .ci/install-polyglot or pip install redis)"
        );
        return None;
    };
    let out = harness::TempDir::new("seed");
    let wrapper = out.path().join("wrapper.py");
    std::fs::write(&wrapper, SEED_WRAPPER).unwrap();
    let run = |dump: &std::path::Path| {
        std::process::Command::new(&python)
            .arg(&wrapper)
            .arg(&seed_dir)
            .arg(dump)
            .args(["--redis-url", url, "--queue", "task_queue", "--burst"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap()
    };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    push_all(&mut conn, "parse_log_file", format, a.tasks);
    let sat_dump = out.path().join("sat.json");
    let redis_cpu0 = redis_cpu_secs(&mut conn);
    let output = run(&sat_dump);
    let redis_cpu = redis_cpu_secs(&mut conn) - redis_cpu0;
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    // "seed-worker: N tasks in S s = R tasks/s"
    let rate: f64 = line
        .split('=')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;

    let (p50, p99, n) = match format {
        Format::Bare => (f64::NAN, f64::NAN, 0),
        Format::WithReply => {
            let lat_dump = out.path().join("lat.json");
            let sent = std::thread::scope(|scope| {
                let worker = scope.spawn(|| run(&lat_dump));
                std::thread::sleep(Duration::from_millis(300));
                let sent = paced_producer(url, "parse_log_file", a.rate, a.latency_secs);
                worker.join().unwrap();
                sent
            });
            let dump: Value =
                serde_json::from_str(&std::fs::read_to_string(&lat_dump).ok()?).ok()?;
            let started: HashMap<String, u64> = dump["started"]
                .as_object()?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect();
            latencies_ms(&sent, &started)
        }
    };
    let sat: Value = serde_json::from_str(&std::fs::read_to_string(&sat_dump).ok()?).ok()?;
    Some(json!({
        "worker": match format { Format::WithReply => "seed-python", Format::Bare => "seed-python-bare" },
        "tasks": a.tasks, "concurrency": 1, "tasks_per_s": rate.round(),
        "worker_cpu_us_per_task": sat["cpu_s"].as_f64().map(|s| us_per_task(s, a.tasks)),
        "redis_cpu_us_per_task": us_per_task(redis_cpu, a.tasks),
        "pickup_p50_ms": p50, "pickup_p99_ms": p99, "latency_samples": n, "offered_rate": a.rate,
        "peak_rss_mib": sat["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        "sandbox_us_p50": Value::Null, "sandbox_us_p99": Value::Null,
    }))
}

// ---------------------------------------------------------------- parent

fn main() {
    let a = args();
    if let Some(name) = &a.scenario {
        if name == "tenancy" {
            println!("{}", tenancy_scenario(&a));
        } else if name == "ordering" {
            println!("{}", ordering_scenario(&a));
        } else if name == "wait-replicas" {
            let tasks = a.tasks.min(50_000);
            println!("{}", wait_replicas::scenario(tasks, a.concurrency));
        } else {
            println!("{}", sluice_scenario(name, &a));
        }
        return;
    }
    let redis = harness::RedisServer::start();
    let url = redis.url();
    println!(
        "sluice bench: {} tasks per worker, parse_log_file over {LOG_LINES} inline lines, concurrency {}, latency at {} tasks/s for {} s",
        a.tasks, a.concurrency, a.rate, a.latency_secs
    );
    println!(
        "redis-server {} on 127.0.0.1:{} (same machine, {} cores shared with the workers; no persistence)",
        redis_version(),
        redis.port,
        num_cpus()
    );
    let mut rows = Vec::new();
    for name in [
        "wasm-parse",
        "wasm-noop",
        "native-parse",
        "wasm-parse-reuse",
        "wasm-parse-bare",
    ] {
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .args(["--scenario", name, "--redis-url", &url])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "scenario {name} failed");
        let row: Value = serde_json::from_slice(
            out.stdout
                .split(|b| *b == b'\n')
                .find(|l| l.starts_with(b"{"))
                .unwrap(),
        )
        .unwrap();
        rows.push(row);
    }
    for format in [Format::WithReply, Format::Bare] {
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
        if let Some(row) = seed_scenario(&url, &a, format) {
            rows.push(row);
        }
    }
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let tenancy = child_scenario("tenancy", &url);
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let ordering = child_scenario("ordering", &url);
    let wait = child_scenario("wait-replicas", &url);

    println!(
        "\n| worker | tasks/s | worker CPU µs/task | Redis CPU µs/task | pickup p50 ms | pickup p99 ms | peak RSS MiB | sandbox µs p50 | sandbox µs p99 | instantiate+call µs p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let f = |k: &str, d: usize| r[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.d$}"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r["worker"].as_str().unwrap(),
            f("tasks_per_s", 0),
            f("worker_cpu_us_per_task", 1),
            f("redis_cpu_us_per_task", 1),
            f("pickup_p50_ms", 2),
            f("pickup_p99_ms", 2),
            f("peak_rss_mib", 1),
            f("sandbox_us_p50", 1),
            f("sandbox_us_p99", 1),
            r["sandbox_parts"]["instantiate_call_us_p50"]
                .as_f64()
                .map_or("-".to_owned(), |v| format!("{v:.1}"))
        );
    }
    let rate = |w: &str| {
        rows.iter()
            .find(|r| r["worker"] == w)
            .and_then(|r| r["tasks_per_s"].as_f64())
    };
    let ratio =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (a / b * 100.0).round() / 100.0);
    let sluice_vs_seed = ratio(rate("wasm-parse"), rate("seed-python"));
    let wasm_vs_native = ratio(rate("wasm-parse"), rate("native-parse"));
    let bare_vs_seed = ratio(rate("wasm-parse-bare"), rate("seed-python-bare"));
    let reuse_vs_seed = ratio(rate("wasm-parse-reuse"), rate("seed-python"));
    let reuse_vs_native = ratio(rate("wasm-parse-reuse"), rate("native-parse"));
    let show = |r: Option<f64>, unit: &str| r.map_or("-".into(), |v| format!("{v}{unit}"));
    println!(
        "\nratios, a fresh instance per task: sluice(wasm-parse)/seed = {}, wasm/native = {}",
        show(sluice_vs_seed, "x"),
        show(wasm_vs_native, "")
    );
    println!(
        "ratio on the seed article's bare tasks (no id, no reply_to: the seed writes nothing back, Sluice still stores a result record): sluice(wasm-parse-bare)/seed(bare) = {}",
        show(bare_vs_seed, "x")
    );
    println!(
        "ratios, instance_reuse = {REUSE} (opt-in): sluice(wasm-parse-reuse)/seed = {}, wasm/native = {}",
        show(reuse_vs_seed, "x"),
        show(reuse_vs_native, "")
    );
    let (m, pk) = (&tenancy["metering"], &tenancy["pickup"]);
    println!(
        "\nmetering (burn-cpu, sequential µs/task p50): 1k iterations {} -> {} with fuel (+{} %), 1M iterations {} -> {} (+{} %); one thread-CPU-clock read {} ns (two per poll of a guest call)",
        m["burn_1k_us_p50"],
        m["burn_1k_fuel_us_p50"],
        m["burn_1k_fuel_overhead_pct"],
        m["burn_1m_us_p50"],
        m["burn_1m_fuel_us_p50"],
        m["burn_1m_fuel_overhead_pct"],
        m["cpu_clock_read_ns"]
    );
    for (key, slots) in [
        ("shares_at_cores", "slots = cores"),
        ("shares", "slots = min(concurrency, 8)"),
    ] {
        let sh = &tenancy[key];
        println!(
            "tenant CPU shares ({slots}; equal weights, 10x task cost, both backlogged): heavy {} / light {} of the CPU; task starts {} / {}",
            sh["heavy_cpu_share"], sh["light_cpu_share"], sh["heavy_starts"], sh["light_starts"]
        );
    }
    println!(
        "small tenant's pickup while a big one has {} queued: p50 {} ms, p99 {} ms ({} samples at {}/s; ms resolution)",
        pk["big_backlog"], pk["pickup_p50_ms"], pk["pickup_p99_ms"], pk["samples"], pk["rate"]
    );
    let idle = &tenancy["idle_64_tenants"];
    println!(
        "idle worker with 64 tenants, tasks round robin over 63 of them: pickup p50 {} ms, p99 {} ms ({} samples at {}/s)",
        idle["pickup_p50_ms"], idle["pickup_p99_ms"], idle["samples"], idle["rate"]
    );
    println!(
        "ordering_key ({} tasks of wasm parse_log_file, concurrency {}): no key {} tasks/s, {} keys {} tasks/s, ratio keyed/unkeyed = {} (target >= 0.8); Redis CPU µs/task {} -> {}",
        ordering["tasks"],
        ordering["concurrency"],
        ordering["unkeyed_tasks_per_s"],
        ordering["keys"],
        ordering["keyed_tasks_per_s"],
        ordering["keyed_over_unkeyed"],
        ordering["unkeyed_redis_cpu_us_per_task"],
        ordering["keyed_redis_cpu_us_per_task"]
    );
    println!(
        "--wait-replicas 1 (WAIT after each acknowledgement batch; master and replica on this machine), wasm-noop, {} tasks at concurrency {}: {} tasks/s without, {} with ({}x)",
        wait["tasks"],
        wait["concurrency"],
        wait["tasks_per_s_no_wait"],
        wait["tasks_per_s_wait_1"],
        wait["wait_over_no_wait"]
    );
    println!(
        "{}",
        json!({"bench": "sluice-pipeline", "rows": rows, "tenancy": tenancy, "ordering": ordering, "wait_replicas": wait, "sluice_over_seed": sluice_vs_seed, "wasm_over_native": wasm_vs_native,
               "bare_sluice_over_seed": bare_vs_seed,
               "instance_reuse": REUSE, "reuse_over_seed": reuse_vs_seed, "reuse_over_native": reuse_vs_native})
    );
}

/// The per-key order figures (see `ordering_keys`), in this process: a
/// quarter as many tasks per run as the other scenarios (three runs).
fn ordering_scenario(a: &Args) -> Value {
    let url = a.redis_url.clone().expect("--redis-url");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    ordering_keys::scenario(&rt, &url, (a.tasks / 4).max(100), a.concurrency, log_text())
}

/// The multi-tenant figures (see `tenant_shares`), in this process.
fn tenancy_scenario(a: &Args) -> Value {
    let url = a.redis_url.clone().expect("--redis-url");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let metering = tenant_shares::metering(&rt, a.smoke);
    // At the core count and at up to 8 slots (see the README's limits).
    let shares_at_cores = tenant_shares::shares(&rt, &url, a.smoke, num_cpus());
    let _: () = redis::cmd("FLUSHALL")
        .query(
            &mut redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    let shares = tenant_shares::shares(&rt, &url, a.smoke, a.concurrency);
    let flush = || {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    };
    flush();
    let backlog = if a.smoke { 5_000 } else { 100_000 };
    let secs = a.latency_secs.max(2);
    let pickup = tenant_shares::pickup(&rt, &url, a.concurrency, 100, secs, 1, backlog);
    flush();
    let idle64 = tenant_shares::pickup(&rt, &url, a.concurrency, 200, secs, 63, 0);
    json!({"metering": metering, "shares": shares, "shares_at_cores": shares_at_cores, "pickup": pickup, "idle_64_tenants": idle64})
}

/// Runs scenario `name` in a child process of this benchmark; its JSON line.
fn child_scenario(name: &str, url: &str) -> Value {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .args(["--scenario", name, "--redis-url", url])
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scenario {name} failed");
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .find(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap()
}

fn redis_version() -> String {
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("?")
        .to_owned()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
