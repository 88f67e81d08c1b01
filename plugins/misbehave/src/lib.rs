//! Sluice plugin `misbehave`: a test-only plugin for the host's sandbox tests.
//!
//! | task type       | params                     | outcome                                                   |
//! |-----------------|----------------------------|-----------------------------------------------------------|
//! | `echo`          | any object                 | logs `echo <params>` (info), prints to stdout and stderr, returns the params |
//! | `fail_retryable`| —                          | `retryable("upstream busy")`                              |
//! | `fail_fatal`    | —                          | `fatal("bad input")`                                      |
//! | `trap`          | —                          | panics with `boom` (a wasm trap)                          |
//! | `loop_forever`  | —                          | spins forever (for timeouts / epoch interruption)         |
//! | `alloc_forever` | —                          | allocates and touches 1 MiB chunks until memory runs out  |
//! | `read_file`     | `{"path": "/etc/passwd"}`  | `{"len": n}`, or `fatal(<io error>)`                      |
//! | `env`           | `{"name": "X"}`            | `{"value": "..."}` or `{"value": null}`                   |
//! | `spin`          | `{"ms": 200}`              | busy-waits that long, then `{"ms": 200}`                  |
//! | `attempt`       | `{"succeed_on": 3, "ms": 0}` | busy-waits `ms` (default 0), then `retryable("attempt N of M")` until attempt >= M, then `{"attempt": N}` |
//! | `version`       | —                          | `{"version": "v1"}`                                       |
//! | `count`         | —                          | `{"count": n}`: calls so far in this instance (1 in a fresh one) |
//! | `recurse`       | —                          | recurses without end (stack overflow: a trap)             |
//! | `env_all`       | —                          | `{"vars": ["NAME", ...]}`: every variable it can see      |
//! | `stdout_flood`  | `{"bytes": n}`             | prints n bytes of lines to stdout, then `{"printed": n}`  |
//! | `log_flood`     | `{"lines": n}`             | n host `log` calls of ~100 bytes, then `{"logged": n}`    |
//! | `huge_result`   | `{"bytes": n}`             | returns a JSON string of n bytes                          |
//! | `connect`       | `{"addr": "127.0.0.1:80"}` | opens a TCP connection: `{"connected": true}` or `fatal(<io error>)` |
//! | `exit`          | `{"code": 3}`              | calls `std::process::exit(code)`                          |
//! | `enqueue`       | `{"follow_ups": [{"task_type": "echo", "params": {}}], "then": "succeed", "sleep_ms": 0, "again": false}` | enqueues each follow-up (the attempt number is added to its params as `from_attempt`), sleeps `sleep_ms`, then `then`: `succeed` → `{"ids": [...]}`, `fail_fatal`, `fail_retryable`, `fail_first` (retryable on attempt 1, else succeed); `again: true` also enqueues another `enqueue` with the same params (a chain that ends at the host's `chain_depth`) |

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use sluice_guest::{Plugin, Task, TaskError};

/// Every task type this plugin handles.
pub const TASK_TYPES: [&str; 20] = [
    "echo",
    "fail_retryable",
    "fail_fatal",
    "trap",
    "loop_forever",
    "alloc_forever",
    "read_file",
    "env",
    "spin",
    "attempt",
    "version",
    "count",
    "recurse",
    "env_all",
    "stdout_flood",
    "log_flood",
    "huge_result",
    "connect",
    "exit",
    "enqueue",
];

/// The version this build reports (`version` task); hot-reload tests build a
/// copy with another value.
pub const VERSION: &str = "v1";

/// The `misbehave` plugin.
pub struct Misbehave;

#[derive(Deserialize)]
struct PathParams {
    path: String,
}

#[derive(Deserialize)]
struct NameParams {
    name: String,
}

#[derive(Deserialize)]
struct SpinParams {
    ms: u64,
}

#[derive(Deserialize)]
struct AttemptParams {
    succeed_on: u32,
    /// Busy-wait this long first, ms (ordering tests: a run that lasts).
    #[serde(default)]
    ms: u64,
}

#[derive(Deserialize)]
struct BytesParams {
    bytes: usize,
}

#[derive(Deserialize)]
struct LinesParams {
    lines: u64,
}

#[derive(Deserialize)]
struct AddrParams {
    addr: String,
}

#[derive(Deserialize)]
struct FollowUp {
    task_type: String,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct EnqueueParams {
    #[serde(default)]
    follow_ups: Vec<FollowUp>,
    #[serde(default = "succeed")]
    then: String,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    again: bool,
}

fn succeed() -> String {
    "succeed".into()
}

#[derive(Deserialize)]
struct CodeParams {
    code: i32,
}

impl Plugin for Misbehave {
    fn task_types() -> Vec<String> {
        TASK_TYPES.iter().map(|t| (*t).to_string()).collect()
    }

