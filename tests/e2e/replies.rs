//! Replies go through the transactional outbox (`{Q}:outbox`): delivered
//! right after the acknowledgement, recovered from a worker that died
//! between the two, refused (and counted) when `reply_to` is not a list.

use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::json;

use crate::harness::*;

/// `sluice stats --json` against `redis`.
fn stats(redis: &RedisServer) -> serde_json::Value {
    let mut cmd = sluice();
    cmd.args(["stats", "--json", "--redis-url", &redis.url()]);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The records on list `key`, parsed.
fn replies(redis: &RedisServer, key: &str) -> Vec<serde_json::Value> {
    let items: Vec<String> = redis.conn().lrange(key, 0, -1).unwrap();
    items
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replies_are_delivered_once_and_leave_the_outbox_empty() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    // A reply_to with multi-byte characters, a colon and braces: the outbox
    // entry's length prefix counts bytes, in Lua and in Rust alike.
    let odd = "réponses:{app}:1";
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let reply_to = if i % 2 == 0 { "replies" } else { odd };
            json!({"id": format!("r{i}"), "task_type": "echo", "reply_to": reply_to, "params": {"i": i}})
        })
        .chain([
            json!({"id": "failed-1", "task_type": "fail_fatal", "reply_to": "replies"}),
            json!({"id": "bare-1", "task_type": "echo"}),
        ])
        .collect();
    push(&redis, &tasks);
    assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "4"]));

    let even = replies(&redis, "replies");
    let odd_replies = replies(&redis, odd);
    assert_eq!(even.len(), 21, "20 successes and the failure, once each");
    assert_eq!(odd_replies.len(), 20);
    let mut ids: Vec<&str> = even
        .iter()
        .chain(&odd_replies)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 41, "no duplicates");
    let failed = even.iter().find(|r| r["id"] == "failed-1").unwrap();
    assert_eq!(failed["status"], "failed");
    // Every entry the acknowledgement appended was removed on delivery.
    let s = stats(&redis);
    assert_eq!(s["outbox"], 0, "{s}");
    assert_eq!(s["counters"].get("replies_recovered"), None);
}

#[test]
fn a_worker_killed_between_acknowledgement_and_reply_still_gets_its_reply_delivered() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let fast = ["--lease-ms", "1000", "--heartbeat-ms", "200"];
    push(
        &redis,
        &[json!({"id": "crash-1", "task_type": "echo", "reply_to": "replies", "params": {"x": 1}})],
    );
    // The test hook aborts the worker right after its acknowledgement call
    // returned: the record is stored, the reply is not pushed yet.
    let mut crashing = worker_command(&redis, &plugins);
    crashing.args(fast).env("SLUICE_TEST_CRASH_AFTER_ACK", "1");
    let out = wait_output(crashing, Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the hook aborts; log:\n{log}");
    assert!(log.contains("SLUICE_TEST_CRASH_AFTER_ACK"), "{log}");
    assert_eq!(
        result(&redis, "crash-1").unwrap()["status"],
        "succeeded",
        "acknowledged before the crash"
    );
    assert_eq!(replies(&redis, "replies").len(), 0, "not delivered yet");
    assert_eq!(stats(&redis)["outbox"], 1, "the reply waits in the outbox");

    // A fresh worker reaps the dead one's lease and delivers the reply.
    let recovering = WorkerProcess::spawn(&redis, &plugins, &fast);
    wait_until(Duration::from_secs(30), "the reply arrives", || {
        !replies(&redis, "replies").is_empty()
    });
    let delivered = replies(&redis, "replies");
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["id"], "crash-1");
    assert_eq!(delivered[0]["status"], "succeeded");
    assert_eq!(delivered[0]["result"], json!({"x": 1}));
    wait_until(Duration::from_secs(10), "the outbox drains", || {
        stats(&redis)["outbox"] == 0
    });
    assert_eq!(stat(&redis, "replies_recovered"), 1);
    assert_eq!(stat(&redis, "succeeded"), 1, "the task itself ran once");
    let log = recovering.log();
    assert!(
        log.contains("delivered replies other workers left in the outbox"),
        "{log}"
    );
}

#[test]
fn a_reply_to_that_is_not_a_list_is_refused_counted_and_dropped() {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("misbehave", "")]);
    let _: () = redis.conn().set("not-a-list", "x").unwrap();
    push(
        &redis,
        &[
            json!({"id": "refused-1", "task_type": "echo", "reply_to": "not-a-list"}),
            json!({"id": "fine-1", "task_type": "echo", "reply_to": "replies"}),
        ],
    );
    let log = assert_ok(&run_burst(&redis, &plugins, &[]));
    assert!(log.contains("reply_to refused the reply"), "{log}");
    assert!(log.contains("refused-1"), "{log}");
    assert_eq!(result(&redis, "refused-1").unwrap()["status"], "succeeded");
    let fine = replies(&redis, "replies");
    assert_eq!(fine.len(), 1);
    assert_eq!(fine[0]["id"], "fine-1");
    let value: String = redis.conn().get("not-a-list").unwrap();
    assert_eq!(value, "x", "left alone");
    assert_eq!(stat(&redis, "replies_refused"), 1);
    assert_eq!(stats(&redis)["outbox"], 0);
}

