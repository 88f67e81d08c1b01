//! The sandbox: timeouts, memory limits and capabilities.

use serde_json::json;

use crate::harness::*;

#[test]
fn a_looping_plugin_times_out_and_the_worker_goes_on() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "timeout_ms = 300\n")]);
    push(
        &redis,
        &[
            json!({"id": "loop-1", "task_type": "loop_forever", "max_retries": 0}),
            json!({"id": "after-1", "task_type": "echo", "params": {}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "1"]));
    let r = result(&redis, "loop-1").unwrap();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert_eq!(r["error"]["message"], "timed out after 300 ms");
    assert_eq!(result(&redis, "after-1").unwrap()["status"], "succeeded");
    assert_eq!(
        dead_letter(&redis, "loop-1").unwrap()["error"]["kind"],
        "timeout"
    );
}

#[test]
fn a_plugin_allocating_without_bound_hits_its_memory_limit() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "memory_bytes = 33554432\n")]);
    push(
        &redis,
        &[
            json!({"id": "alloc-1", "task_type": "alloc_forever", "max_retries": 0}),
            json!({"id": "after-1", "task_type": "echo", "params": {}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "alloc-1").unwrap();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["kind"], "memory", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("33554432"),
        "{r}"
    );
    assert_eq!(result(&redis, "after-1").unwrap()["status"], "succeeded");
}

#[test]
fn files_outside_the_grant_are_denied() {
    let redis = RedisServer::start();
    let granted = TempDir::new("granted");
    std::fs::write(granted.path().join("ok.txt"), "hello").unwrap();
    let manifest = format!(
        "[[dir]]\nhost = \"{}\"\nguest = \"/data\"\n",
        granted.path().display()
    );
    let plugins = Plugins::new(&[("misbehave", &manifest)]);
    push(
        &redis,
        &[
            json!({"id": "passwd", "task_type": "read_file", "params": {"path": "/etc/passwd"}}),
            json!({"id": "escape", "task_type": "read_file", "params": {"path": "/data/../../etc/passwd"}}),
            json!({"id": "granted", "task_type": "read_file", "params": {"path": "/data/ok.txt"}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    for id in ["passwd", "escape"] {
        let r = result(&redis, id).unwrap();
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["error"]["kind"], "fatal", "{r}");
    }
    assert_eq!(
        result(&redis, "granted").unwrap()["result"],
        json!({"len": 5})
    );

    // With no manifest at all there is no filesystem.
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[json!({"id": "none", "task_type": "read_file", "params": {"path": "/data/ok.txt"}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(result(&redis, "none").unwrap()["error"]["kind"], "fatal");
}

#[test]
fn environment_variables_are_visible_only_when_granted() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[(
        "misbehave",
        "inherit_env = [\"SLUICE_TEST_SHARED\"]\nenv = { FIXED = \"yes\" }\n",
    )]);
    push(
        &redis,
        &[
            json!({"id": "fixed", "task_type": "env", "params": {"name": "FIXED"}}),
            json!({"id": "inherited", "task_type": "env", "params": {"name": "SLUICE_TEST_SHARED"}}),
            json!({"id": "secret", "task_type": "env", "params": {"name": "SLUICE_TEST_SECRET"}}),
            json!({"id": "path", "task_type": "env", "params": {"name": "PATH"}}),
        ],
    );
    let mut cmd = worker_command(&redis, &plugins);
    cmd.arg("--burst")
        .env("SLUICE_TEST_SHARED", "shared")
        .env("SLUICE_TEST_SECRET", "secret");
    assert_ok(&wait_output(cmd, std::time::Duration::from_secs(60)));
    let value = |id: &str| result(&redis, id).unwrap()["result"]["value"].clone();
    assert_eq!(value("fixed"), "yes");
    assert_eq!(value("inherited"), "shared");
    assert_eq!(value("secret"), serde_json::Value::Null);
    assert_eq!(value("path"), serde_json::Value::Null);
}

#[test]
fn instance_reuse_is_opt_in_bounded_and_never_follows_a_trap() {
    let redis = RedisServer::start();
    let count = |id: &str| json!({"id": id, "task_type": "count"});
    let counted = |id: &str| result(&redis, id).unwrap()["result"]["count"].clone();

    // Default: a fresh instance per task, so nothing carries over.
    let fresh = Plugins::new(&[("misbehave", "")]);
    push(&redis, &[count("f1"), count("f2"), count("f3")]);
    assert_ok(&run_burst(&redis, &fresh, &["--concurrency", "1"]));
    for id in ["f1", "f2", "f3"] {
        assert_eq!(counted(id), 1, "{id} ran in a fresh instance");
    }

    // Opted in: one instance serves up to 3 tasks; one that trapped is discarded.
    let reused = Plugins::new(&[("misbehave", "instance_reuse = 3\n")]);
    push(
        &redis,
        &[
            count("r1"),
            count("r2"),
            count("r3"),
            count("r4"),
            json!({"id": "boom", "task_type": "trap", "max_retries": 0}),
            count("r5"),
            count("r6"),
        ],
    );
    assert_ok(&run_burst(&redis, &reused, &["--concurrency", "1"]));
    let counts: Vec<_> = ["r1", "r2", "r3", "r4", "r5", "r6"]
        .iter()
        .map(|id| counted(id))
        .collect();
    assert_eq!(counts, [1, 2, 3, 1, 1, 2]);
    assert_eq!(result(&redis, "boom").unwrap()["error"]["kind"], "trap");
}
