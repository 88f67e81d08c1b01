//! The main job: seed-format tasks processed by the two log plugins.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

const LOG_TEXT: &str = "2026-11-24T03:47:12.345Z INFO  [auth] login ok\n\
2026-11-24T03:47:12.400Z ERROR [db] connection refused\n\
2026-11-24T03:47:12.500Z WARN  [http] slow request\n\
2026-11-24T03:47:12.600Z ERROR [db] connection refused\n\
no level here\n";

fn log_plugins(data: &TempDir) -> Plugins {
    let grant = |mode: &str| {
        format!(
            "[[dir]]\nhost = \"{}\"\nguest = \"/data\"\nmode = \"{mode}\"\n",
            data.path().display()
        )
    };
    Plugins::new(&[
        ("generate-log-file", &grant("read-write")),
        ("parse-log-file", &grant("read-only")),
    ])
}

#[test]
fn seed_messages_without_ids_are_processed_into_result_records() {
    let redis = RedisServer::start();
    let data = TempDir::new("data");
    let plugins = log_plugins(&data);
    // Exactly the seed's producer: RPUSH of {"task_type", "params"} JSON, no id.
    for _ in 0..3 {
        push(
            &redis,
            &[json!({"task_type": "parse_log_file", "params": {"text": LOG_TEXT}})],
        );
    }
    // ... and one pushed by redis-cli, as an operator would.
    let status = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "RPUSH", "task_queue"])
        .arg(json!({"task_type": "parse_log_file", "params": {"text": LOG_TEXT}}).to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success());

    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    let results = all_results(&redis);
    assert_eq!(results.len(), 4, "one record per task; log:\n{stderr}");
    for r in &results {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["task_type"], "parse_log_file");
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["plugin"], "parse-log-file");
        assert_eq!(r["result"]["lines"], 5);
        assert_eq!(r["result"]["levels"]["ERROR"], 2);
        assert_eq!(r["result"]["levels"]["INFO"], 1);
        assert_eq!(
            r["result"]["top_errors"][0],
            json!(["[db] connection refused", 2])
        );
        assert!(r["id"].as_str().unwrap().len() >= 32, "assigned UUID id");
        assert!(r["finished_at"].as_u64() >= r["started_at"].as_u64());
        assert!(r["duration_ms"].is_u64());
    }
    assert_eq!(stat(&redis, "succeeded"), 4);
    assert_eq!(pending(&redis), 0);
}

#[test]
fn the_seed_articles_python_producer_is_accepted_as_is() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let python = python_with_redis()
        .expect("no Python with redis-py: run .ci/install-polyglot (or pip install redis)");
    // The producer from the seed article, verbatim but for the port.
    let producer = format!(
        r#"
import json
import redis

queue_name = 'task_queue'
redis_pool = redis.ConnectionPool(host='127.0.0.1', port={port})

def produce_task(task):
    rd = redis.Redis(connection_pool=redis_pool)
    return rd.rpush(queue_name, task)

for i in range(3):
    produce_task(json.dumps({{'task_type': 'echo', 'params': {{'n': i, 'text': '日志 ✓'}}}}))
"#,
        port = redis.port
    );
    let status = std::process::Command::new(python)
        .args(["-c", &producer])
        .status()
        .unwrap();
    assert!(status.success());
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let mut results = all_results(&redis);
    results.sort_by_key(|r| r["result"]["n"].as_u64());
    assert_eq!(results.len(), 3);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["result"], json!({"n": i, "text": "日志 ✓"}));
    }
}

