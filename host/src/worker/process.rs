//! One message, start to finish: parse, route, run in the sandbox, and
//! write the outcome back (acknowledge, retry, or dead-letter).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::Instrument;

use super::acks::AckRequest;
use super::lease::Lease;
use super::retry::RetryPolicy;
use super::{Shared, Slot};
use crate::message::{self, BadMessage, Envelope, Task};
use crate::queue::QueueResult;
use crate::record::{self, DeadLetter, ErrorInfo, ResultRecord, Status, now_ms};
use crate::sandbox::{Plugin, TaskFailure, TaskInput, TaskLimits, Usage};

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded and acknowledged.
    Succeeded,
    /// Failed for good: acknowledged and dead-lettered.
    Failed,
    /// Failed; a retry is scheduled.
    Retrying,
    /// Not due yet: parked in the delayed set.
    Deferred,
    /// Interrupted or fenced off: the message stays in the in-flight list
    /// for the reaper (lease lost) or for release (shutdown).
    Abandoned,
}

/// Handles one fetched message under `lease`, holding `slot` (one of the
/// worker's `concurrency` slots) until its handler has run.
pub async fn process(shared: &Shared, lease: &Lease, raw: Vec<u8>, slot: Slot) -> Outcome {
    let started_at = now_ms();
    // Shared, not copied, with the acknowledgement that carries it to Redis.
    let raw = Bytes::from(raw);
    // A message over the limit is neither parsed nor copied: swapped for a
    // small stand-in and dead-lettered at once (see `oversized`).
    if let Err(bad) = message::check_size(&raw, shared.config.max_message_bytes) {
        return oversized(shared, lease, raw, bad, started_at).await;
    }
    let task = match Task::parse(&raw, started_at) {
        Ok(task) => task,
        Err(bad) => return bad_message(shared, lease, &raw, bad, started_at).await,
    };
    let span = tracing::info_span!("task", id = %task.id, task_type = %task.task_type, plugin = tracing::field::Empty);
    async {
        if let Some(tenant) = &shared.tenant
            && let Some(reply_to) = task.reply_to.as_deref()
            && !tenant.allows_reply_to(reply_to)
        {
            let error = ErrorInfo {
                kind: "forbidden_reply_to".into(),
                message: format!(
                    "reply_to {reply_to:?} is outside tenant {:?}'s prefix {:?}; nothing was pushed",
                    tenant.name, tenant.reply_to_prefix
                ),
            };
            // Dead-lettered without running, and without a reply.
            let task = Task {
                reply_to: None,
                ..task.clone()
            };
            return fail(shared, lease, &raw, &task, None, error, started_at).await;
        }
        if let Some(due) = task.not_before_ms.filter(|&due| due > started_at) {
            return defer(shared, lease, &raw, &task, due).await;
        }
        let Some(plugin) = shared.registry.load().route(&task.task_type).cloned() else {
            return unroutable(shared, lease, &raw, &task, started_at).await;
        };
        tracing::Span::current().record("plugin", tracing::field::display(plugin.name()));
        run(shared, lease, &raw, &task, &plugin, started_at, slot).await
    }
    .instrument(span)
    .await
}

