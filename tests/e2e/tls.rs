//! Managed-Redis connections: TLS-only servers (`rediss://`, a private CA,
//! mutual TLS), passwords (in the URL and in `--redis-password-file`), a
//! wrong CA failing fast with the file named, and a worker running under the
//! ACL user `sluice acl worker` prints.

use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::json;

use crate::cluster_harness::{Certs, TlsRedis};
use crate::harness::*;

const TASKS: usize = 20;

/// Pushes `TASKS` noop tasks (every fifth with a `reply_to`) through `conn`.
fn push_tasks(conn: &mut redis::Connection) {
    for i in 0..TASKS {
        let mut task = json!({"id": format!("t{i}"), "task_type": "noop", "params": {}});
        if i % 5 == 0 {
            task["reply_to"] = json!(format!("replies:{i}"));
        }
        let _: i64 = conn.rpush("task_queue", task.to_string()).unwrap();
    }
}

/// Asserts every task succeeded and every reply arrived.
fn assert_all_done(conn: &mut redis::Connection) {
    for i in 0..TASKS {
        let record: Option<String> = conn.get(format!("{{task_queue}}:result:t{i}")).unwrap();
        let record: serde_json::Value =
            serde_json::from_str(&record.unwrap_or_else(|| panic!("no result for t{i}"))).unwrap();
        assert_eq!(record["status"], "succeeded", "{record}");
        if i % 5 == 0 {
            let replies: i64 = conn.llen(format!("replies:{i}")).unwrap();
            assert_eq!(replies, 1, "reply of t{i}");
        }
    }
}

/// `sluice worker --burst` with `args` (connection flags), noop plugin.
fn burst(plugins: &Plugins, args: &[String]) -> std::process::Output {
    let mut cmd = sluice();
    cmd.args(["worker", "--burst", "--queue", "task_queue", "--plugins"])
        .arg(plugins.path())
        .args(args);
    wait_output(cmd, Duration::from_secs(60))
}

#[test]
fn a_worker_runs_tasks_over_tls_with_a_private_ca() {
    let certs = Certs::new();
    let redis = TlsRedis::start(&certs, false, None);
    let mut conn = redis.conn(&certs, None);
    push_tasks(&mut conn);
    let plugins = Plugins::new(&[("noop", "")]);
    let out = burst(
        &plugins,
        &[
            "--redis-url".into(),
            redis.url(None),
            "--tls-ca-cert".into(),
            certs.path("ca.pem"),
        ],
    );
    assert_ok(&out);
    assert_all_done(&mut conn);
    // The CLI commands speak TLS too.
    let mut stats = sluice();
    stats
        .args(["stats", "--json", "--redis-url", &redis.url(None)])
        .env("SLUICE_TLS_CA_CERT", certs.path("ca.pem"));
    let out = wait_output(stats, Duration::from_secs(20));
    assert_ok(&out);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["counters"]["succeeded"], TASKS as u64, "{stats}");
}