#[test]
fn generated_file_is_parsed_by_the_next_task_and_replies_are_pushed() {
    let redis = RedisServer::start();
    let data = TempDir::new("data");
    let plugins = log_plugins(&data);
    push(
        &redis,
        &[
            json!({"id": "gen-1", "task_type": "generate_log_file", "reply_to": "replies",
               "params": {"file": "app.log", "lines": 500, "seed": 7}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let generated = result(&redis, "gen-1").unwrap();
    assert_eq!(generated["status"], "succeeded", "{generated}");
    assert_eq!(generated["result"]["lines"], 500);
    let on_disk = std::fs::read_to_string(data.path().join("app.log")).unwrap();
    assert_eq!(on_disk.lines().count(), 500);

    push(
        &redis,
        &[
            json!({"id": "parse-1", "task_type": "parse_log_file", "reply_to": "replies",
                          "params": {"path": "app.log"}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let parsed = result(&redis, "parse-1").unwrap();
    assert_eq!(parsed["status"], "succeeded", "{parsed}");
    assert_eq!(parsed["result"]["lines"], 500);
    // The parser's level counts agree with what the generator wrote.
    assert_eq!(parsed["result"]["levels"], generated["result"]["levels"]);

    // Both records were also pushed onto reply_to, in order.
    let replies: Vec<String> =
        redis::Commands::lrange(&mut redis.conn(), "replies", 0, -1).unwrap();
    let replies: Vec<serde_json::Value> = replies
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["id"], "gen-1");
    assert_eq!(replies[1], parsed);

    // Same seed, same file: generation is deterministic.
    let first = on_disk;
    push(
        &redis,
        &[json!({"id": "gen-2", "task_type": "generate_log_file",
                          "params": {"file": "again.log", "lines": 500, "seed": 7}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(
        std::fs::read_to_string(data.path().join("again.log")).unwrap(),
        first
    );

    // `sluice result ID` prints the record.
    let mut cmd = sluice();
    cmd.args(["result", "parse-1", "--redis-url", &redis.url()]);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, parsed);
}

#[test]
fn tasks_run_concurrently_up_to_the_limit() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let ids: Vec<String> = (0..4).map(|i| format!("spin-{i}")).collect();
    for id in &ids {
        push(
            &redis,
            &[json!({"id": id, "task_type": "spin", "params": {"ms": 400}})],
        );
    }
    assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "4"]));
    let records: Vec<_> = ids.iter().map(|id| result(&redis, id).unwrap()).collect();
    for r in &records {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    // Every pair of tasks overlapped in time: they ran at once, not in turn.
    let overlap = |a: &serde_json::Value, b: &serde_json::Value| {
        a["started_at"].as_u64() < b["finished_at"].as_u64()
            && b["started_at"].as_u64() < a["finished_at"].as_u64()
    };
    let mut overlapping = 0;
    for i in 0..records.len() {
        for j in i + 1..records.len() {
            overlapping += usize::from(overlap(&records[i], &records[j]));
        }
    }
    assert!(overlapping >= 3, "tasks did not overlap: {records:?}");

    // With --concurrency 1 no two tasks overlap.
    let redis = RedisServer::start();
    for id in &ids[..2] {
        push(
            &redis,
            &[json!({"id": id, "task_type": "spin", "params": {"ms": 100}})],
        );
    }
    assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "1"]));
    let (a, b) = (
        result(&redis, &ids[0]).unwrap(),
        result(&redis, &ids[1]).unwrap(),
    );
    assert!(!overlap(&a, &b), "{a} {b}");
}

#[test]
fn plugin_log_lines_and_output_reach_the_host_log_with_the_task_id() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[json!({"id": "echo-1", "task_type": "echo", "params": {"say": "hello"}})],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "echo-1").unwrap();
    assert_eq!(r["result"], json!({"say": "hello"}));
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("echo-1")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("echo") && l.contains("INFO")),
        "host log line missing:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stream=\"stdout\"") || l.contains("stream=stdout")),
        "stdout not captured:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stream=\"stderr\"") || l.contains("stream=stderr")),
        "stderr not captured:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("task_type=echo") && l.contains("plugin=misbehave")),
        "{lines:?}"
    );
}

#[test]
fn the_burst_summary_counts_every_task_it_acknowledged() {
    // The summary is read once the run has drained: it must not miss the
    // last tasks, whose counts land after their slots are given back.
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let ok = 1_500;
    let messages: Vec<_> = (0..ok)
        .map(|n| json!({"task_type": "echo", "params": {"n": n}}))
        .chain([json!({"task_type": "fail_fatal", "params": {}})])
        .collect();
    push(&redis, &messages);
    let stderr = assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "64"]));
    let stopped = stderr
        .lines()
        .find(|l| l.contains("worker stopped"))
        .unwrap_or_else(|| panic!("no 'worker stopped' line; log:\n{stderr}"));
    assert!(
        stopped.contains(&format!("succeeded: {ok}, failed: 1,")),
        "{stopped}"
    );
    assert_eq!(stat(&redis, "succeeded"), ok);
    assert_eq!(stat(&redis, "processed"), ok + 1);
}
