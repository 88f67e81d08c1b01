//! Batched acknowledgement: tasks that finish at about the same time are
//! acknowledged in one Lua call, which also records their replies in the
//! worker's outbox hash (see [`crate::queue::outbox`]), and their replies are
//! then pushed onto `reply_to` (and crossed off the outbox) in one pipeline,
//! so a busy worker pays two Redis round trips per batch instead of two per
//! task. A lone task is acknowledged at once (no timer, no added latency).
//! Up to [`MAX_CALLS_IN_FLIGHT`] batches are in flight at once (pipelined
//! on the multiplexed connection); each message is acknowledged by its own
//! fenced script step, so their order does not matter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::replies;
use crate::queue::outbox::{self, Reply};
use crate::queue::{Finish, Queue, QueueError, QueueResult};

/// Most acknowledgements sent in one call.
const MAX_BATCH: usize = 128;

/// Acknowledgement calls in flight at once. With one, a busy worker's
/// acknowledgements waited a whole round trip per batch (batches were always
/// full, 128, one every ~4.6 ms) and that, not CPU, capped its throughput
/// at ~28 000 tasks/s on the benchmark's machine.
const MAX_CALLS_IN_FLIGHT: usize = 4;

/// One acknowledgement to make.
#[derive(Debug)]
pub struct AckRequest {
    /// The lease the message was fetched under.
    pub worker_id: Arc<str>,
    /// The message as fetched.
    pub message: Bytes,
    /// Task id.
    pub id: String,
    /// Result record, JSON.
    pub record: String,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    /// Dead letter, JSON, for a task failed for good.
    pub dead_letter: Option<String>,
    /// Where to push the record once acknowledged.
    pub reply_to: Option<String>,
    /// Follow-up task messages pushed by the acknowledgement itself.
    pub follow_ups: Vec<String>,
}

/// How a [`run`] delivers replies.
#[derive(Debug, Clone, Copy)]
struct Delivering {
    /// How long to retry a delivery while Redis is unreachable (see
    /// [`replies::deliver`]).
    patience: Duration,
    /// Test hook: abort the process right after an acknowledgement call
    /// returned, before its replies are pushed (see [`crash_after_ack`]).
    crash_after_ack: bool,
}

/// Test hook, debug builds only: with `SLUICE_TEST_CRASH_AFTER_ACK=1` the
/// worker aborts (like a `kill -9`) right after its first acknowledgement
/// call returns, before the replies are delivered — the window the outbox
/// makes safe. Release builds never read the variable.
fn crash_after_ack() -> bool {
    cfg!(debug_assertions)
        && std::env::var_os("SLUICE_TEST_CRASH_AFTER_ACK").is_some_and(|v| v == "1")
}

/// Handle to the acknowledgement task.
#[derive(Debug, Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<Pending>,
}

/// The acknowledgement task's future; run it (spawn it) for the handle to work.
pub type AckerTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Acker {
    /// A handle and the task that serves it for `queue`. A delivery of
    /// replies is retried while Redis is unreachable for up to `patience`
    /// (the lease: past it the lease is replaced and the reaper hands the
    /// replies to another mover).
    pub fn new(queue: Queue, patience: Duration) -> (Acker, AckerTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let delivering = Delivering {
            patience,
            crash_after_ack: crash_after_ack(),
        };
        (Acker { tx }, Box::pin(run(queue, rx, delivering)))
    }

    /// Acknowledges one message; true when acknowledged, false when fenced off.
    /// Shared so that a retry after a Redis error resends it without copies.
    ///
    /// # Errors
    /// The Redis error of the batch it was part of.
    pub async fn ack(&self, request: Arc<AckRequest>) -> QueueResult<bool> {
        let (done, result) = oneshot::channel();
        self.tx
            .send((request, done))
            .expect("the acknowledgement task runs as long as the worker");
        result
            .await
            .expect("the acknowledgement task answers every request")
    }
}

type Pending = (Arc<AckRequest>, oneshot::Sender<QueueResult<bool>>);