#[test]
fn mutual_tls_with_a_password_from_a_file() {
    let certs = Certs::new();
    let password = "s3cret-tls";
    let redis = TlsRedis::start(&certs, true, Some(password));
    let mut conn = redis.conn(&certs, Some(password));
    push_tasks(&mut conn);
    let plugins = Plugins::new(&[("noop", "")]);
    // Without a client certificate the server refuses the handshake.
    let out = burst(
        &plugins,
        &[
            "--redis-url".into(),
            redis.url(Some(password)),
            "--tls-ca-cert".into(),
            certs.path("ca.pem"),
        ],
    );
    assert!(!out.status.success(), "no client certificate, yet it ran");
    // With one, and the password in a file (not on the command line).
    let secret = TempDir::new("secret");
    let file = secret.path().join("redis-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut cmd = sluice();
    cmd.args(["worker", "--burst", "--queue", "task_queue", "--plugins"])
        .arg(plugins.path())
        .args(["--redis-url", &redis.url(None)])
        .env("SLUICE_TLS_CA_CERT", certs.path("ca.pem"))
        .env("SLUICE_TLS_CERT", certs.path("client.pem"))
        .env("SLUICE_TLS_KEY", certs.path("client.key"))
        .arg("--redis-password-file")
        .arg(&file);
    let out = wait_output(cmd, Duration::from_secs(60));
    assert_ok(&out);
    assert_all_done(&mut conn);
    // A wrong password is an authentication error, not a hang.
    std::fs::write(&file, "wrong\n").unwrap();
    let mut cmd = sluice();
    cmd.args(["stats", "--redis-url", &redis.url(None)])
        .args(["--tls-ca-cert", &certs.path("ca.pem")])
        .args(["--tls-cert", &certs.path("client.pem")])
        .args(["--tls-key", &certs.path("client.key")])
        .arg("--redis-password-file")
        .arg(&file);
    let out = wait_output(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.to_lowercase().contains("auth") || stderr.contains("WRONGPASS"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_ca_is_a_clear_startup_error_not_a_hang() {
    let certs = Certs::new();
    let redis = TlsRedis::start(&certs, false, None);
    let plugins = Plugins::new(&[("noop", "")]);
    let started = Instant::now();
    let out = burst(
        &plugins,
        &[
            "--redis-url".into(),
            redis.url(None),
            "--tls-ca-cert".into(),
            certs.path("other-ca.pem"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&certs.path("other-ca.pem")), "{stderr}");
    assert!(stderr.contains("--tls-ca-cert"), "{stderr}");
    eprintln!("failed after {:?}", started.elapsed());
    // A CA file that does not exist is named too.
    let out = burst(
        &plugins,
        &[
            "--redis-url".into(),
            redis.url(None),
            "--tls-ca-cert".into(),
            "/nonexistent/ca.pem".into(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
    // And plain redis:// to a TLS port says what to try.
    let out = burst(
        &plugins,
        &[
            "--redis-url".into(),
            format!("redis://127.0.0.1:{}/", redis.port),
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn a_worker_runs_under_the_acl_user_sluice_prints() {
    let redis = RedisServer::start();
    let out = sluice()
        .args([
            "acl",
            "worker",
            "--queue",
            "task_queue",
            "--password",
            "w0rker",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("ACL SETUSER sluice-worker "), "{line}");
    let args: Vec<&str> = line.split_whitespace().collect();
    let mut setuser = redis::cmd(args[0]);
    for a in &args[1..] {
        setuser.arg(*a);
    }
    let _: () = setuser.query(&mut redis.conn()).unwrap();
    // Tasks that succeed, reply, fail for good and retry.
    let mut c = redis.conn();
    for i in 0..10 {
        let task = json!({"id": format!("ok{i}"), "task_type": "noop", "params": {}, "reply_to": format!("replies:{i}")});
        let _: i64 = c.rpush("task_queue", task.to_string()).unwrap();
    }
    push(
        &redis,
        &[
            json!({"id": "fatal", "task_type": "fail_fatal", "params": {}}),
            json!({"id": "retry", "task_type": "fail_retryable", "params": {}, "max_retries": 1}),
            // Per-key order under the ACL: the retried task holds the key,
            // the next one of the key is parked, then handed the key.
            json!({"id": "keyed1", "task_type": "fail_retryable", "params": {}, "max_retries": 1, "ordering_key": "acct"}),
            json!({"id": "keyed2", "task_type": "noop", "params": {}, "ordering_key": "acct"}),
        ],
    );
    let plugins = Plugins::new(&[("noop", ""), ("misbehave", "backoff_base_ms = 50\n")]);
    let url = format!("redis://sluice-worker:w0rker@127.0.0.1:{}/", redis.port);
    let log = TempDir::new("acl-log");
    let mut worker = sluice()
        .args(["worker", "--queue", "task_queue", "--redis-url", &url])
        .args(["--lease-ms", "3000", "--heartbeat-ms", "500", "--plugins"])
        .arg(plugins.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log.path().join("worker.log")).unwrap())
        .spawn()
        .unwrap();
    let retried = wait_result(&redis, "retry", Duration::from_secs(30));
    assert_eq!(retried["status"], "failed", "{retried}");
    assert_eq!(retried["attempts"], 2, "{retried}");
    let keyed = wait_result(&redis, "keyed2", Duration::from_secs(30));
    assert_eq!(keyed["status"], "succeeded", "{keyed}");
    assert_eq!(result(&redis, "keyed1").unwrap()["status"], "failed");
    for i in 0..10 {
        let r = wait_result(&redis, &format!("ok{i}"), Duration::from_secs(30));
        assert_eq!(r["status"], "succeeded");
    }
    // Replies, a reaper pass and a few heartbeats under the ACL.
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..10 {
        let n: i64 = c.llen(format!("replies:{i}")).unwrap();
        assert_eq!(n, 1, "reply {i}");
    }
    assert_eq!(result(&redis, "fatal").unwrap()["status"], "failed");
    assert!(dead_letter(&redis, "fatal").is_some());
    let _ = worker.kill();
    let _ = worker.wait();
    let stderr = std::fs::read_to_string(log.path().join("worker.log")).unwrap();
    assert!(!stderr.contains("NOPERM"), "{stderr}");
    // The user reaches nothing else.
    let mut worker = redis::Client::open(url).unwrap().get_connection().unwrap();
    let denied: redis::RedisResult<Vec<String>> = redis::cmd("KEYS").arg("*").query(&mut worker);
    assert!(denied.is_err());
    let denied: redis::RedisResult<Option<String>> = worker.get("other_queue_secret");
    assert!(denied.is_err());
}
