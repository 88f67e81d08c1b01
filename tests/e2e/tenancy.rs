//! Multi-tenant workers (issue #18): one `sluice worker --config FILE`
//! serving several tenants — fair share by measured CPU, weights,
//! `max_concurrency`, quotas across workers, fuel, usage in result records,
//! isolation (routing, `reply_to`, ACLs), hot reload and broken directories
//! per tenant.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::{Value, json};

use crate::harness::*;

/// A configuration file with one plugins directory per tenant.
struct Tenancy {
    dir: TempDir,
    config: PathBuf,
}

/// One tenant of a [`Tenancy`]: name, plugins (name, manifest), extra TOML lines.
struct T<'a> {
    name: &'a str,
    plugins: &'a [(&'a str, &'a str)],
    extra: &'a str,
}

impl Tenancy {
    fn new(top: &str, tenants: &[T<'_>]) -> Tenancy {
        let dir = TempDir::new("tenancy");
        let mut text = format!("{top}\n");
        for t in tenants {
            let plugins = dir.path().join(t.name);
            std::fs::create_dir_all(&plugins).unwrap();
            for (name, manifest) in t.plugins {
                std::fs::copy(built_plugin(name), plugins.join(format!("{name}.wasm"))).unwrap();
                if !manifest.is_empty() {
                    std::fs::write(plugins.join(format!("{name}.toml")), manifest).unwrap();
                }
            }
            text.push_str(&format!(
                "\n[[tenant]]\nname = \"{}\"\nplugins = \"{}\"\n{}\n",
                t.name, t.name, t.extra
            ));
        }
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, text).unwrap();
        Tenancy { dir, config }
    }

    fn plugins_dir(&self, tenant: &str) -> PathBuf {
        self.dir.path().join(tenant)
    }

    fn command(&self, redis: &RedisServer, args: &[&str]) -> std::process::Command {
        let mut cmd = sluice();
        cmd.args(args)
            .arg("--redis-url")
            .arg(redis.url())
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    /// A burst worker run to completion.
    fn burst(&self, redis: &RedisServer, extra: &[&str]) -> std::process::Output {
        let mut cmd = self.command(redis, &["worker", "--burst"]);
        cmd.args(extra);
        wait_output(cmd, Duration::from_secs(180))
    }

    /// A long-running worker.
    fn spawn(&self, redis: &RedisServer, extra: &[&str]) -> Running {
        let log = self
            .dir
            .path()
            .join(format!("worker-{}.log", fastrand_u32()));
        let mut cmd = self.command(redis, &["worker"]);
        cmd.args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Running {
            child: cmd.spawn().unwrap(),
            log,
        }
    }
}

fn fastrand_u32() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn push_to(redis: &RedisServer, queue: &str, messages: &[Value]) {
    let mut c = redis.conn();
    let texts: Vec<String> = messages.iter().map(Value::to_string).collect();
    for chunk in texts.chunks(500) {
        let _: i64 = c.rpush(queue, chunk).unwrap();
    }
}

fn result_of(redis: &RedisServer, queue: &str, id: &str) -> Option<Value> {
    let json: Option<String> = redis
        .conn()
        .get(format!("{{{queue}}}:result:{id}"))
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

fn results_of(redis: &RedisServer, queue: &str) -> Vec<Value> {
    let mut c = redis.conn();
    let keys: Vec<String> = c.keys(format!("{{{queue}}}:result:*")).unwrap();
    keys.iter()
        .filter_map(|k| c.get::<_, Option<String>>(k).unwrap())
        .map(|j| serde_json::from_str(&j).unwrap())
        .collect()
}

fn dead_of(redis: &RedisServer, queue: &str, id: &str) -> Option<Value> {
    let json: Option<String> = redis.conn().hget(format!("{{{queue}}}:dead"), id).unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

fn wait_final(redis: &RedisServer, queue: &str, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = result_of(redis, queue, id)
            && r["status"] != "retrying"
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no final result for {queue}/{id} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn burns(prefix: &str, n: usize, iterations: u64) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("{prefix}-{i}"), "task_type": "burn", "params": {"iterations": iterations}}))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// CPU µs per tenant over the time both were backlogged: the records that
/// finished before the first tenant ran out of work.
fn competing_cpu(a: &[Value], b: &[Value]) -> (u64, u64) {
    let last = |rs: &[Value]| rs.iter().map(|r| u(&r["finished_at"])).max().unwrap();
    let until = last(a).min(last(b));
    let sum = |rs: &[Value]| {
        rs.iter()
            .filter(|r| u(&r["finished_at"]) <= until)
            .map(|r| u(&r["usage"]["cpu_us"]))
            .sum::<u64>()
    };
    (sum(a), sum(b))
}

#[test]
fn equal_weight_tenants_share_cpu_not_task_count() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "concurrency = 8",
        &[
            T {
                name: "heavy",
                plugins: &[("burn-cpu", "")],
                extra: "",
            },
            T {
                name: "light",
                plugins: &[("burn-cpu", "")],
                extra: "",
            },
        ],
    );
    // Equal total work; one tenant's tasks cost 10× the other's.
    push_to(&redis, "heavy", &burns("h", 60, 3_000_000));
    push_to(&redis, "light", &burns("l", 600, 300_000));
    assert_ok(&t.burst(&redis, &[]));
    let heavy = results_of(&redis, "heavy");
    let light = results_of(&redis, "light");
    assert_eq!((heavy.len(), light.len()), (60, 600));
    assert!(
        heavy
            .iter()
            .chain(&light)
            .all(|r| r["status"] == "succeeded")
    );
    assert!(heavy.iter().all(|r| r["tenant"] == "heavy"));
    let (h, l) = competing_cpu(&heavy, &light);
    let share = h as f64 / l as f64;
    eprintln!("CPU while competing: heavy {h} µs, light {l} µs, ratio {share:.2}");
    assert!((0.5..=2.0).contains(&share), "heavy {h} µs vs light {l} µs");
}

