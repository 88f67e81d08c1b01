//! At-least-once delivery: leases, crash recovery, fencing, Redis restarts,
//! graceful shutdown.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// Waits until `cond` holds, polling every 20 ms.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn in_flight(redis: &RedisServer) -> usize {
    let mut c = redis.conn();
    let keys: Vec<String> = redis::Commands::keys(&mut c, "{task_queue}:inflight:*").unwrap();
    keys.iter()
        .map(|k| redis::Commands::llen::<_, usize>(&mut c, k).unwrap())
        .sum()
}

#[test]
fn a_task_on_a_killed_worker_completes_elsewhere_within_the_default_recovery_bound() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    push(
        &redis,
        &[json!({"id": "long-1", "task_type": "spin", "params": {"ms": 1500}})],
    );
    let mut a = WorkerProcess::spawn(&redis, &plugins, &[]);
    wait_until(Duration::from_secs(30), "task in flight", || {
        in_flight(&redis) == 1
    });
    a.signal("KILL");
    a.wait(Duration::from_secs(5));
    let killed_at = Instant::now();
    // Default lease (15 s) and heartbeat (5 s): recovery within 20 s.
    let b = WorkerProcess::spawn(&redis, &plugins, &[]);
    let r = wait_result(&redis, "long-1", Duration::from_secs(40));
    let recovered_after = killed_at.elapsed();
    eprintln!("recovered and completed {recovered_after:?} after kill -9");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(
        r["worker"]
            .as_str()
            .unwrap()
            .contains(&format!(":{}:", b.pid())),
        "{r}"
    );
    assert!(
        recovered_after
            < Duration::from_secs(20) + Duration::from_millis(1500) + Duration::from_secs(3),
        "recovery took {recovered_after:?}"
    );
    assert_eq!(stat(&redis, "recovered"), 1);
    assert_eq!(stat(&redis, "succeeded"), 1);
}

