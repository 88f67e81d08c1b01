//! The worker: fetches messages, runs up to `concurrency` tasks at once,
//! keeps its lease alive, recovers the work of dead workers, promotes
//! delayed tasks, and shuts down gracefully.

mod acks;
pub mod acl;
mod lease;
mod oversized;
mod process;
mod replies;
mod retry;
mod slots;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

pub use lease::{Lease, LeaseHolder};
pub use process::Outcome;
pub use retry::RetryPolicy;
pub use slots::Slot;

use crate::queue::Queue;
use crate::registry::SharedRegistry;
use crate::sandbox::Sandbox;
use crate::tenant::TenantContext;
use slots::Slots;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once (default 8). A task frees its slot as soon as its
    /// handler has run; up to four times as many finished tasks may then
    /// await their acknowledgement.
    pub concurrency: usize,
    /// Exit once the queue is empty and nothing is in flight (like RQ's `--burst`).
    pub burst: bool,
    /// Lease length (default 15 s): a worker silent this long is presumed dead.
    pub lease: Duration,
    /// Lease renewal and reaper period (default 5 s).
    pub heartbeat: Duration,
    /// Longest wait of one blocking fetch (default 1 s).
    pub block: Duration,
    /// Most messages moved per fetch round-trip (default 64).
    pub batch: usize,
    /// Default retry policy.
    pub retry: RetryPolicy,
    /// Crashed workers a message may be in flight on before it is
    /// dead-lettered as poison (default 3).
    pub max_crashes: u32,
    /// Time in-flight tasks get to finish after a shutdown signal (default 30 s).
    pub grace: Duration,
    /// How long a task whose type no plugin handles waits for one to be
    /// deployed before it is dead-lettered (default 5 min).
    pub unknown_type_grace: Duration,
    /// Largest message processed, bytes (default [`DEFAULT_MAX_MESSAGE_BYTES`]);
    /// a longer one is dead-lettered at once with kind `too_large`, unparsed.
    /// `--max-message-bytes`; a per-tenant setting of the same name can
    /// replace it in the worker serving that tenant.
    pub max_message_bytes: usize,
    /// Largest plugin result, bytes, for plugins whose manifest sets no
    /// `max_result_bytes` (default [`DEFAULT_MAX_RESULT_BYTES`]); a longer
    /// one fails the task with kind `result_too_large`. `--max-result-bytes`.
    pub max_result_bytes: usize,
}

/// Default [`WorkerConfig::max_message_bytes`]: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Default [`WorkerConfig::max_result_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1 << 20;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 8,
            burst: false,
            lease: Duration::from_secs(15),
            heartbeat: Duration::from_secs(5),
            block: Duration::from_secs(1),
            batch: 64,
            retry: RetryPolicy::default(),
            max_crashes: 3,
            grace: Duration::from_secs(30),
            unknown_type_grace: Duration::from_secs(300),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
        }
    }
}

/// Counts of what a worker run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks failed for good (dead-lettered).
    pub failed: u64,
    /// Failed attempts with a retry scheduled.
    pub retried: u64,
    /// Tasks parked until their `delay_ms`/`run_at`.
    pub deferred: u64,
    /// Tasks left in flight for recovery (interrupted or fenced off).
    pub abandoned: u64,
    /// Messages put back at the head of the queue at shutdown.
    pub released: u64,
}

/// State shared by the fetch loops and the task futures.
pub struct Shared {
    queue: Queue,
    registry: SharedRegistry,
    sandbox: Sandbox,
    config: WorkerConfig,
    counters: Counters,
    on_task_start: Option<TaskStartProbe>,
    acker: acks::Acker,
    /// Tasks done running that await their acknowledgement (see [`UNACKED_PER_SLOT`]).
    unacked: Semaphore,
    /// The tenant this worker serves, in a multi-tenant worker.
    tenant: Option<Arc<TenantContext>>,
}

