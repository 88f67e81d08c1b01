//! Issue #19's bounds on inputs and outputs: results (`max_result_bytes`),
//! messages (`--max-message-bytes`), queue names and numeric ids. Each case
//! ends in a named outcome, and nothing large is written to Redis.

use redis::Commands;
use serde_json::json;

use crate::harness::*;

/// Bytes Redis holds under `key` (a string).
fn strlen(redis: &RedisServer, key: &str) -> usize {
    redis.conn().strlen(key).unwrap()
}

#[test]
fn a_result_over_max_result_bytes_fails_for_good_and_nothing_large_is_stored() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[
            json!({"id": "huge", "task_type": "huge_result", "params": {"bytes": 6 << 20}, "reply_to": "replies"}),
            json!({"id": "fits", "task_type": "huge_result", "params": {"bytes": 1 << 20}}),
            json!({"id": "after", "task_type": "echo", "params": {}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "huge").unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["attempts"], 1, "fatal: not retried");
    assert_eq!(r["error"]["kind"], "result_too_large");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("6291456 bytes") && message.contains("max_result_bytes = 1048576"),
        "{message}"
    );
    assert!(
        message.contains("it begins: \"rrrr"),
        "first bytes kept: {message}"
    );
    assert!(strlen(&redis, "{task_queue}:result:huge") < 4096);
    let reply: Vec<String> = redis.conn().lrange("replies", 0, -1).unwrap();
    assert!(reply.len() == 1 && reply[0].len() < 4096, "{reply:?}");
    let dead = dead_letter(&redis, "huge").unwrap();
    assert_eq!(dead["error"]["kind"], "result_too_large");
    // Exactly 1 MiB is allowed.
    assert_eq!(result(&redis, "fits").unwrap()["status"], "succeeded");
    assert!(strlen(&redis, "{task_queue}:result:fits") - (1 << 20) < 1024);
    assert_eq!(result(&redis, "after").unwrap()["status"], "succeeded");

    // The worker flag sets the default; a manifest key overrides it per plugin.
    push(
        &redis,
        &[json!({"id": "flag", "task_type": "huge_result", "params": {"bytes": 5000}})],
    );
    assert_ok(&run_burst(
        &redis,
        &plugins,
        &["--max-result-bytes", "4096"],
    ));
    assert_eq!(
        result(&redis, "flag").unwrap()["error"]["kind"],
        "result_too_large"
    );
    let small = Plugins::new(&[("misbehave", "max_result_bytes = 100\n")]);
    push(
        &redis,
        &[
            json!({"id": "manifest", "task_type": "huge_result", "params": {"bytes": 101}}),
            json!({"id": "manifest-ok", "task_type": "huge_result", "params": {"bytes": 100}}),
        ],
    );
    assert_ok(&run_burst(&redis, &small, &["--max-result-bytes", "4096"]));
    assert_eq!(
        result(&redis, "manifest").unwrap()["error"]["kind"],
        "result_too_large"
    );
    assert_eq!(
        result(&redis, "manifest-ok").unwrap()["status"],
        "succeeded"
    );
}