#[test]
fn a_poisoned_task_gets_a_failed_record_on_its_reply_to() {
    use sluice::queue::outbox::{Delivery, Reply};
    use sluice::queue::{Queue, Retention};
    let redis = RedisServer::start();
    push(
        &redis,
        &[json!({"id": "poison-r", "task_type": "echo", "reply_to": "replies"})],
    );
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
            queue
                .reap("reaper", 3, Duration::from_secs(60))
                .await
                .unwrap();
        }
        // Any worker's mover claims the reply and delivers it.
        queue
            .register("mover", Duration::from_secs(10))
            .await
            .unwrap();
        let claimed = queue.claim_outbox("mover", 10).await.unwrap().unwrap();
        assert_eq!(claimed.len(), 1);
        let replies: Vec<Reply<'_>> = claimed.iter().map(|(f, r)| Reply::new(f, r)).collect();
        assert_eq!(replies[0].reply_to, b"replies");
        assert_eq!(
            queue.deliver("mover", &replies).await.unwrap(),
            vec![Delivery::Delivered]
        );
    });
    let record = result(&redis, "poison-r").expect("a result record");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["kind"], "poison");
    let delivered = replies(&redis, "replies");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["id"], "poison-r");
    assert_eq!(delivered[0]["error"]["kind"], "poison");
    assert_eq!(delivered[0]["task_type"], "echo");
    assert_eq!(stats(&redis)["outbox"], 0);
    // The record has the shape of every other record.
    let _: sluice::record::ResultRecord = serde_json::from_value(record).unwrap();
}

#[test]
fn a_stopping_worker_hands_its_undelivered_replies_to_the_outbox_for_another() {
    use sluice::queue::outbox::{Delivery, Reply};
    use sluice::queue::{Finish, Queue, Retention};
    let redis = RedisServer::start();
    // A reply_to with a colon, braces and multi-byte characters survives the
    // round trip hash → outbox entry → hash.
    let odd = "{app}:réponses:1";
    push(
        &redis,
        &[
            json!({"id": "h1", "task_type": "echo", "reply_to": odd}),
            json!({"id": "h2", "task_type": "echo", "reply_to": "replies"}),
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = Queue::connect(&redis.url(), "task_queue", Retention::default())
            .await
            .unwrap();
        queue
            .register("stopping", Duration::from_secs(10))
            .await
            .unwrap();
        let fetched = queue.fetch_batch("stopping", 10).await.unwrap().unwrap();
        let finishes: Vec<Finish<'_>> = fetched
            .iter()
            .zip([("h1", odd), ("h2", "replies")])
            .map(|(message, (id, reply_to))| Finish {
                message,
                id,
                record: if id == "h1" {
                    r#"{"id":"h1"}"#
                } else {
                    r#"{"id":"h2"}"#
                },
                status: "succeeded",
                dead_letter: None,
                reply_to: Some(reply_to),
                follow_ups: &[],
            })
            .collect();
        let done = queue.acknowledge("stopping", &finishes).await.unwrap();
        assert_eq!(done.acked, [true, true]);
        assert_eq!(
            done.field(0, odd).unwrap(),
            format!("{}1:{odd}", done.token)
        );
        // Stopped before delivering: the replies go to {Q}:outbox.
        assert_eq!(queue.release("stopping").await.unwrap(), 0);
        assert_eq!(queue.outbox_len(&[]).await.unwrap(), (2, 0));

        queue
            .register("mover", Duration::from_secs(10))
            .await
            .unwrap();
        let claimed = queue.claim_outbox("mover", 10).await.unwrap().unwrap();
        let replies: Vec<Reply<'_>> = claimed.iter().map(|(f, r)| Reply::new(f, r)).collect();
        let mut targets: Vec<&[u8]> = replies.iter().map(|r| r.reply_to).collect();
        targets.sort_unstable();
        assert_eq!(targets, [&b"replies"[..], odd.as_bytes()]);
        assert_eq!(
            queue.deliver("mover", &replies).await.unwrap(),
            vec![Delivery::Delivered, Delivery::Delivered]
        );
        assert_eq!(
            queue.outbox_len(&["mover".to_owned()]).await.unwrap(),
            (0, 0)
        );
    });
    assert_eq!(replies(&redis, odd), [json!({"id": "h1"})]);
    assert_eq!(replies(&redis, "replies"), [json!({"id": "h2"})]);
}

#[test]
fn a_malformed_outbox_entry_is_dropped_as_malformed() {
    use sluice::queue::outbox::{Delivery, Reply};
    use sluice::queue::{Queue, Retention};
    let redis = RedisServer::start();
    let _: () = redis
        .conn()
        .rpush("{task_queue}:outbox", "not an entry")
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = Queue::connect(&redis.url(), "task_queue", Retention::default())
            .await
            .unwrap();
        queue
            .register("mover", Duration::from_secs(10))
            .await
            .unwrap();
        let claimed = queue.claim_outbox("mover", 10).await.unwrap().unwrap();
        let replies: Vec<Reply<'_>> = claimed.iter().map(|(f, r)| Reply::new(f, r)).collect();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].record, b"not an entry");
        assert_eq!(
            queue.deliver("mover", &replies).await.unwrap(),
            vec![Delivery::Malformed]
        );
        assert_eq!(
            queue.outbox_len(&["mover".to_owned()]).await.unwrap(),
            (0, 0)
        );
    });
}