#[test]
fn weights_three_to_one_are_respected() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "concurrency = 8",
        &[
            T {
                name: "gold",
                plugins: &[("burn-cpu", "")],
                extra: "weight = 3",
            },
            T {
                name: "bronze",
                plugins: &[("burn-cpu", "")],
                extra: "",
            },
        ],
    );
    push_to(&redis, "gold", &burns("g", 300, 500_000));
    push_to(&redis, "bronze", &burns("b", 300, 500_000));
    assert_ok(&t.burst(&redis, &[]));
    let (g, b) = competing_cpu(&results_of(&redis, "gold"), &results_of(&redis, "bronze"));
    let ratio = g as f64 / b as f64;
    eprintln!("CPU while competing: gold {g} µs, bronze {b} µs, ratio {ratio:.2}");
    // 3:1 within the factor-of-two tolerance.
    assert!((1.5..=6.0).contains(&ratio), "gold {g} µs vs bronze {b} µs");
}

#[test]
fn max_concurrency_is_never_exceeded() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "concurrency = 4",
        &[T {
            name: "capped",
            plugins: &[("misbehave", "")],
            extra: "max_concurrency = 1",
        }],
    );
    let tasks: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("s-{i}"), "task_type": "spin", "params": {"ms": 40}}))
        .collect();
    push_to(&redis, "capped", &tasks);
    assert_ok(&t.burst(&redis, &[]));
    let records = results_of(&redis, "capped");
    assert_eq!(records.len(), 12);
    // Intervals (started_at, finished_at - 1 ms): the record's finish time is
    // taken just after the slot is given back.
    let spans: Vec<(u64, u64)> = records
        .iter()
        .map(|r| (u(&r["started_at"]), u(&r["finished_at"]).saturating_sub(1)))
        .collect();
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            assert!(
                a.1 <= b.0 || b.1 <= a.0,
                "two tasks ran at once: {a:?} {b:?}"
            );
        }
    }
}

