//! Reply delivery: pushing the replies of the transactional outbox
//! ([`crate::queue::outbox`]) onto their `reply_to` lists — right after the
//! acknowledgement for the worker's own tasks ([`deliver`], called by the
//! acknowledger), and from `{Q}:outbox` for the replies dead or stopped
//! workers left behind ([`move_outbox`], called by every worker's upkeep).

use std::time::Duration;

use crate::queue::Queue;
use crate::queue::outbox::{Delivery, Reply};

/// Most entries one [`move_outbox`] claim takes.
const CLAIM_BATCH: usize = 128;

/// Delivers `replies`, which sit in `worker_id`'s outbox hash, retrying with
/// backoff while Redis is unreachable, for up to `patience`. Past that the
/// entries stay where they are: by then Redis was unreachable for about a
/// lease, so the lease is being replaced, and once it expired a reaper
/// returns them to `{Q}:outbox` for a mover (at shutdown, `release` does).
/// Returns how many were pushed onto their `reply_to`.
pub async fn deliver(
    queue: &Queue,
    worker_id: &str,
    replies: &[Reply<'_>],
    patience: Duration,
) -> usize {
    if replies.is_empty() {
        return 0;
    }
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match queue.deliver(worker_id, replies).await {
            Ok(outcomes) => return report(replies, &outcomes),
            Err(e) if started.elapsed() < patience => {
                tracing::warn!(error = %e, replies = replies.len(), "cannot push replies; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(error = %e, replies = replies.len(), "cannot push replies; they stay in the outbox and are delivered once this lease has been replaced");
                return 0;
            }
        }
    }
}

/// Logs the replies that could not be delivered; returns how many were.
fn report(replies: &[Reply<'_>], outcomes: &[Delivery]) -> usize {
    let mut delivered = 0;
    for (reply, outcome) in replies.iter().zip(outcomes) {
        match outcome {
            Delivery::Delivered => delivered += 1,
            Delivery::Refused(error) => {
                let reply_to = String::from_utf8_lossy(reply.reply_to);
                let id = task_id(reply.record);
                tracing::error!(%reply_to, %id, %error, "reply_to refused the reply (not a list?); dropped, the result record is stored");
            }
            Delivery::Malformed => {
                let record = reply.record;
                tracing::error!(
                    entry = %String::from_utf8_lossy(&record[..record.len().min(100)]),
                    "malformed outbox entry (not written by Sluice); dropped"
                );
            }
        }
    }
    delivered
}

/// The task id of a result record, for logs.
fn task_id(record: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        id: serde_json::Value,
    }
    serde_json::from_slice::<Id>(record)
        .map(|r| match r.id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// Claims the replies in `{Q}:outbox` batch by batch under `worker_id`'s
/// lease and delivers them, until the outbox is empty. Returns how many were
/// delivered.
///
/// # Errors
/// On Redis errors claiming a batch (a batch already claimed is delivered
/// first, or, if this worker dies, recovered by the reaper).
pub async fn move_outbox(
    queue: &Queue,
    worker_id: &str,
    patience: Duration,
) -> crate::queue::QueueResult<usize> {
    let mut delivered = 0;
    loop {
        let Some(claimed) = queue.claim_outbox(worker_id, CLAIM_BATCH).await? else {
            // Lease lost: the heartbeat replaces it; the next pass claims under the new one.
            return Ok(delivered);
        };
        if claimed.is_empty() {
            return Ok(delivered);
        }
        let replies: Vec<Reply<'_>> = claimed.iter().map(|(f, r)| Reply::new(f, r)).collect();
        delivered += deliver(queue, worker_id, &replies, patience).await;
        if claimed.len() < CLAIM_BATCH {
            return Ok(delivered);
        }
    }
}
