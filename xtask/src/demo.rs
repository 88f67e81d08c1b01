//! `cargo xtask demo`: the main job, end to end. Builds the plugins and the
//! worker, finds (or starts) a Redis, enqueues a `generate_log_file` then a
//! `parse_log_file` task in the seed's format, and the same pipeline as one
//! push (a `generate_log_file` with `"then_parse": true`, which enqueues its
//! `parse_log_file` follow-up when it succeeds), runs `sluice worker --burst`
//! and prints the result records, the chained ones found through the
//! parent's `children`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::Commands;

/// A redis-server this demo started; stopped on drop.
struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(root: &Path) -> Result<()> {
    // Decided before any work, so a missing redis-server is installed (or
    // asked for) up front rather than after the build.
    let needs_private_redis = std::env::var_os("REDIS_URL").is_none() && !use_local_redis();
    crate::setup::ensure(
        root,
        crate::setup::Needs {
            wasm_target: true,
            redis_server: needs_private_redis,
            polyglot: false,
        },
    )?;
    println!("== building the example plugins");
    crate::plugins::build(root, crate::plugins::Selection::Examples)?;
    println!("== building the worker (cargo build -p sluice)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", "sluice"])
        .status()?;
    anyhow::ensure!(status.success(), "building sluice failed");
    let sluice = crate::plugins::target_dir(root).join("debug/sluice");

    let (url, _private) = find_redis()?;
    println!("== redis: {url}");
    let mut conn = redis::Client::open(url.as_str())?
        .get_connection()
        .context("connect to redis")?;

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let generate = serde_json::json!({
        "id": format!("demo-generate-{stamp}"),
        "task_type": "generate_log_file",
        "params": {"file": "demo.log", "lines": 1000, "seed": 42}
    });
    let parse = serde_json::json!({
        "id": format!("demo-parse-{stamp}"),
        "task_type": "parse_log_file",
        "params": {"path": "demo.log"}
    });
    let chained = serde_json::json!({
        "id": format!("demo-chain-{stamp}"),
        "task_type": "generate_log_file",
        "params": {"file": "demo-chain.log", "lines": 1000, "seed": 7, "then_parse": true}
    });
    for task in [&generate, &parse, &chained] {
        println!("RPUSH task_queue '{task}'");
        let _: i64 = conn.rpush("task_queue", task.to_string())?;
    }

    println!("== sluice worker --burst --concurrency 1 (FIFO: generate before parse)");
    let status = Command::new(&sluice)
        .current_dir(root)
        .args([
            "worker",
            "--burst",
            "--concurrency",
            "1",
            "--queue",
            "task_queue",
            "--redis-url",
            &url,
            "--plugins",
        ])
        .arg(crate::plugins::target_dir(root).join("plugins"))
        .status()
        .with_context(|| format!("cannot run {}", sluice.display()))?;
    anyhow::ensure!(status.success(), "the worker failed ({status})");

    println!("== results (sluice result ID)");
    for task in [&generate, &parse] {
        let id = task["id"].as_str().expect("id");
        let status = Command::new(&sluice)
            .args(["result", id, "--redis-url", &url])
            .status()?;
        anyhow::ensure!(status.success(), "no result for {id}");
    }

    println!("== the chain, one push: generate_log_file with then_parse, then its children");
    let mut ids = vec![chained["id"].as_str().expect("id").to_owned()];
    while let Some(id) = ids.pop() {
        let output = Command::new(&sluice)
            .args(["result", &id, "--redis-url", &url])
            .output()?;
        anyhow::ensure!(output.status.success(), "no result for {id}");
        let text = String::from_utf8_lossy(&output.stdout);
        print!("{text}");
        let record: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        anyhow::ensure!(
            record["status"] == "succeeded",
            "the chained task {id} did not succeed"
        );
        for child in record["children"].as_array().into_iter().flatten() {
            ids.extend(child.as_str().map(str::to_owned));
        }
    }
    Ok(())
}

/// The Redis the demo uses when `REDIS_URL` is unset and it answers.
const LOCAL_REDIS: &str = "redis://127.0.0.1:6379/";

/// Whether to use the Redis on localhost:6379: when it answers, except in
/// CI (`CI` set), where that server is the machine's shared one and the
/// demo starts a private redis-server instead.
fn use_local_redis() -> bool {
    std::env::var_os("CI").is_none() && ping(LOCAL_REDIS)
}

/// `REDIS_URL`, else a Redis on localhost:6379 (not in CI), else a private
/// redis-server.
fn find_redis() -> Result<(String, Option<PrivateRedis>)> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    if use_local_redis() {
        return Ok((LOCAL_REDIS.into(), None));
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = match Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(child) => PrivateRedis(child),
        Err(_) => bail!(
            "no Redis found (REDIS_URL unset, nothing on localhost:6379) and no redis-server to start.\n\
             Install it with: sudo apt-get install redis-server   (or: brew install redis)\n\
             or point REDIS_URL at a Redis, e.g. REDIS_URL=redis://host:6379 cargo xtask demo"
        ),
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(&url) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the private redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("(started a private redis-server on port {port}; it stops with the demo)");
    Ok((url, Some(child)))
}

fn ping(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}