#[test]
fn rate_per_sec_holds_across_two_workers() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "",
        &[T {
            name: "slow",
            plugins: &[("misbehave", "")],
            extra: "rate_per_sec = 5",
        }],
    );
    let tasks: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("r-{i}"), "task_type": "echo", "params": {}}))
        .collect();
    let _w1 = t.spawn(&redis, &[]);
    let _w2 = t.spawn(&redis, &[]);
    std::thread::sleep(Duration::from_millis(500));
    push_to(&redis, "slow", &tasks);
    let mut starts: Vec<u64> = (0..20)
        .map(|i| {
            u(&wait_final(&redis, "slow", &format!("r-{i}"), Duration::from_secs(30))["started_at"])
        })
        .collect();
    starts.sort_unstable();
    let workers: std::collections::HashSet<String> = results_of(&redis, "slow")
        .iter()
        .map(|r| r["worker"].as_str().unwrap().to_owned())
        .collect();
    eprintln!("starts {starts:?}, workers {workers:?}");
    // A bucket of 5 tokens refilled at 5/s: at most 5 + 5 starts in any second.
    for (i, &s) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|&&x| x < s + 1000).count();
        assert!(in_window <= 11, "{in_window} starts within 1 s: {starts:?}");
    }
    assert!(starts[19] - starts[0] >= 2_000, "{starts:?}");
}

#[test]
fn cpu_budget_delays_the_excess_and_runs_it_later() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "concurrency = 1",
        &[T {
            name: "budget",
            plugins: &[("burn-cpu", "")],
            extra: "cpu_ms_per_min = 200",
        }],
    );
    let _w = t.spawn(&redis, &[]);
    std::thread::sleep(Duration::from_millis(300));
    // Push ~50 ms tasks one at a time until one is held back: the budget
    // (200 ms of CPU per rolling minute) is used up after a few.
    let mut held = None;
    let mut used_us = 0;
    for i in 0..40 {
        let id = format!("c-{i}");
        push_to(&redis, "budget", &burns("c", i + 1, 25_000_000)[i..]);
        let deadline = Instant::now() + Duration::from_secs(4);
        while result_of(&redis, "budget", &id).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
        match result_of(&redis, "budget", &id) {
            Some(r) => used_us += u(&r["usage"]["cpu_us"]),
            None => {
                held = Some(id);
                break;
            }
        }
    }
    let held = held.expect("the CPU budget never held a task back");
    assert!(
        used_us >= 200_000,
        "held back after only {used_us} µs of CPU"
    );
    // Waiting, not failed: visible in `sluice stats`.
    let stats = assert_ok_stdout(t.command(&redis, &["stats"]));
    assert!(
        stats.contains("budget") && stats.contains("throttled"),
        "{stats}"
    );
    assert!(stats.contains("/200"), "{stats}");
    // Once the rolling minute moves on, it runs.
    let r = wait_final(&redis, "budget", &held, Duration::from_secs(120));
    assert_eq!(r["status"], "succeeded", "{r}");
}