#[test]
fn a_message_over_max_message_bytes_is_dead_lettered_unparsed() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let pad = "p".repeat(2 << 20);
    let big =
        json!({"id": "big", "task_type": "version", "reply_to": "replies", "params": {"pad": pad}})
            .to_string();
    push_raw(&redis, &big);
    push_raw(&redis, &format!("not json at all {pad}"));
    push(
        &redis,
        &[json!({"id": "small", "task_type": "echo", "params": {}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));

    let r = result(&redis, "big").unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["task_type"], "version");
    assert_eq!(r["error"]["kind"], "too_large");
    assert_eq!(
        r["error"]["message"],
        format!(
            "message of {} bytes is larger than --max-message-bytes = 1048576",
            big.len()
        )
    );
    // The producer hears back on reply_to, as for any failure.
    let reply: Vec<String> = redis.conn().lrange("replies", 0, -1).unwrap();
    assert_eq!(reply.len(), 1);
    // The dead letter holds a stand-in with the first 1 KiB, not the message.
    let dead = dead_letter(&redis, "big").unwrap();
    assert_eq!(dead["message_bytes"], big.len());
    let stand_in: serde_json::Value =
        serde_json::from_str(dead["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            &stand_in["id"],
            &stand_in["reply_to"],
            &stand_in["sluice_too_large"]["bytes"]
        ),
        (&json!("big"), &json!("replies"), &json!(big.len()))
    );
    let kept = stand_in["sluice_too_large"]["excerpt"].as_str().unwrap();
    assert!(kept.len() == 1024 && big.starts_with(kept), "{kept}");
    // Requeued, the stand-in is dead-lettered as too_large again.
    let mut requeue = sluice();
    requeue.args(["dead", "requeue", "big", "--redis-url", &redis.url()]);
    assert_ok(&wait_output(requeue, std::time::Duration::from_secs(30)));
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let again = dead_letter(&redis, "big").unwrap();
    assert_eq!(
        (&again["error"]["kind"], &again["message_bytes"]),
        (&json!("too_large"), &json!(big.len()))
    );
    // Unparseable and too large: still too_large, under an assigned id.
    let letters = dead_letters(&redis);
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|d| d["error"]["kind"] == "too_large"));
    assert_eq!(result(&redis, "small").unwrap()["status"], "succeeded");
    // Nothing large stays in Redis: not in flight, not pending.
    assert_eq!(pending(&redis), 0);
    let used: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("{task_queue}:dead")
        .query(&mut redis.conn())
        .unwrap();
    assert!(used < 64 * 1024, "{used}");

    // With a larger limit the same message runs.
    push_raw(&redis, &big.replace("\"big\"", "\"big-2\""));
    assert_ok(&run_burst(
        &redis,
        &plugins,
        &["--max-message-bytes", "4194304"],
    ));
    assert_eq!(result(&redis, "big-2").unwrap()["status"], "succeeded");
}