async fn run(
    shared: &Shared,
    lease: &Lease,
    raw: &Bytes,
    task: &Task,
    plugin: &Plugin,
    started_at: u64,
    mut slot: Slot,
) -> Outcome {
    let attempt = task.attempts + 1;
    let input = TaskInput {
        id: &task.id,
        task_type: &task.task_type,
        params: &task.params,
        attempt,
    };
    let mut labels = vec![
        ("task_type", task.task_type.clone()),
        ("plugin", plugin.name().to_owned()),
    ];
    if let Some(tenant) = &shared.tenant {
        labels.push(("tenant", tenant.name.clone()));
    }
    ::metrics::counter!("sluice_tasks_started_total", &labels).increment(1);
    if let Some(probe) = &shared.on_task_start {
        probe(&task.id);
    }
    let limits = shared
        .tenant
        .as_ref()
        .map_or_else(TaskLimits::default, |t| t.limits.clone());
    let run = shared
        .sandbox
        .run_task(plugin, &input, &lease.cancel, &limits, task.chain_depth)
        .await;
    let (outcome, usage, follow_ups) = (run.outcome, run.usage, run.follow_ups);
    // The handler's end, taken before its slot is freed: with
    // `--concurrency 1` a record's `finished_at` never passes the next
    // task's `started_at`.
    let finished_at = now_ms();
    slot.charge(usage.cpu_us);
    if let Some(tenant) = &shared.tenant {
        tenant.record_usage(&usage);
    }
    // The handler is done: free the slot for the next task while this one's
    // outcome is written (see `UNACKED_PER_SLOT`).
    let _unacked = shared
        .unacked
        .acquire()
        .await
        .expect("the semaphore is never closed");
    drop(slot);
    // Bounded and valid JSON, or a permanent failure (`result_too_large`,
    // `fatal`): nothing large is written to Redis.
    let max_result = plugin
        .manifest()
        .max_result_bytes
        .map_or(shared.config.max_result_bytes, |b| {
            usize::try_from(b).unwrap_or(usize::MAX)
        });
    let outcome = outcome.map(|json| record::result_value(json, max_result));
    ::metrics::histogram!("sluice_task_duration_seconds", &labels)
        .record(finished_at.saturating_sub(started_at) as f64 / 1e3);
    let mut record = ResultRecord {
        id: task.id.clone(),
        task_type: Some(task.task_type.clone()),
        status: Status::Succeeded,
        result: None,
        error: None,
        attempts: attempt,
        started_at,
        finished_at,
        duration_ms: finished_at.saturating_sub(started_at),
        plugin: Some(plugin.name().to_owned()),
        plugin_version: plugin.manifest().version.clone(),
        plugin_sha256: Some(plugin.sha256().to_owned()),
        worker: lease.worker_id.to_string(),
        usage,
        tenant: shared.tenant.as_ref().map(|t| t.name.clone()),
        parent_id: task.parent_id.clone(),
        children: Vec::new(),
    };
    match outcome {
        Ok(Err(error)) => fail_with(shared, lease, raw, task, record, error).await,
        Ok(Ok(result)) => {
            record.result = Some(result);
            record.children = follow_ups.iter().map(|f| f.id.clone()).collect();
            tracing::info!(
                attempt,
                duration_ms = record.duration_ms,
                follow_ups = follow_ups.len(),
                "task succeeded"
            );
            ::metrics::counter!("sluice_tasks_succeeded_total", &labels).increment(1);
            let json = serde_json::to_string(&record).expect("record serializes");
            let follow_ups = crate::queue::follow_ups::messages(task, &follow_ups);
            finish(shared, lease, raw, task, json, None, follow_ups).await
        }
        Err(TaskFailure::Interrupted) => {
            tracing::warn!(
                attempt,
                "task interrupted; its message stays in flight for recovery"
            );
            Outcome::Abandoned
        }
        Err(failure) => {
            let error = ErrorInfo {
                kind: failure.kind().into(),
                message: failure.to_string(),
            };
            let policy = shared.config.retry.for_task(Some(plugin.manifest()), task);
            if failure.is_retryable() && attempt <= policy.max_retries {
                ::metrics::counter!("sluice_tasks_retried_total", &labels).increment(1);
                record.status = Status::Retrying;
                record.error = Some(error);
                retry(shared, lease, raw, task, &record, &policy).await
            } else {
                fail_with(shared, lease, raw, task, record, error).await
            }
        }
    }
}

async fn retry(
    shared: &Shared,
    lease: &Lease,
    raw: &[u8],
    task: &Task,
    record: &ResultRecord,
    policy: &RetryPolicy,
) -> Outcome {
    let delay = policy.delay_ms(record.attempts);
    let error = record.error.as_ref().expect("a retry has an error");
    tracing::warn!(attempt = record.attempts, kind = %error.kind, delay_ms = delay, "task failed; retrying: {}", error.message);
    let json = serde_json::to_string(record).expect("record serializes");
    let fields = vec![("attempts", record.attempts.into())];
    let parked = Parked {
        stat: Some("retried"),
        record: Some(&json),
    };
    if park(shared, lease, raw, task, fields, now_ms() + delay, parked).await {
        Outcome::Retrying
    } else {
        Outcome::Abandoned
    }
}

async fn defer(shared: &Shared, lease: &Lease, raw: &[u8], task: &Task, due: u64) -> Outcome {
    tracing::debug!(due_ms = due, "task not due yet; delayed");
    let fields = vec![("run_at", due.into())];
    if park(shared, lease, raw, task, fields, due, Parked::default()).await {
        Outcome::Deferred
    } else {
        Outcome::Abandoned
    }
}

