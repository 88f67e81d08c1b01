//! Soak: several workers, many tasks, random `kill -9`s. Every task must end
//! succeeded or dead-lettered, and its final record must arrive on its
//! `reply_to` list (the transactional outbox); duplicate executions and
//! duplicate replies are counted and reported, lost ones fail the test.
//! Size: `SLUICE_SOAK_TASKS` (default 600) and `SLUICE_SOAK_KILLS` (default 4).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::json;

use crate::harness::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn soak_with_random_kills_loses_nothing() {
    let tasks = env_or("SLUICE_SOAK_TASKS", 600);
    let kills = env_or("SLUICE_SOAK_KILLS", 4);
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let fast = [
        "--lease-ms",
        "1500",
        "--heartbeat-ms",
        "300",
        "--concurrency",
        "8",
    ];
    let messages: Vec<_> = (0..tasks)
        .map(|i| json!({"id": format!("s{i}"), "task_type": "spin", "reply_to": "soak_replies", "params": {"ms": 5}}))
        .collect();
    push(&redis, &messages);

    let started = Instant::now();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::spawn(&redis, &plugins, &fast))
        .collect();
    let mut logs = Vec::new();
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(300 + fastrand_ms(400)));
        let victim = k % workers.len();
        let mut w = workers.remove(victim);
        w.signal("KILL");
        w.wait(Duration::from_secs(5));
        logs.push(w.log());
        workers.push(WorkerProcess::spawn(&redis, &plugins, &fast));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut unfinished: HashSet<String> = (0..tasks).map(|i| format!("s{i}")).collect();
    while !unfinished.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} tasks never finished: {:?}",
            unfinished.len(),
            unfinished.iter().take(5).collect::<Vec<_>>()
        );
        unfinished.retain(|id| {
            let done = result(&redis, id).is_some_and(|r| r["status"] == "succeeded")
                || dead_letter(&redis, id).is_some();
            !done
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every final record reaches reply_to, some perhaps twice (a worker
    // killed after pushing a reply but before removing it from the outbox);
    // replies still in the outbox of a killed worker arrive once its lease
    // expired and a live worker's reaper handed them to the mover.
    // A task dead-lettered as poison gets a failed record there too.
    let expected: HashSet<String> = (0..tasks).map(|i| format!("s{i}")).collect();
    let mut arrived: HashMap<String, usize> = HashMap::new();
    let mut seen = 0;
    loop {
        let items: Vec<String> = redis.conn().lrange("soak_replies", seen, -1).unwrap();
        seen += items.len() as isize;
        for item in items {
            let record: serde_json::Value = serde_json::from_str(&item).unwrap();
            assert_ne!(
                record["status"], "retrying",
                "only final records are replies"
            );
            *arrived
                .entry(record["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let missing: Vec<&String> = expected
            .iter()
            .filter(|id| !arrived.contains_key(*id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} replies never arrived on reply_to, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let duplicate_replies = arrived.values().map(|n| n - 1).sum::<usize>();
    let elapsed = started.elapsed();
    logs.extend(workers.iter().map(|w| w.log()));
    let completions = logs
        .iter()
        .map(|l| l.matches("task succeeded").count())
        .sum::<usize>();
    let dead = dead_letters(&redis).len();
    eprintln!(
        "soak: {tasks} tasks, 3 workers, {kills} kill -9s, {elapsed:?}: {} succeeded, {dead} dead-lettered (poison), {} sandbox completions → {} duplicate executions, {} recovered from crashed workers; replies: {} of {} arrived, 0 lost, {duplicate_replies} duplicates, {} recovered from crashed workers' outboxes",
        stat(&redis, "succeeded"),
        completions,
        completions.saturating_sub(tasks - dead),
        stat(&redis, "recovered"),
        arrived.len(),
        expected.len(),
        stat(&redis, "replies_recovered"),
    );
    assert_eq!(stat(&redis, "succeeded") as usize + dead, tasks);
    assert!(
        expected.iter().all(|id| arrived.contains_key(id)),
        "every task's reply arrived"
    );
}

fn fastrand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max
}
