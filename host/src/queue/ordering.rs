//! Per-key order: tasks of one queue that carry the same `ordering_key` run
//! one at a time, in the order they were pushed, across every worker,
//! retries and crashes (issue #21). Ideas from SQS FIFO message groups,
//! Google Pub/Sub ordering keys and BullMQ Pro groups with concurrency 1.
//!
//! The state lives in the queue's hash slot (see [`crate::keys`]), and the
//! logic in one Lua include, `lua/common_order.lua`, called from the
//! existing scripts, so every step is atomic with the queue operation it
//! belongs to:
//!
//! - **fetch** (`fetch.lua`): a message naming a key becomes the key's
//!   *holder* (`{Q}:order:owner`, key → SHA-1 of the message) if the key is
//!   free, or if it already is the holder coming back (after a retry, a
//!   delay, a crash). Otherwise it is *parked* at the tail of
//!   `{Q}:order:held:<key>` and the fetch takes another message instead.
//!   Since the fetch script is the only way out of the pending list (idle
//!   workers wait with a `BLMOVE` of the list onto itself, then fetch), a
//!   key's tasks are admitted in push order.
//! - **acknowledgement** (`finish.lua`: success, or failure for good with a
//!   dead letter — fatal errors, retries exhausted, `malformed`,
//!   `too_large`, unknown task types past their grace) and **poison** (the
//!   reaper's `reap.lua`): the holder *releases* the key — the oldest parked
//!   task moves to the head of the pending list and holds the key, or the
//!   key is freed.
//! - **retry, delay, wait for a plugin** (`reschedule.lua`): the holder keeps
//!   the key while it sits in the delayed set; later tasks of the key wait.
//!   A retry marks the key *blocked* (`{Q}:order:retrying`).
//! - **crash**: a holder recovered from a dead worker's in-flight list goes
//!   back to the head of the pending list still holding its key, so it runs
//!   again before any later task of the key.
//!
//! Cost: a message without `"ordering_key"` in its text is never decoded in
//! Lua (one substring search); a keyed one is decoded once when fetched and
//! once when it ends. A message longer than `--max-message-bytes` is not
//! decoded: it is dead-lettered as `too_large` without taking its key.

use super::{Queue, QueueResult};
pub use crate::message::MAX_ORDERING_KEY_BYTES;

/// The per-key order state of a queue, for `sluice stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderingStats {
    /// Keys held by a task (running, pending, or waiting in the delayed set).
    pub keys: u64,
    /// Keys whose holder failed and waits for a retry: their later tasks are
    /// blocked behind it.
    pub blocked: u64,
    /// Tasks parked behind the holder of their key.
    pub parked: u64,
}

/// Reads the per-key order state of `queue` (one pipelined round trip).
///
/// # Errors
/// On Redis errors.
pub async fn stats(queue: &Queue) -> QueueResult<OrderingStats> {
    let order = &queue.keys().order;
    let (keys, blocked, parked): (u64, u64, Option<i64>) = redis::pipe()
        .hlen(format!("{order}owner"))
        .scard(format!("{order}retrying"))
        .get(format!("{order}parked"))
        .query_async(&mut queue.connection())
        .await?;
    Ok(OrderingStats {
        keys,
        blocked,
        parked: parked.unwrap_or(0).max(0) as u64,
    })
}
