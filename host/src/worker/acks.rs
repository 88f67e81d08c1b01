//! Batched acknowledgement: tasks that finish at about the same time are
//! acknowledged in one Lua call and their replies pushed in one pipeline,
//! so a busy worker pays one Redis round trip per batch instead of two per
//! task. A lone task is acknowledged at once (no timer, no added latency).
//! Up to [`MAX_CALLS_IN_FLIGHT`] batches are in flight at once (pipelined
//! on the multiplexed connection); each message is acknowledged by its own
//! fenced script step, so their order does not matter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

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
}

/// Handle to the acknowledgement task.
#[derive(Debug, Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<Pending>,
}

/// The acknowledgement task's future; run it (spawn it) for the handle to work.
pub type AckerTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Acker {
    /// A handle and the task that serves it for `queue`.
    pub fn new(queue: Queue) -> (Acker, AckerTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Acker { tx }, Box::pin(run(queue, rx)))
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

async fn run(queue: Queue, mut rx: mpsc::UnboundedReceiver<Pending>) {
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
                acknowledge(&queue, &worker_id, same).await;
            }
            drop(call);
        });
    }
}

async fn acknowledge(queue: &Queue, worker_id: &str, group: Vec<Pending>) {
    let finishes: Vec<Finish<'_>> = group
        .iter()
        .map(|(r, _)| Finish {
            message: &r.message,
            id: &r.id,
            record: &r.record,
            status: r.status,
            dead_letter: r.dead_letter.as_deref(),
        })
        .collect();
    match queue.finish_batch(worker_id, &finishes).await {
        Ok(acked) => {
            let replies: Vec<(&str, &str)> = group
                .iter()
                .zip(&acked)
                .filter(|(_, acked)| **acked)
                .filter_map(|((r, _), _)| Some((r.reply_to.as_deref()?, r.record.as_str())))
                .collect();
            push_replies(queue, &replies).await;
            drop(finishes);
            for ((_, done), acked) in group.into_iter().zip(acked) {
                let _ = done.send(Ok(acked));
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

/// Pushes replies of acknowledged tasks, retrying with backoff while Redis is
/// unreachable (the tasks are done; only the notification is outstanding).
async fn push_replies(queue: &Queue, replies: &[(&str, &str)]) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1.. {
        match queue.reply_many(replies).await {
            Ok(()) => return,
            Err(e) if attempt < 20 => {
                tracing::warn!(error = %e, "cannot push replies; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(error = %e, replies = replies.len(), "giving up pushing replies; the result records are stored");
                return;
            }
        }
    }
}