/// A task gives its slot back as soon as its handler has run, and waits for
/// its acknowledgement (a Redis round trip, batched with other tasks) without
/// holding it, so slow acknowledgements do not idle the CPU. At most this
/// many tasks per slot wait so.
const UNACKED_PER_SLOT: usize = 4;

/// How many finished tasks may await their acknowledgement at once.
fn unacked_capacity(config: &WorkerConfig) -> usize {
    config.concurrency * UNACKED_PER_SLOT
}

/// Called with a task's id just before its handler runs (see
/// [`Worker::on_task_start`]).
pub type TaskStartProbe = Arc<dyn Fn(&str) + Send + Sync>;

/// A worker bound to one queue.
pub struct Worker {
    shared: Arc<Shared>,
    leases: Arc<LeaseHolder>,
    /// The acknowledgement task, spawned when the worker runs.
    acker_task: std::sync::Mutex<Option<acks::AckerTask>>,
    /// The tasks spawned for fetched messages. A task ends once its outcome
    /// is acknowledged and counted, so waiting for all of them is what makes
    /// the run's [`Summary`] complete.
    tasks: TaskTracker,
}

impl Worker {
    /// A worker for `queue` running `registry`'s plugins in `sandbox`.
    /// `base_id` prefixes its worker ids (conventionally `host:pid`).
    pub fn new(
        queue: Queue,
        registry: SharedRegistry,
        sandbox: Sandbox,
        config: WorkerConfig,
        base_id: &str,
    ) -> Worker {
        let (acker, acker_task) = acks::Acker::new(queue.clone(), config.lease);
        Worker {
            shared: Arc::new(Shared {
                queue,
                registry,
                sandbox,
                counters: Counters::default(),
                on_task_start: None,
                acker,
                unacked: Semaphore::new(unacked_capacity(&config)),
                config,
                tenant: None,
            }),
            leases: Arc::new(LeaseHolder::new(base_id)),
            acker_task: std::sync::Mutex::new(Some(acker_task)),
            tasks: TaskTracker::new(),
        }
    }

    /// Calls `probe` with each task's id just before its handler starts —
    /// how the benchmark measures pickup latency (enqueue → handler start).
    pub fn on_task_start(mut self, probe: TaskStartProbe) -> Worker {
        Arc::get_mut(&mut self.shared)
            .expect("worker not running yet")
            .on_task_start = Some(probe);
        self
    }

    /// Makes this worker serve one tenant of a multi-tenant worker: its slots
    /// come from the tenant scheduler, its tasks run under the tenant's
    /// limits and quotas, and its result records name the tenant.
    pub fn with_tenant(mut self, tenant: Arc<TenantContext>) -> Worker {
        Arc::get_mut(&mut self.shared)
            .expect("worker not running yet")
            .tenant = Some(tenant);
        self
    }

    /// The current lease (worker id and cancellation token).
    pub fn lease(&self) -> Lease {
        self.leases.current()
    }

    /// Runs until `shutdown` resolves (or, in burst mode, until the queue is
    /// empty and nothing is in flight). Then stops fetching, gives in-flight
    /// tasks the grace period, interrupts the rest, puts their messages back
    /// at the head of the queue and drops the lease.
    ///
    /// Redis outages do not end the run: every operation retries with
    /// backoff and the lease logic keeps the at-least-once guarantee.
    ///
    /// # Errors
    /// Only when the first lease cannot be registered.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Summary, crate::queue::QueueError> {
        let shared = &self.shared;
        let config = &shared.config;
        let first = self.leases.current();
        shared
            .queue
            .register(&first.worker_id, config.lease)
            .await?;
        tracing::info!(worker = %first.worker_id, queue = %shared.queue.keys().pending, concurrency = config.concurrency, burst = config.burst, "worker started");