async fn run(queue: Queue, mut rx: mpsc::UnboundedReceiver<Pending>, delivering: Delivering) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free call first: while all calls are in flight,
        // acknowledgements queue up and the next batch takes them all.
        let call = calls.clone().acquire_owned().await.expect("never closed");
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let queue = queue.clone();
        tokio::spawn(async move {
            // Normally one lease; after a lease change, one call per lease.
            while !batch.is_empty() {
                let worker_id = batch[0].0.worker_id.clone();
                let (same, rest): (Vec<Pending>, Vec<Pending>) =
                    batch.drain(..).partition(|(r, _)| r.worker_id == worker_id);
                batch = rest;
                acknowledge(&queue, &worker_id, same, delivering).await;
            }
            drop(call);
        });
    }
}

async fn acknowledge(queue: &Queue, worker_id: &str, group: Vec<Pending>, delivering: Delivering) {
    let finishes: Vec<Finish<'_>> = group
        .iter()
        .map(|(r, _)| Finish {
            message: &r.message,
            id: &r.id,
            record: &r.record,
            status: r.status,
            dead_letter: r.dead_letter.as_deref(),
            reply_to: r.reply_to.as_deref(),
            follow_ups: &r.follow_ups,
        })
        .collect();
    match queue.acknowledge(worker_id, &finishes).await {
        Ok(done) => {
            if delivering.crash_after_ack {
                tracing::error!(
                    "SLUICE_TEST_CRASH_AFTER_ACK: aborting between acknowledgement and reply delivery"
                );
                std::process::abort();
            }
            drop(finishes);
            // The fields finish.lua stored the replies under.
            let mut fields: Vec<(Vec<u8>, &AckRequest)> = Vec::new();
            let mut fenced: Vec<&AckRequest> = Vec::new();
            for (i, (r, _)) in group.iter().enumerate() {
                let Some(reply_to) = r.reply_to.as_deref() else {
                    continue;
                };
                match done.field(i, reply_to) {
                    Some(field) => fields.push((field.into_bytes(), r)),
                    None => fenced.push(r),
                }
            }
            if !fenced.is_empty() {
                fields.extend(left_behind(queue, worker_id, fenced).await);
            }
            let replies: Vec<Reply<'_>> = fields
                .iter()
                .map(|(field, r)| Reply::new(field, r.record.as_bytes()))
                .collect();
            replies::deliver(queue, worker_id, &replies, delivering.patience).await;
            for ((_, tx), acked) in group.into_iter().zip(done.acked) {
                let _ = tx.send(Ok(acked));
            }
        }
        Err(e) => {
            let message = e.to_string();
            drop(finishes);
            for (_, done) in group {
                let _ = done.send(Err(QueueError::Batch(message.clone())));
            }
        }
    }
}

/// The replies of `fenced` requests (whose acknowledgement was fenced off)
/// that nevertheless sit in `worker_id`'s outbox hash: an earlier call
/// acknowledged them, and its answer was lost with the connection (the
/// task's retry was then fenced off, the message being gone). Nobody else
/// would deliver them while this lease lives, so the caller does. Rare: only
/// after a Redis error or a lost lease; on an error here the lease's expiry
/// (rotation after Redis errors, or shutdown) hands them to the outbox.
async fn left_behind<'r>(
    queue: &Queue,
    worker_id: &str,
    fenced: Vec<&'r AckRequest>,
) -> Vec<(Vec<u8>, &'r AckRequest)> {
    let mut held = match queue.outbox_of(worker_id).await {
        Ok(held) => held,
        Err(e) => {
            tracing::debug!(error = %e, "cannot look for replies an earlier acknowledgement left");
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for r in fenced {
        let reply_to = r.reply_to.as_deref().unwrap_or_default().as_bytes();
        let at = held.iter().position(|(field, record)| {
            outbox::reply_to_of(field) == reply_to && record == r.record.as_bytes()
        });
        if let Some(at) = at {
            found.push((held.swap_remove(at).0, r));
        }
    }
    found
}
