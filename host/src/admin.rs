//! Operator commands on a queue: counts, and the dead-letter queue
//! (list, show, requeue, purge). Used by `sluice stats` and `sluice dead`.

use std::collections::HashMap;

use redis::Script;
use serde::Serialize;

use crate::message;
use crate::queue::{Queue, QueueResult, ordering};
use crate::record::DeadLetter;

/// Per-queue counts, as printed by `sluice stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Messages waiting in the pending list.
    pub pending: u64,
    /// Messages in the in-flight lists of all workers.
    pub in_flight: u64,
    /// Messages waiting for a retry or their `delay_ms`/`run_at`.
    pub delayed: u64,
    /// Dead letters kept.
    pub dead: u64,
    /// Workers holding an unexpired lease.
    pub workers: u64,
    /// Replies acknowledged but not yet pushed onto their `reply_to`: the
    /// transactional outbox, `{Q}:outbox` plus the workers'
    /// `{Q}:outbox:inflight:<worker>` hashes (see [`crate::queue::outbox`]).
    pub outbox: u64,
    /// `ordering_key`s held by a task now (see [`crate::queue::ordering`]).
    pub ordering_keys: u64,
    /// `ordering_key`s blocked behind a retry: their holder failed and waits
    /// in the delayed set, and their later tasks wait for it.
    pub ordering_blocked: u64,
    /// Tasks parked behind the holder of their `ordering_key`.
    pub ordering_parked: u64,
    /// Lifetime counters from `{Q}:stats`: processed, succeeded, failed,
    /// retried, dead, recovered, poisoned, replies_recovered (replies of dead
    /// workers returned to the outbox), replies_refused (replies a `reply_to`
    /// that is not a list refused).
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// Reads the counts of `queue`.
///
/// # Errors
/// On Redis errors.
pub async fn stats(queue: &Queue) -> QueueResult<QueueStats> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let (pending, delayed, dead): (u64, u64, u64) = redis::pipe()
        .llen(&keys.pending)
        .zcard(&keys.delayed)
        .hlen(&keys.dead)
        .query_async(&mut conn)
        .await?;
    let (leases, counters): (HashMap<String, u64>, HashMap<String, u64>) = redis::pipe()
        .hgetall(&keys.workers)
        .hgetall(&keys.stats)
        .query_async(&mut conn)
        .await?;
    // The clock of the queue's master, which stamped the leases (on a
    // Cluster, a plain `TIME` goes to a random node).
    let time: (u64, u64) = conn
        .query_on_node_of(&keys.workers, &redis::cmd("TIME"))
        .await?;
    let now_ms = time.0 * 1000 + time.1 / 1000;
    let mut in_flight = 0;
    let workers: Vec<String> = leases.keys().cloned().collect();
    let (unclaimed, delivering) = queue.outbox_len(&workers).await?;
    let order = ordering::stats(queue).await?;
    if !leases.is_empty() {
        let mut pipe = redis::pipe();
        for worker in leases.keys() {
            pipe.llen(keys.inflight(worker));
        }
        let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
        in_flight = lens.iter().sum();
    }
    Ok(QueueStats {
        queue: keys.pending.clone(),
        pending,
        in_flight,
        delayed,
        dead,
        workers: leases.values().filter(|&&expiry| expiry >= now_ms).count() as u64,
        outbox: unclaimed + delivering,
        ordering_keys: order.keys,
        ordering_blocked: order.blocked,
        ordering_parked: order.parked,
        counters: counters.into_iter().collect(),
    })
}

/// Dead letters, newest first, at most `limit`.
///
/// # Errors
/// On Redis errors; a dead letter that is not valid JSON is skipped.
pub async fn dead_list(queue: &Queue, limit: usize) -> QueueResult<Vec<DeadLetter>> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys.dead_index)
        .arg(0)
        .arg(limit.saturating_sub(1))
        .arg("REV")
        .query_async(&mut conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let letters: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&keys.dead)
        .arg(&ids)
        .query_async(&mut conn)
        .await?;
    Ok(letters
        .into_iter()
        .flatten()
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect())
}

/// The dead letter of task `id`, if any.
///
/// # Errors
/// On Redis errors.
pub async fn dead_show(queue: &Queue, id: &str) -> QueueResult<Option<DeadLetter>> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(&queue.keys().dead)
        .arg(id)
        .query_async(&mut queue.connection())
        .await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Puts dead letter `id` back at the tail of the pending list, with its
/// attempt count reset so it gets a full retry budget. Returns false when
/// there is no such dead letter.
///
/// # Errors
/// On Redis errors.
pub async fn dead_requeue(queue: &Queue, id: &str) -> QueueResult<bool> {
    let Some(letter) = dead_show(queue, id).await? else {
        return Ok(false);
    };
    // A message that is a JSON object gets its id kept and attempts reset;
    // anything else (a malformed message) goes back as it was.
    let message = message::rewrite(
        letter.message.as_bytes(),
        &[("attempts", serde_json::Value::Null)],
    )
    .unwrap_or(letter.message);
    let keys = queue.keys();
    let done: i64 = Script::new(include_str!("queue/lua/requeue.lua"))
        .key(&keys.dead)
        .key(&keys.dead_index)
        .key(&keys.pending)
        .arg(id)
        .arg(message)
        .invoke_async(&mut queue.connection())
        .await?;
    Ok(done == 1)
}

/// Requeues every dead letter. Returns how many went back.
///
/// # Errors
/// On Redis errors.
pub async fn dead_requeue_all(queue: &Queue) -> QueueResult<u64> {
    let ids: Vec<String> = redis::cmd("HKEYS")
        .arg(&queue.keys().dead)
        .query_async(&mut queue.connection())
        .await?;
    let mut n = 0;
    for id in ids {
        n += u64::from(dead_requeue(queue, &id).await?);
    }
    Ok(n)
}

/// Deletes every dead letter. Returns how many were deleted.
///
/// # Errors
/// On Redis errors.
pub async fn dead_purge(queue: &Queue) -> QueueResult<u64> {
    let keys = queue.keys();
    let (n, _, _): (u64, i64, i64) = redis::pipe()
        .atomic()
        .hlen(&keys.dead)
        .del(&keys.dead)
        .del(&keys.dead_index)
        .query_async(&mut queue.connection())
        .await?;
    Ok(n)
}