fn assert_ok_stdout(cmd: std::process::Command) -> String {
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fuel_exhaustion_fails_once_and_usage_is_recorded() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "",
        &[T {
            name: "metered",
            plugins: &[("burn-cpu", "")],
            extra: "fuel_per_task = 500000000",
        }],
    );
    push_to(
        &redis,
        "metered",
        &[
            json!({"id": "small", "task_type": "burn", "params": {"iterations": 1000}}),
            json!({"id": "big", "task_type": "burn", "params": {"iterations": 3_000_000}}),
            json!({"id": "huge", "task_type": "burn", "params": {"iterations": 1_000_000_000u64}}),
        ],
    );
    assert_ok(&t.burst(&redis, &[]));
    let small = result_of(&redis, "metered", "small").unwrap();
    let big = result_of(&redis, "metered", "big").unwrap();
    let huge = result_of(&redis, "metered", "huge").unwrap();
    assert_eq!(huge["status"], "failed", "{huge}");
    assert_eq!(huge["error"]["kind"], "fuel_exhausted", "{huge}");
    assert_eq!(huge["attempts"], 1, "not retried: {huge}");
    assert_eq!(
        dead_of(&redis, "metered", "huge").unwrap()["error"]["kind"],
        "fuel_exhausted"
    );
    for r in [&small, &big] {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["tenant"], "metered");
        let usage = &r["usage"];
        assert!(u(&usage["peak_memory_bytes"]) > 0, "{usage}");
        assert!(usage["instantiate_us"].is_u64(), "{usage}");
        assert!(u(&usage["fuel"]) > 0, "{usage}");
    }
    assert!(
        u(&big["usage"]["cpu_us"]) > u(&small["usage"]["cpu_us"]),
        "{big} {small}"
    );
    assert!(
        u(&big["usage"]["fuel"]) > 100 * u(&small["usage"]["fuel"]),
        "{big} {small}"
    );
}

#[test]
fn single_tenant_records_carry_usage_without_fuel() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[json!({"id": "u1", "task_type": "echo", "params": {}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "u1").unwrap();
    assert!(r.get("tenant").is_none(), "{r}");
    assert!(r["usage"]["fuel"].is_null(), "{r}");
    assert!(r["usage"]["cpu_us"].is_u64(), "{r}");
    assert!(u(&r["usage"]["peak_memory_bytes"]) > 0, "{r}");
}

#[test]
fn tenants_are_isolated_routing_reply_to_and_instances() {
    let redis = RedisServer::start();
    let reuse = "instance_reuse = 10";
    let t = Tenancy::new(
        "concurrency = 1\nunknown_type_grace_ms = 0",
        &[
            T {
                name: "a",
                plugins: &[("misbehave", reuse)],
                extra: "",
            },
            T {
                name: "b",
                plugins: &[("misbehave", reuse), ("burn-cpu", "")],
                extra: "",
            },
        ],
    );
    push_to(
        &redis,
        "a",
        &[
            json!({"id": "a-burn", "task_type": "burn", "params": {}}),
            json!({"id": "a-ok", "task_type": "echo", "params": {}, "reply_to": "a:replies"}),
            json!({"id": "a-steal", "task_type": "echo", "params": {}, "reply_to": "b:replies"}),
            json!({"id": "a-c1", "task_type": "count"}),
            json!({"id": "a-c2", "task_type": "count"}),
            json!({"id": "a-c3", "task_type": "count"}),
        ],
    );
    push_to(&redis, "b", &[json!({"id": "b-c1", "task_type": "count"})]);
    assert_ok(&t.burst(&redis, &[]));
    // A task type only another tenant's plugin claims is unknown here.
    let burn = result_of(&redis, "a", "a-burn").unwrap();
    assert_eq!(burn["error"]["kind"], "unknown_task_type", "{burn}");
    // reply_to inside the prefix is served; outside it is refused.
    let replies: Vec<String> = redis.conn().lrange("a:replies", 0, -1).unwrap();
    assert_eq!(replies.len(), 1);
    let steal = result_of(&redis, "a", "a-steal").unwrap();
    assert_eq!(steal["status"], "failed");
    assert_eq!(steal["error"]["kind"], "forbidden_reply_to", "{steal}");
    let letter = dead_of(&redis, "a", "a-steal").unwrap();
    assert!(letter["message"].as_str().unwrap().contains("b:replies"));
    let stolen: i64 = redis.conn().llen("b:replies").unwrap();
    assert_eq!(stolen, 0, "nothing may be pushed outside the prefix");
    // Same component, two tenants: never the same instance.
    let counts: Vec<u64> = (1..=3)
        .map(|i| u(&result_of(&redis, "a", &format!("a-c{i}")).unwrap()["result"]["count"]))
        .collect();
    assert!(
        counts.iter().max() > Some(&1),
        "instance reuse is on: {counts:?}"
    );
    let b = result_of(&redis, "b", "b-c1").unwrap();
    assert_eq!(b["result"]["count"], 1, "{b}");
    assert_eq!(b["tenant"], "b");
    // `sluice result` / `sluice dead` per tenant.
    let shown = assert_ok_stdout(t.command(&redis, &["result", "--tenant", "a", "a-ok"]));
    assert!(shown.contains("\"a-ok\""), "{shown}");
    let dead = assert_ok_stdout(t.command(&redis, &["dead", "--tenant", "a", "list"]));
    assert!(dead.contains("forbidden_reply_to"), "{dead}");
}

#[test]
fn an_empty_or_broken_tenant_does_not_stop_the_others() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "unknown_type_grace_ms = 0",
        &[
            T {
                name: "empty",
                plugins: &[],
                extra: "",
            },
            T {
                name: "broken",
                plugins: &[],
                extra: "",
            },
            T {
                name: "fine",
                plugins: &[("misbehave", "")],
                extra: "",
            },
        ],
    );
    std::fs::write(
        t.plugins_dir("broken").join("junk.wasm"),
        b"not a component",
    )
    .unwrap();
    push_to(&redis, "empty", &[json!({"id": "e1", "task_type": "echo"})]);
    push_to(
        &redis,
        "broken",
        &[json!({"id": "b1", "task_type": "echo"})],
    );
    push_to(&redis, "fine", &[json!({"id": "f1", "task_type": "echo"})]);
    let out = t.burst(&redis, &[]);
    let log = assert_ok(&out);
    assert!(log.contains("junk.wasm"), "the broken file is named: {log}");
    assert_eq!(
        result_of(&redis, "fine", "f1").unwrap()["status"],
        "succeeded"
    );
    for (queue, id) in [("empty", "e1"), ("broken", "b1")] {
        let r = result_of(&redis, queue, id).unwrap();
        assert_eq!(r["error"]["kind"], "unknown_task_type", "{r}");
    }
}