/// No plugin handles the task type (yet): wait for one to be deployed, up
/// to the worker's grace period, then dead-letter the task.
async fn unroutable(shared: &Shared, lease: &Lease, raw: &Bytes, task: &Task, now: u64) -> Outcome {
    let grace = shared.config.unknown_type_grace.as_millis() as u64;
    let since = task.unroutable_since.unwrap_or(now);
    let waited = now.saturating_sub(since);
    if waited >= grace {
        let error = ErrorInfo {
            kind: "unknown_task_type".into(),
            message: format!(
                "no plugin handles task type {:?} (waited {waited} ms for one to be deployed)",
                task.task_type
            ),
        };
        return fail(shared, lease, raw, task, None, error, now).await;
    }
    // Check again after half the time waited so far: 0.5 s, 0.5 s, 1 s,
    // 2 s… at most 10 s, never past the grace period.
    let delay = (waited / 2).clamp(500, 10_000).min(grace - waited);
    tracing::info!(
        waited_ms = waited,
        next_check_ms = delay,
        "no plugin handles this task type yet; waiting for one"
    );
    let fields = vec![("unroutable_since", since.into())];
    if park(
        shared,
        lease,
        raw,
        task,
        fields,
        now + delay,
        Parked::default(),
    )
    .await
    {
        Outcome::Deferred
    } else {
        Outcome::Abandoned
    }
}

/// What else [`park`] writes.
#[derive(Default)]
struct Parked<'a> {
    /// Stats counter to bump.
    stat: Option<&'a str>,
    /// Intermediate result record to store.
    record: Option<&'a str>,
}

/// Moves the message into the delayed set until `due` (Unix ms), rewritten
/// with `fields`, its assigned id (so the task keeps it) and without
/// `delay_ms` (already applied). False when fenced off.
async fn park(
    shared: &Shared,
    lease: &Lease,
    raw: &[u8],
    task: &Task,
    mut fields: Vec<(&str, serde_json::Value)>,
    due: u64,
    parked: Parked<'_>,
) -> bool {
    fields.push(("delay_ms", serde_json::Value::Null));
    if task.id_assigned {
        fields.push(("id", task.id.clone().into()));
    }
    let stored = message::rewrite(raw, &fields)
        .unwrap_or_else(|_| unreachable!("a parsed task is a JSON object"));
    let record = parked.record.map(|r| (task.id.as_str(), r));
    with_redis_retry(lease, || {
        shared
            .queue
            .reschedule(&lease.worker_id, raw, &stored, due, parked.stat, record)
    })
    .await
}

/// Swaps an oversized message for its stand-in in the in-flight list,
/// frees it, and dead-letters the stand-in as `too_large`.
async fn oversized(
    shared: &Shared,
    lease: &Lease,
    raw: Bytes,
    bad: BadMessage,
    started_at: u64,
) -> Outcome {
    let envelope = Envelope::peek(&raw);
    let id = envelope.id.clone().unwrap_or_else(message::new_id);
    let stand_in =
        super::oversized::stand_in(&raw, &id, &envelope, shared.config.max_message_bytes);
    let swapped = with_redis_retry(lease, || {
        super::oversized::swap(&shared.queue, &lease.worker_id, &raw, &stand_in)
    })
    .await;
    if !swapped {
        tracing::warn!(id = %id, bytes = raw.len(), "oversized message fenced off: the lease was lost and it may be handled elsewhere");
        return Outcome::Abandoned;
    }
    drop(raw);
    bad_message(shared, lease, &Bytes::from(stand_in), bad, started_at).await
}

async fn bad_message(
    shared: &Shared,
    lease: &Lease,
    raw: &Bytes,
    bad: BadMessage,
    started_at: u64,
) -> Outcome {
    // The stand-in of an oversized message names its id, task_type and
    // reply_to, so its producer hears back.
    let envelope = match bad {
        BadMessage::TooLarge { .. } => Envelope::peek(raw),
        BadMessage::Malformed(_) | BadMessage::MissingTaskType => Envelope::default(),
    };
    let id_assigned = envelope.id.is_none();
    let id = envelope.id.unwrap_or_else(message::new_id);
    let task_type = envelope.task_type.unwrap_or_default();
    let span = tracing::info_span!("task", id = %id, task_type = %if task_type.is_empty() { "-" } else { &task_type }, plugin = "-");
    let task = Task {
        id,
        id_assigned,
        task_type,
        params: String::new(),
        reply_to: envelope.reply_to,
        ordering_key: None,
        attempts: 0,
        max_retries: None,
        backoff_base_ms: None,
        backoff_cap_ms: None,
        not_before_ms: None,
        unroutable_since: None,
        has_delay_ms: false,
        parent_id: None,
        chain_depth: 0,
    };
    let error = ErrorInfo {
        kind: bad.kind().into(),
        message: bad.to_string(),
    };
    fail(shared, lease, raw, &task, None, error, started_at)
        .instrument(span)
        .await
}