#[test]
fn a_stalled_worker_loses_its_lease_its_sandbox_is_interrupted_and_the_task_runs_once_more() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let fast = ["--lease-ms", "1500", "--heartbeat-ms", "300"];
    push(
        &redis,
        &[json!({"id": "stalled-1", "task_type": "spin", "params": {"ms": 3000}})],
    );
    let a = WorkerProcess::spawn(&redis, &plugins, &fast);
    wait_until(Duration::from_secs(30), "task in flight", || {
        in_flight(&redis) == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    a.signal("STOP");
    let b = WorkerProcess::spawn(&redis, &plugins, &fast);
    // B recovers the task once A's lease expires, and starts it.
    wait_until(Duration::from_secs(20), "recovery", || {
        stat(&redis, "recovered") == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    a.signal("CONT");
    let r = wait_result(&redis, "stalled-1", Duration::from_secs(30));
    assert_eq!(r["status"], "succeeded");
    assert!(
        r["worker"]
            .as_str()
            .unwrap()
            .contains(&format!(":{}:", b.pid())),
        "done by B: {r}"
    );
    wait_until(Duration::from_secs(10), "A to notice", || {
        a.log().contains("lease lost")
    });
    wait_until(Duration::from_secs(10), "A to stop its sandbox", || {
        a.log().contains("task interrupted") || a.log().contains("acknowledgement rejected")
    });
    assert_eq!(stat(&redis, "succeeded"), 1, "done exactly once more");
    assert_eq!(stat(&redis, "processed"), 1);
    // A carries on with a fresh lease.
    push(
        &redis,
        &[json!({"id": "after-1", "task_type": "echo", "params": {}})],
    );
    assert_eq!(
        wait_result(&redis, "after-1", Duration::from_secs(20))["status"],
        "succeeded"
    );
}

#[test]
fn a_late_acknowledgement_after_the_lease_expired_is_rejected() {
    use sluice::queue::{Finish, Queue, Retention};
    let redis = RedisServer::start();
    push(&redis, &[json!({"id": "x", "task_type": "echo"})]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = Queue::connect(&redis.url(), "task_queue", Retention::default())
            .await
            .unwrap();
        queue
            .register("w1", Duration::from_millis(200))
            .await
            .unwrap();
        let fetched = queue.fetch_batch("w1", 10).await.unwrap().unwrap();
        assert_eq!(fetched.len(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let finish = Finish {
            message: &fetched[0],
            id: "x",
            record: "{}",
            status: "succeeded",
            dead_letter: None,
            reply_to: None,
            follow_ups: &[],
        };
        assert!(
            !queue.finish("w1", &finish).await.unwrap(),
            "expired lease must be fenced off"
        );
        assert!(
            !queue.renew("w1", Duration::from_secs(5)).await.unwrap(),
            "an expired lease is not revived"
        );
        assert_eq!(
            queue.fetch_batch("w1", 10).await.unwrap(),
            None,
            "no fetch without a lease"
        );
        // The reaper puts it back at the head of the queue.
        assert_eq!(
            queue.reap("w2", 3, Duration::from_secs(60)).await.unwrap(),
            (1, 0)
        );
    });
    assert!(result(&redis, "x").is_none());
    assert_eq!(pending(&redis), 1);
}

#[test]
fn a_message_in_flight_on_too_many_crashed_workers_is_dead_lettered_as_poison() {
    use sluice::queue::{Queue, Retention};
    let redis = RedisServer::start();
    push(&redis, &[json!({"id": "poison-1", "task_type": "echo"})]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = Queue::connect(&redis.url(), "task_queue", Retention::default())
            .await
            .unwrap();
        for crash in 1..=3 {
            let wid = format!("crashing-{crash}");
            queue
                .register(&wid, Duration::from_millis(50))
                .await
                .unwrap();
            assert_eq!(queue.fetch_batch(&wid, 1).await.unwrap().unwrap().len(), 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let expected = if crash < 3 { (1, 0) } else { (0, 1) };
            assert_eq!(
                queue
                    .reap("reaper", 3, Duration::from_secs(60))
                    .await
                    .unwrap(),
                expected
            );
        }
    });
    let d = dead_letter(&redis, "poison-1").unwrap();
    assert_eq!(d["error"]["kind"], "poison");
    assert_eq!(stat(&redis, "poisoned"), 1);
    assert_eq!(pending(&redis), 0);
}

#[test]
fn a_redis_restart_mid_run_loses_no_task_and_the_worker_recovers_by_itself() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let plugins = Plugins::new(&[("misbehave", "")]);
    let n = 200;
    let tasks: Vec<_> = (0..n)
        .map(|i| json!({"id": format!("t{i}"), "task_type": "spin", "params": {"ms": 10}}))
        .collect();
    push(&redis, &tasks);
    let worker = WorkerProcess::spawn(&redis, &plugins, &["--concurrency", "4"]);
    wait_until(Duration::from_secs(30), "some progress", || {
        stat(&redis, "succeeded") >= 20
    });
    redis.restart(Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = wait_result(&redis, &format!("t{i}"), left);
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert!(
        worker.log().contains("redis"),
        "outage logged:\n{}",
        worker.log()
    );
    assert_eq!(pending(&redis), 0);
}

#[test]
fn sigterm_lets_running_tasks_finish_and_puts_unfinished_ones_back_at_the_head() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    // Grace long enough: the task finishes, exit 0.
    push(
        &redis,
        &[json!({"id": "graceful", "task_type": "spin", "params": {"ms": 800}})],
    );
    let mut w = WorkerProcess::spawn(&redis, &plugins, &["--grace-secs", "20"]);
    wait_until(Duration::from_secs(30), "task in flight", || {
        in_flight(&redis) == 1
    });
    w.signal("TERM");
    assert!(w.wait(Duration::from_secs(20)).success());
    assert_eq!(result(&redis, "graceful").unwrap()["status"], "succeeded");

    // Grace too short: the task is interrupted and its message goes back first in line.
    push(
        &redis,
        &[json!({"id": "cut", "task_type": "spin", "params": {"ms": 20000}})],
    );
    let mut w = WorkerProcess::spawn(
        &redis,
        &plugins,
        &["--grace-secs", "1", "--concurrency", "1"],
    );
    wait_until(Duration::from_secs(30), "task in flight", || {
        in_flight(&redis) == 1
    });
    push(&redis, &[json!({"id": "behind", "task_type": "echo"})]);
    w.signal("TERM");
    assert!(
        w.wait(Duration::from_secs(20)).success(),
        "log:\n{}",
        w.log()
    );
    assert!(result(&redis, "cut").is_none());
    let head: Vec<String> =
        redis::Commands::lrange(&mut redis.conn(), "task_queue", 0, -1).unwrap();
    assert_eq!(head.len(), 2, "{head:?}");
    assert!(head[0].contains("\"cut\""), "{head:?}");
    assert_eq!(in_flight(&redis), 0);
    let workers: usize = redis::Commands::hlen(&mut redis.conn(), "{task_queue}:workers").unwrap();
    assert_eq!(workers, 0, "lease released");
}