/// Deploys `src` into `dir` as `name` the safe way (temporary name, rename).
fn deploy(src: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn hot_reload_of_one_tenant_leaves_the_others_untouched() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "unknown_type_grace_ms = 60000",
        &[
            T {
                name: "a",
                plugins: &[("misbehave", "")],
                extra: "",
            },
            T {
                name: "b",
                plugins: &[("misbehave", "")],
                extra: "",
            },
        ],
    );
    let w = t.spawn(&redis, &[]);
    push_to(
        &redis,
        "b",
        &[json!({"id": "b-before", "task_type": "echo"})],
    );
    assert_eq!(
        wait_final(&redis, "b", "b-before", Duration::from_secs(30))["status"],
        "succeeded"
    );
    deploy(
        &built_plugin("burn-cpu"),
        &t.plugins_dir("a"),
        "burn-cpu.wasm",
    );
    push_to(
        &redis,
        "a",
        &[json!({"id": "a-burn", "task_type": "burn", "params": {}})],
    );
    let r = wait_final(&redis, "a", "a-burn", Duration::from_secs(60));
    assert_eq!(r["status"], "succeeded", "{r}");
    // Tenant b did not gain the plugin and kept serving its own.
    push_to(
        &redis,
        "b",
        &[
            json!({"id": "b-burn", "task_type": "burn", "params": {}}),
            json!({"id": "b-after", "task_type": "echo"}),
        ],
    );
    assert_eq!(
        wait_final(&redis, "b", "b-after", Duration::from_secs(30))["status"],
        "succeeded"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        result_of(&redis, "b", "b-burn").is_none(),
        "b routed a's new plugin"
    );
    assert!(w.log().contains("plugin added"), "{}", w.log());
}