/// Fails a task that never reached a plugin.
async fn fail(
    shared: &Shared,
    lease: &Lease,
    raw: &Bytes,
    task: &Task,
    plugin: Option<&Plugin>,
    error: ErrorInfo,
    started_at: u64,
) -> Outcome {
    let finished_at = now_ms();
    let record = ResultRecord {
        id: task.id.clone(),
        task_type: (!task.task_type.is_empty()).then(|| task.task_type.clone()),
        status: Status::Failed,
        result: None,
        error: None,
        attempts: task.attempts + 1,
        started_at,
        finished_at,
        duration_ms: finished_at.saturating_sub(started_at),
        plugin: plugin.map(|p| p.name().to_owned()),
        plugin_version: None,
        plugin_sha256: None,
        worker: lease.worker_id.to_string(),
        usage: Usage::default(),
        tenant: shared.tenant.as_ref().map(|t| t.name.clone()),
        parent_id: task.parent_id.clone(),
        children: Vec::new(),
    };
    fail_with(shared, lease, raw, task, record, error).await
}

/// Acknowledges a task as failed for good and dead-letters its message.
async fn fail_with(
    shared: &Shared,
    lease: &Lease,
    raw: &Bytes,
    task: &Task,
    mut record: ResultRecord,
    error: ErrorInfo,
) -> Outcome {
    tracing::warn!(attempt = record.attempts, kind = %error.kind, "task failed; dead-lettered: {}", error.message);
    let task_type = record.task_type.clone().unwrap_or_default();
    let plugin = record.plugin.clone().unwrap_or_default();
    let mut labels = vec![("task_type", task_type), ("plugin", plugin)];
    if let Some(tenant) = &record.tenant {
        labels.push(("tenant", tenant.clone()));
    }
    ::metrics::counter!("sluice_tasks_failed_total", &labels).increment(1);
    labels.push(("reason", error.kind.clone()));
    ::metrics::counter!("sluice_tasks_dead_lettered_total", &labels).increment(1);
    let letter = DeadLetter {
        id: task.id.clone(),
        task_type: record.task_type.clone(),
        message: String::from_utf8_lossy(raw).into_owned(),
        // Only a stand-in (small) is parsed again, for its original length.
        message_bytes: if error.kind == "too_large" {
            message_bytes(raw)
        } else {
            None
        },
        error: error.clone(),
        attempts: record.attempts,
        dead_at: record.finished_at,
        worker: lease.worker_id.to_string(),
    };
    record.status = Status::Failed;
    record.error = Some(error);
    let json = serde_json::to_string(&record).expect("record serializes");
    let letter = serde_json::to_string(&letter).expect("dead letter serializes");
    let outcome = finish(shared, lease, raw, task, json, Some(letter), Vec::new()).await;
    if outcome == Outcome::Succeeded {
        Outcome::Failed
    } else {
        outcome
    }
}

/// The original length of an oversized message's stand-in (its
/// `sluice_too_large.bytes`); `None` for any other message.
fn message_bytes(raw: &[u8]) -> Option<u64> {
    match Task::parse(raw, 0) {
        Err(BadMessage::TooLarge { bytes, .. }) => Some(bytes as u64),
        _ => None,
    }
}

/// Acknowledges (batched with other tasks finishing now) with its result
/// `record`, as failed and dead-lettered when a `dead_letter` is given, and
/// pushes `follow_ups` (messages) in the same atomic step; then the record
/// is pushed onto `reply_to`. Returns `Succeeded` when acknowledged,
/// `Abandoned` when fenced off.
async fn finish(
    shared: &Shared,
    lease: &Lease,
    raw: &Bytes,
    task: &Task,
    record: String,
    dead_letter: Option<String>,
    follow_ups: Vec<String>,
) -> Outcome {
    let request = Arc::new(AckRequest {
        worker_id: lease.worker_id.clone(),
        message: raw.clone(),
        id: task.id.clone(),
        record,
        status: if dead_letter.is_some() {
            "failed"
        } else {
            "succeeded"
        },
        dead_letter,
        reply_to: task.reply_to.clone(),
        follow_ups,
    });
    let acked = with_redis_retry(lease, || shared.acker.ack(request.clone())).await;
    if !acked {
        tracing::warn!(
            "acknowledgement rejected: the lease was lost and the task may run elsewhere"
        );
        return Outcome::Abandoned;
    }
    Outcome::Succeeded
}

/// Runs a Redis operation until it answers, backing off while Redis is
/// unreachable. Gives up (false) once the lease is lost: the reaper then owns
/// the message.
async fn with_redis_retry<F, Fut>(lease: &Lease, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = QueueResult<bool>>,
{
    let mut delay = Duration::from_millis(50);
    let mut logged = false;
    loop {
        match op().await {
            Ok(done) => {
                if logged {
                    tracing::debug!("redis reachable again");
                }
                return done;
            }
            Err(e) => {
                // The fetch loop and the heartbeat report the outage; per task, debug only.
                if !logged {
                    tracing::debug!(error = %e, "redis operation failed; retrying with backoff");
                    logged = true;
                }
                if lease.cancel.is_cancelled() {
                    return false;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