        let acker = self
            .acker_task
            .lock()
            .expect("acker lock")
            .take()
            .map(tokio::spawn);
        let heartbeat = tokio::spawn(lease::heartbeat(
            shared.queue.clone(),
            self.leases.clone(),
            config.lease,
            config.heartbeat,
        ));
        let maintenance = tokio::spawn(maintain(
            shared.queue.clone(),
            self.leases.clone(),
            config.clone(),
        ));

        let slots = match &shared.tenant {
            Some(tenant) => Slots::Shared(tenant.scheduler.clone(), tenant.index),
            None => Slots::Own(
                Arc::new(Semaphore::new(config.concurrency)),
                config.concurrency,
            ),
        };
        let done = Arc::new(Notify::new());

        tokio::pin!(shutdown);
        // Two fetch loops share the slots so that one's round trip overlaps
        // the other's: with one, a busy worker ran out of tasks while a
        // fetch's reply made its way back. Only the first blocks on an
        // empty queue; the second then waits for a task to end.
        let fetching = async {
            tokio::select! {
                () = self.fetch_loop(&slots, &done, true) => {}
                () = self.fetch_loop(&slots, &done, false) => {}
            }
        };
        tokio::select! {
            () = fetching => {}
            () = &mut shutdown => tracing::info!("shutdown requested: no new tasks; waiting for in-flight ones"),
        }