#[test]
fn the_generated_acl_allows_exactly_the_producers_operations() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "",
        &[
            T {
                name: "acme",
                plugins: &[],
                extra: "",
            },
            T {
                name: "globex",
                plugins: &[],
                extra: "",
            },
        ],
    );
    let mut cmd = sluice();
    cmd.args(["tenant", "acl", "acme", "--password", "s3cret", "--config"])
        .arg(&t.config);
    let line = assert_ok_stdout(cmd);
    let line = line.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[..2], &["ACL", "SETUSER"]);
    let mut admin = redis.conn();
    let _: () = redis::cmd("ACL")
        .arg(&words[1..])
        .query(&mut admin)
        .unwrap();
    let _: () = admin.set("{globex}:result:x", "secret").unwrap();
    let _: () = admin.set("{acme}:result:r1", "{\"ok\":true}").unwrap();

    let url = redis.url().replace("redis://", "redis://acme:s3cret@");
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    // What producers need works.
    let _: i64 = c.rpush("acme", "{\"task_type\":\"echo\"}").unwrap();
    let r: Option<String> = c.get("{acme}:result:r1").unwrap();
    assert_eq!(r.as_deref(), Some("{\"ok\":true}"));
    let _: i64 = c.rpush("acme:replies", "x").unwrap();
    let replies: Vec<String> = c.lrange("acme:replies", 0, -1).unwrap();
    assert_eq!(replies, vec!["x".to_owned()]);
    // Everything else is refused with NOPERM.
    let refused = |e: redis::RedisError| {
        assert!(e.to_string().to_uppercase().contains("NOPERM"), "{e}");
    };
    refused(c.rpush::<_, _, i64>("globex", "x").unwrap_err());
    refused(c.get::<_, Option<String>>("{globex}:result:x").unwrap_err());
    refused(c.lrange::<_, Vec<String>>("acme", 0, -1).unwrap_err());
    refused(c.hgetall::<_, Vec<String>>("{acme}:workers").unwrap_err());
    refused(c.rpush::<_, _, i64>("globex:replies", "x").unwrap_err());
    refused(redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap_err());
    refused(
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("*")
            .query::<()>(&mut c)
            .unwrap_err(),
    );
    refused(redis::cmd("KEYS").arg("*").query::<()>(&mut c).unwrap_err());
}

#[test]
fn an_invalid_config_names_file_line_and_key() {
    let t = Tenancy::new(
        "",
        &[T {
            name: "ok",
            plugins: &[],
            extra: "colour = \"blue\"",
        }],
    );
    let mut cmd = sluice();
    cmd.args(["worker", "--config"]).arg(&t.config);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sluice.toml:6: colour"), "{stderr}");
}

#[test]
fn message_bounds_apply_per_worker_and_per_tenant() {
    let redis = RedisServer::start();
    let t = Tenancy::new(
        "max_message_bytes = 4096",
        &[
            T {
                name: "roomy",
                plugins: &[("misbehave", "")],
                extra: "",
            },
            T {
                name: "tight",
                plugins: &[("misbehave", "")],
                extra: "max_message_bytes = 256",
            },
        ],
    );
    let echo = |id: &str, pad: usize| json!({"id": id, "task_type": "echo", "params": {"pad": "x".repeat(pad)}});
    // 1 KiB fits the file's 4 KiB but not the tight tenant's 256 bytes.
    push_to(&redis, "roomy", &[echo("r-1k", 1024), echo("r-8k", 8192)]);
    push_to(&redis, "tight", &[echo("t-small", 16), echo("t-1k", 1024)]);
    assert_ok(&t.burst(&redis, &[]));
    assert_eq!(
        wait_final(&redis, "roomy", "r-1k", Duration::from_secs(10))["status"],
        "succeeded"
    );
    assert_eq!(
        wait_final(&redis, "tight", "t-small", Duration::from_secs(10))["status"],
        "succeeded"
    );
    for (queue, id) in [("roomy", "r-8k"), ("tight", "t-1k")] {
        let letter =
            dead_of(&redis, queue, id).unwrap_or_else(|| panic!("{queue}/{id} not dead-lettered"));
        assert_eq!(letter["error"]["kind"], "too_large", "{letter}");
    }
}
