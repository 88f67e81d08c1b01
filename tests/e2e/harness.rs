//! Test harness: private `redis-server` processes on free loopback ports,
//! plugin directories with per-test manifests, and the real `sluice` binary.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A private redis-server, stopped (and its files removed) on drop.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a redis-server on a free loopback port, persisting nothing.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a redis-server with extra arguments (e.g. `--appendonly yes`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            port,
            dir: TempDir::new("redis"),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if !self.extra.iter().any(|a| a == "--appendonly") {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd.spawn().expect(
            "cannot start redis-server: install it (apt-get install redis-server) or put it on PATH",
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGKILL) and starts it again on the same port and dir.
    pub fn restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sluice-e2e-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The folders `cargo xtask plugins` builds into, searched in this order:
/// the test plugins (`misbehave`, `noop`, … — the list is `TEST_PLUGINS`
/// in `xtask/src/plugins.rs`), then the example plugins.
pub const PLUGIN_DIRS: [&str; 2] = ["target/test-plugins", "target/plugins"];

/// The component `NAME.wasm` built by `cargo xtask plugins`, from whichever
/// of [`PLUGIN_DIRS`] holds it; panics with advice when none does.
pub fn built_plugin(name: &str) -> PathBuf {
    let file = format!("{name}.wasm");
    let candidates: Vec<PathBuf> = PLUGIN_DIRS
        .iter()
        .map(|dir| workspace().join(dir).join(&file))
        .collect();
    if let Some(path) = candidates.iter().find(|p| p.is_file()) {
        return path.clone();
    }
    panic!(
        "{file} is missing from {} and {}: build the plugins first with `cargo xtask plugins` (or run the suite with `cargo xtask test`)",
        candidates[0].parent().unwrap().display(),
        candidates[1].parent().unwrap().display(),
    );
}

/// A plugins directory holding copies of built plugins with the given manifests.
pub struct Plugins {
    pub dir: TempDir,
}

impl Plugins {
    /// `plugins`: (plugin name, manifest text or "" for none).
    pub fn new(plugins: &[(&str, &str)]) -> Plugins {
        let dir = TempDir::new("plugins");
        for (name, manifest) in plugins {
            std::fs::copy(built_plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
            if !manifest.is_empty() {
                std::fs::write(dir.path().join(format!("{name}.toml")), manifest).unwrap();
            }
        }
        Plugins { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The `sluice` binary built by cargo for this test run.
pub fn sluice() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.env_remove("SLUICE_REDIS_URL")
        .env("RUST_LOG", "info,sluice=debug");
    cmd
}

/// `sluice worker` against `redis` (queue `task_queue`) with `plugins`, not started.
pub fn worker_command(redis: &RedisServer, plugins: &Plugins) -> Command {
    let mut cmd = sluice();
    cmd.args([
        "worker",
        "--redis-url",
        &redis.url(),
        "--queue",
        "task_queue",
        "--plugins",
    ])
    .arg(plugins.path());
    cmd
}

/// `sluice worker --burst` against `redis`, with `plugins`; waits for it to exit.
pub fn run_burst(redis: &RedisServer, plugins: &Plugins, extra: &[&str]) -> Output {
    let mut cmd = worker_command(redis, plugins);
    cmd.arg("--burst").args(extra);
    wait_output(cmd, Duration::from_secs(120))
}

/// Runs `cmd` to completion, killing it after `limit`. Its output is read
/// while it runs (on a thread of its own), so a chatty command cannot block
/// on a full pipe.
pub fn wait_output(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    if let Ok(out) = rx.recv_timeout(limit) {
        return out;
    }
    send_signal(pid, "KILL");
    let out = rx.recv().unwrap();
    panic!(
        "command did not finish within {limit:?}; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends signal `sig` ("TERM", "KILL", …) to process `pid` with kill(1);
/// whether it was delivered.
fn send_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Asserts a command succeeded, showing its stderr otherwise.
pub fn assert_ok(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        output.status
    );
    stderr
}

/// A spawned long-running worker (killed on drop).
pub struct WorkerProcess {
    pub child: Child,
    log: PathBuf,
    _logdir: TempDir,
}

impl WorkerProcess {
    pub fn spawn(redis: &RedisServer, plugins: &Plugins, extra: &[&str]) -> WorkerProcess {
        let logdir = TempDir::new("log");
        let log = logdir.path().join("worker.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = worker_command(redis, plugins);
        cmd.args(extra).stdout(Stdio::null()).stderr(file);
        WorkerProcess {
            child: cmd.spawn().unwrap(),
            log,
            _logdir: logdir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        assert!(send_signal(self.child.id(), sig), "kill -{sig} failed");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for exit after a signal; returns the exit status.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes messages onto `task_queue` with RPUSH, as the seed's producer does.
pub fn push(redis: &RedisServer, messages: &[serde_json::Value]) {
    let mut c = redis.conn();
    for m in messages {
        let _: i64 = c.rpush("task_queue", m.to_string()).unwrap();
    }
}

/// Pushes a raw text message.
pub fn push_raw(redis: &RedisServer, message: &str) {
    let _: i64 = redis.conn().rpush("task_queue", message).unwrap();
}

/// The result record of task `id`, if stored.
pub fn result(redis: &RedisServer, id: &str) -> Option<serde_json::Value> {
    let json: Option<String> = redis
        .conn()
        .get(format!("{{task_queue}}:result:{id}"))
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

/// Waits until task `id` has a final (succeeded/failed) result record.
pub fn wait_result(redis: &RedisServer, id: &str, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = result(redis, id)
            && r["status"] != "retrying"
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no final result for {id} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every stored result record.
pub fn all_results(redis: &RedisServer) -> Vec<serde_json::Value> {
    let mut c = redis.conn();
    let keys: Vec<String> = c.keys("{task_queue}:result:*").unwrap();
    keys.iter()
        .map(|k| {
            let j: String = c.get(k).unwrap();
            serde_json::from_str(&j).unwrap()
        })
        .collect()
}

/// Dead letter of task `id`.
pub fn dead_letter(redis: &RedisServer, id: &str) -> Option<serde_json::Value> {
    let json: Option<String> = redis.conn().hget("{task_queue}:dead", id).unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

/// All dead letters.
pub fn dead_letters(redis: &RedisServer) -> Vec<serde_json::Value> {
    let map: std::collections::HashMap<String, String> =
        redis.conn().hgetall("{task_queue}:dead").unwrap();
    map.values()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

/// A counter from `{task_queue}:stats`.
pub fn stat(redis: &RedisServer, field: &str) -> i64 {
    let v: Option<i64> = redis.conn().hget("{task_queue}:stats", field).unwrap();
    v.unwrap_or(0)
}

/// Length of the pending list.
pub fn pending(redis: &RedisServer) -> i64 {
    redis.conn().llen("task_queue").unwrap()
}

/// A Python interpreter that has redis-py: the venv `.ci/install-polyglot`
/// makes (`$SLUICE_CACHE/venv`, default `~/.cache/sluice/venv`), else `python3`.
pub fn python_with_redis() -> Option<PathBuf> {
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sluice")))?;
    [cache.join("venv/bin/python"), PathBuf::from("python3")]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import redis"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}