#[test]
fn queue_names_that_break_the_hash_tag_are_rejected_at_startup() {
    for (name, expect) in [("{jobs}", "hash tag"), ("a}b", "hash tag"), ("", "empty")] {
        for command in [&["worker", "--burst"][..], &["stats"][..]] {
            let mut cmd = sluice();
            cmd.args(command)
                .args(["--redis-url", "redis://127.0.0.1:1", "--queue", name]);
            let out = wait_output(cmd, std::time::Duration::from_secs(30));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name:?} accepted: {stderr}");
            assert!(
                stderr.contains("invalid --queue") && stderr.contains(expect),
                "{name:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_numeric_id_beyond_64_bits_keeps_its_text_through_retries() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let id = "123456789012345678901234567890";
    push_raw(
        &redis,
        &format!(
            r#"{{"id": {id}, "task_type": "attempt", "params": {{"succeed_on": 2,  "n": 1.50}}, "backoff_base_ms": 1, "backoff_cap_ms": 1}}"#
        ),
    );
    push_raw(
        &redis,
        r#"{"id": -1.5e400, "task_type": "echo", "params": {"x": 1.0}}"#,
    );
    let _worker = WorkerProcess::spawn(&redis, &plugins, &[]);
    let limit = std::time::Duration::from_secs(30);
    let r = wait_result(&redis, id, limit);
    assert_eq!(r["id"], id);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["attempts"], 2);
    let r = wait_result(&redis, "-1.5e400", limit);
    assert_eq!(r["result"], json!({"x": 1.0}));
}

/// Peak resident memory a worker adds for one message of each size: what
/// the README's "Limits" section reports. Measures; asserts only the
/// issue's target for a rejected message (≤ 3× its size). Run with
/// `cargo test -p sluice --test e2e message_memory -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement (prints figures); run it on demand"]
fn message_memory() {
    let redis = RedisServer::start();
    // The processed row needs room for the params in the guest.
    let plugins = Plugins::new(&[("misbehave", "memory_bytes = 1073741824\n")]);
    let kb = |pid: i32, field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    };
    let limit = std::time::Duration::from_secs(120);
    println!(
        "| message MiB | path | worker RSS before MiB | peak MiB | extra MiB | extra / size |"
    );
    for mib in [4usize, 16, 64] {
        for processed in [false, true] {
            let max = if processed { "268435456" } else { "1048576" };
            let worker = WorkerProcess::spawn(&redis, &plugins, &["--max-message-bytes", max]);
            push(&redis, &[json!({"id": "warm", "task_type": "version"})]);
            wait_result(&redis, "warm", limit);
            std::thread::sleep(std::time::Duration::from_millis(300));
            // Reset the peak (VmHWM) to the current resident size.
            std::fs::write(format!("/proc/{}/clear_refs", worker.pid()), "5").unwrap();
            let before = kb(worker.pid(), "VmRSS");
            let id = format!("m{mib}-{processed}");
            let pad = "p".repeat((mib << 20) - 80);
            push_raw(
                &redis,
                &format!(r#"{{"id":"{id}","task_type":"version","params":{{"pad":"{pad}"}}}}"#),
            );
            drop(pad);
            let r = wait_result(&redis, &id, limit);
            let peak = kb(worker.pid(), "VmHWM");
            let extra = peak.saturating_sub(before) as f64 / 1024.0;
            println!(
                "| {mib} | {} ({}) | {:.1} | {:.1} | {extra:.1} | {:.2} |",
                if processed { "processed" } else { "too_large" },
                r["status"],
                before as f64 / 1024.0,
                peak as f64 / 1024.0,
                extra / mib as f64
            );
            if !processed && mib >= 16 {
                assert!(
                    extra <= 3.0 * mib as f64,
                    "{extra} MiB for a {mib} MiB message"
                );
            }
            drop(worker);
            let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
        }
    }
}

/// Peak resident memory of a worker running `--concurrency 256` over 512
/// messages just under the default 1 MiB limit: what the README's worst
/// case is compared with. Run with
/// `cargo test -p sluice --test e2e concurrency_memory -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement (prints figures); run it on demand"]
fn concurrency_memory() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let pad = "p".repeat(1_000_000);
    let mut c = redis.conn();
    for i in 0..512 {
        let m = format!(r#"{{"id":"c{i}","task_type":"echo_size","params":{{"pad":"{pad}"}}}}"#)
            .replace("echo_size", "version");
        let _: i64 = c.rpush("task_queue", m).unwrap();
    }
    let worker = WorkerProcess::spawn(&redis, &plugins, &["--concurrency", "256"]);
    let limit = std::time::Duration::from_secs(300);
    for i in 0..512 {
        let r = wait_result(&redis, &format!("c{i}"), limit);
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", worker.pid())).unwrap();
    let peak = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    println!("--concurrency 256, 512 messages of ~1 MB: worker {peak}");
}

#[test]
fn the_log_limits_are_manifest_keys_and_reset_per_task() {
    let redis = RedisServer::start();
    // instance_reuse: the budget is per task, not per instance.
    let plugins = Plugins::new(&[(
        "misbehave",
        "max_log_lines = 3\nmax_log_bytes = 100000\ninstance_reuse = 10\n",
    )]);
    push(
        &redis,
        &[
            json!({"id": "flood-1", "task_type": "log_flood", "params": {"lines": 100}}),
            json!({"id": "flood-2", "task_type": "log_flood", "params": {"lines": 100}}),
        ],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "1"]));
    for id in ["flood-1", "flood-2"] {
        assert_eq!(result(&redis, id).unwrap()["status"], "succeeded");
        let reports: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("log lines dropped") && l.contains(id))
            .collect();
        assert_eq!(reports.len(), 1, "{stderr}");
        assert!(
            reports[0].contains("97 log lines dropped"),
            "{}",
            reports[0]
        );
    }
    let kept = stderr
        .lines()
        .filter(|l| l.contains("log flood line"))
        .count();
    assert_eq!(kept, 6, "3 per task");
}