    fn handle(task: Task) -> Result<impl serde::Serialize, TaskError> {
        match task.task_type.as_str() {
            "echo" => {
                sluice_guest::log::info(&format!("echo {}", task.params));
                println!("misbehave echo stdout: {}", task.params);
                eprintln!("misbehave echo stderr: {}", task.params);
                task.params()
            }
            "enqueue" => {
                let p: EnqueueParams = task.params()?;
                let mut ids = Vec::new();
                for f in p.follow_ups {
                    let mut params = f.params;
                    params.insert("from_attempt".into(), task.attempt.into());
                    ids.push(sluice_guest::enqueue(&f.task_type, &params)?);
                }
                if p.again {
                    let params: serde_json::Value =
                        serde_json::from_str(&task.params).map_err(TaskError::fatal)?;
                    ids.push(sluice_guest::enqueue("enqueue", &params)?);
                }
                if p.sleep_ms > 0 {
                    std::thread::sleep(Duration::from_millis(p.sleep_ms));
                }
                match p.then.as_str() {
                    "fail_fatal" => Err(TaskError::fatal("failed after enqueue")),
                    "fail_retryable" => Err(TaskError::retryable("failed after enqueue")),
                    "fail_first" if task.attempt == 1 => {
                        Err(TaskError::retryable("first attempt fails after enqueue"))
                    }
                    _ => Ok(json!({ "ids": ids, "attempt": task.attempt })),
                }
            }
            "fail_retryable" => Err(TaskError::retryable("upstream busy")),
            "fail_fatal" => Err(TaskError::fatal("bad input")),
            "trap" => panic!("boom"),
            "loop_forever" => loop_forever(),
            "alloc_forever" => alloc_forever(),
            "read_file" => {
                let p: PathParams = task.params()?;
                let text = std::fs::read_to_string(&p.path).map_err(TaskError::fatal)?;
                Ok(json!({ "len": text.len() }))
            }
            "env" => {
                let p: NameParams = task.params()?;
                Ok(json!({ "value": std::env::var(&p.name).ok() }))
            }
            "spin" => {
                let p: SpinParams = task.params()?;
                spin(Duration::from_millis(p.ms));
                Ok(json!({ "ms": p.ms }))
            }
            "attempt" => {
                let p: AttemptParams = task.params()?;
                spin(Duration::from_millis(p.ms));
                if task.attempt >= p.succeed_on {
                    Ok(json!({ "attempt": task.attempt }))
                } else {
                    Err(TaskError::retryable(format_args!(
                        "attempt {} of {}",
                        task.attempt, p.succeed_on
                    )))
                }
            }
            "version" => Ok(json!({ "version": VERSION })),
            "count" => {
                static CALLS: AtomicU64 = AtomicU64::new(0);
                Ok(json!({ "count": CALLS.fetch_add(1, Ordering::Relaxed) + 1 }))
            }
            "recurse" => Ok(json!({ "depth": recurse(0) })),
            "env_all" => {
                let vars: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
                Ok(json!({ "vars": vars }))
            }
            "stdout_flood" => {
                let p: BytesParams = task.params()?;
                let line = "x".repeat(99);
                let mut printed = 0;
                while printed < p.bytes {
                    println!("{line}");
                    printed += line.len() + 1;
                }
                Ok(json!({ "printed": printed }))
            }
            "log_flood" => {
                let p: LinesParams = task.params()?;
                for i in 0..p.lines {
                    sluice_guest::log::info(&format!("log flood line {i:>10} {}", "y".repeat(70)));
                }
                Ok(json!({ "logged": p.lines }))
            }
            "huge_result" => {
                let p: BytesParams = task.params()?;
                Ok(json!("r".repeat(p.bytes.saturating_sub(2))))
            }
            "connect" => {
                let p: AddrParams = task.params()?;
                std::net::TcpStream::connect(&p.addr).map_err(TaskError::fatal)?;
                Ok(json!({ "connected": true }))
            }
            "exit" => {
                let p: CodeParams = task.params()?;
                std::process::exit(p.code)
            }
            other => Err(TaskError::fatal(format_args!(
                "misbehave does not handle task type `{other}`"
            ))),
        }
    }
}

/// Never returns; `black_box` keeps the optimizer from proving the loop
/// side-effect free.
fn loop_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, writing every byte, and keeps them all until the
/// allocator fails (which aborts: a trap).
fn alloc_forever() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        chunk.fill(black_box(0xa5));
        chunks.push(black_box(chunk));
    }
}

/// Recurses until the stack runs out; `black_box` keeps the frames (and the
/// recursion) from being optimized away.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(frame[31])
}

/// Busy-waits for `d`, reading the monotonic clock.
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        black_box(());
    }
}

sluice_guest::export_plugin!(Misbehave);