        // Drain: wait for in-flight tasks, up to the grace period.
        let drained = tokio::time::timeout(config.grace, self.all_done()).await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = config.grace.as_millis() as u64,
                "grace period over; interrupting the remaining tasks"
            );
            self.leases.current().cancel.cancel();
            self.all_done().await;
        }
        heartbeat.abort();
        maintenance.abort();
        if let Some(acker) = acker {
            acker.abort();
        }
        let lease = self.leases.current();
        let released = match shared.queue.release(&lease.worker_id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the lease; the reaper will recover its tasks");
                0
            }
        };
        let summary = shared.counters.summary(released);
        tracing::info!(?summary, "worker stopped");
        Ok(summary)
    }

    /// Waits until every spawned task has ended: run, acknowledged and
    /// counted. (The slots alone do not tell: a task gives its permits back
    /// just before it counts its outcome.)
    async fn all_done(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Whether no task runs or awaits its acknowledgement.
    fn none_in_flight(&self, slots: &Slots) -> bool {
        let config = &self.shared.config;
        slots.held() == 0 && self.shared.unacked.available_permits() == unacked_capacity(config)
    }

    /// Fetches messages while slots are free and spawns a task for each.
    /// Returns (burst mode only) once the queue is empty and nothing is in
    /// flight. When the queue is empty, a loop that `may_block` waits on it
    /// with `BLMOVE`; another waits for a running task to end.
    async fn fetch_loop(&self, slots: &Slots, done: &Arc<Notify>, may_block: bool) {
        let shared = &self.shared;
        let config = &shared.config;
        let mut blocking = None;
        let mut backoff = Duration::from_millis(50);
        // Log Redis outages once per change of state, not once per retry.
        let mut redis_down = false;
        loop {
            let first = slots.acquire().await;
            let mut permits = vec![first];
            // Under load, gather a few free slots (≤ 1 ms) so that one fetch
            // round trip serves several tasks; when idle, fetch at once.
            // (Tenants of a shared pool do not wait: their slots are handed
            // out one by one by the tenant scheduler, and a tenant with short
            // tasks would spend its turns waiting.)
            let enough = if slots.shared() {
                1
            } else {
                (config.concurrency / 4).clamp(1, config.batch)
            };
            let gather_until = tokio::time::Instant::now() + FETCH_GATHER;
            loop {
                while permits.len() < config.batch {
                    match slots.try_acquire() {
                        Some(p) => permits.push(p),
                        None => break,
                    }
                }
                let running = slots.held() - permits.len();
                if permits.len() >= enough || running == 0 {
                    break;
                }
                if tokio::time::timeout_at(gather_until, done.notified())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            if let Some(tenant) = &shared.tenant {
                // Quotas: fetch only as many as the tenant may start now;
                // over quota, its tasks wait in its queue.
                let granted = tenant.admit(permits.len()).await;
                if granted == 0 {
                    drop(permits);
                    tenant.wait_for_quota().await;
                    continue;
                }
                permits.truncate(granted);
            }
            let lease = self.leases.current();
            let fetched = match shared
                .queue
                .fetch_batch_within(&lease.worker_id, permits.len(), config.max_message_bytes)
                .await
            {
                Ok(Some(messages)) => messages,
                Ok(None) => {
                    // Lease lost: the heartbeat replaces it; wait for that.
                    drop(permits);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if self.leases.current().worker_id == lease.worker_id {
                        lease::register_fresh(&shared.queue, &self.leases, &lease, config.lease)
                            .await;
                    }
                    continue;
                }
                Err(e) => {
                    if !redis_down {
                        tracing::warn!(error = %e, "redis unreachable; fetching paused, retrying with backoff");
                        redis_down = true;
                    }
                    drop(permits);
                    self.rotate_lease(&lease).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            if redis_down {
                tracing::info!("redis reachable again; fetching resumed");
                redis_down = false;
            }
            if let Some(tenant) = &shared.tenant {
                tenant.refund(permits.len() - fetched.len()).await;
            }
            if !fetched.is_empty() {
                for (raw, permit) in fetched.into_iter().zip(permits.drain(..)) {
                    self.spawn_task(lease.clone(), raw, permit, done.clone());
                }
                continue;
            }
            permits.truncate(1);
            if config.burst || !may_block {
                drop(permits);
                if config.burst && self.none_in_flight(slots) {
                    // The queue was empty and no task is in flight: done.
                    return;
                }
                // Look again when a running task ends.
                done.notified().await;
                continue;
            }
            // Idle: block on the queue with one slot (with none when the
            // slots are shared by tenants: an idle tenant must not hold one).
            if slots.shared() {
                permits.clear();
            }
            if blocking.is_none() {
                match shared.queue.blocking_connection(config.block).await {
                    Ok(conn) => blocking = Some(conn),
                    Err(e) => {
                        if !redis_down {
                            tracing::warn!(error = %e, "redis unreachable; fetching paused, retrying with backoff");
                            redis_down = true;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let conn = blocking.as_mut().expect("just set");
            match shared
                .queue
                .fetch_blocking(
                    conn,
                    &lease.worker_id,
                    config.block,
                    config.max_message_bytes,
                )
                .await
            {
                Ok(Some(raw)) => {
                    let permit = match permits.pop() {
                        Some(permit) => permit,
                        None => self.admitted_slot(slots).await,
                    };
                    if self.leases.current().worker_id == lease.worker_id {
                        self.spawn_task(lease, raw, permit, done.clone());
                    }
                    // Else the lease was lost while blocked: the message sits in the old
                    // worker's in-flight list, which the reaper recovers.
                }
                Ok(None) => {}
                Err(e) => {
                    if !redis_down {
                        tracing::warn!(error = %e, "redis unreachable; fetching paused, retrying with backoff");
                        redis_down = true;
                    }
                    blocking = None;
                    self.rotate_lease(&lease).await;
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// A fetch that failed may still have moved messages into the in-flight
    /// list of `lease` (Redis ran it, then the reply was lost with the
    /// connection). Nothing would ever process or recover them while `lease`
    /// is renewed, so fetch under a fresh lease from now on: `lease` expires
    /// and a reaper puts back what its list still holds (at-least-once).
    async fn rotate_lease(&self, lease: &Lease) {
        let fresh = self.leases.rotate(lease);
        if !Arc::ptr_eq(&fresh.worker_id, &lease.worker_id) {
            lease::register(&self.shared.queue, &fresh, self.shared.config.lease).await;
        }
    }

    /// A slot for a message taken while idle without one (shared slots),
    /// once the tenant's quotas let it start. The message waits in this
    /// worker's in-flight list meanwhile, covered by its lease.
    async fn admitted_slot(&self, slots: &Slots) -> Slot {
        if let Some(tenant) = &self.shared.tenant {
            while tenant.admit(1).await == 0 {
                tenant.wait_for_quota().await;
            }
        }
        slots.acquire().await
    }

    fn spawn_task(&self, lease: Lease, raw: Vec<u8>, permit: Slot, done: Arc<Notify>) {
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            let outcome = process::process(&shared, &lease, raw, permit).await;
            shared.counters.count(outcome);
            done.notify_one();
        });
    }
}

/// Longest a busy worker waits to gather free slots before a fetch.
const FETCH_GATHER: Duration = Duration::from_millis(1);

/// Outcome counters, one per [`Outcome`] case.
#[derive(Debug, Default)]
struct Counters([AtomicU64; 5]);

impl Counters {
    fn count(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self, released: u64) -> Summary {
        let get = |o: Outcome| self.0[o as usize].load(Ordering::Relaxed);
        Summary {
            succeeded: get(Outcome::Succeeded),
            failed: get(Outcome::Failed),
            retried: get(Outcome::Retrying),
            deferred: get(Outcome::Deferred),
            abandoned: get(Outcome::Abandoned),
            released,
        }
    }
}

/// How often a worker looks for replies in `{Q}:outbox` (besides right
/// after a reap that put some there).
const OUTBOX_PERIOD: Duration = Duration::from_secs(1);

/// Background upkeep every worker runs: promotes due delayed messages
/// (waking when the next one is due, at least every second), delivers the
/// replies dead or stopped workers left in `{Q}:outbox` (every
/// [`OUTBOX_PERIOD`]), and, every heartbeat, reaps the in-flight messages and
/// undelivered replies of workers whose lease expired.
async fn maintain(queue: Queue, leases: Arc<LeaseHolder>, config: WorkerConfig) {
    let mut next_reap = tokio::time::Instant::now();
    let mut next_move = tokio::time::Instant::now();
    let tombstone = Duration::from_secs(300);
    loop {
        let wait = match queue.promote_due().await {
            Ok((_, next)) => next.unwrap_or(Duration::MAX).min(Duration::from_secs(1)),
            Err(_) => Duration::from_secs(1),
        };
        if tokio::time::Instant::now() >= next_reap {
            let reaper = leases.current().worker_id;
            match queue
                .reap_counts(&reaper, config.max_crashes, tombstone)
                .await
            {
                Ok(crate::queue::Reaped {
                    recovered: 0,
                    poisoned: 0,
                    replies: 0,
                }) => {}
                Ok(reaped) => {
                    if reaped.replies > 0 {
                        next_move = tokio::time::Instant::now();
                    }
                    tracing::warn!(
                        recovered = reaped.recovered,
                        poisoned = reaped.poisoned,
                        replies = reaped.replies,
                        "recovered the in-flight tasks and undelivered replies of dead workers"
                    )
                }
                Err(e) => tracing::debug!(error = %e, "reap failed; will retry"),
            }
            next_reap = tokio::time::Instant::now() + config.heartbeat;
        }
        if tokio::time::Instant::now() >= next_move {
            let mover = leases.current().worker_id;
            match replies::move_outbox(&queue, &mover, config.lease).await {
                Ok(0) => {}
                Ok(delivered) => {
                    tracing::info!(
                        delivered,
                        "delivered replies other workers left in the outbox"
                    )
                }
                Err(e) => tracing::debug!(error = %e, "moving the outbox failed; will retry"),
            }
            next_move = tokio::time::Instant::now() + OUTBOX_PERIOD;
        }
        tokio::time::sleep(wait.max(Duration::from_millis(5))).await;
    }
}
