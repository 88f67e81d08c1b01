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
//! | `attempt`       | `{"succeed_on": 3}`        | `retryable("attempt N of M")` until attempt >= M, then `{"attempt": N}` |
//! | `version`       | —                          | `{"version": "v1"}`                                       |
//! | `count`         | —                          | `{"count": n}`: calls so far in this instance (1 in a fresh one) |

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use sluice_guest::{Plugin, Task, TaskError};

/// Every task type this plugin handles.
pub const TASK_TYPES: [&str; 12] = [
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

/// Busy-waits for `d`, reading the monotonic clock.
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        black_box(());
    }
}

sluice_guest::export_plugin!(Misbehave);
