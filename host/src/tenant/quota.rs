//! A tenant's quotas across every worker, kept in Redis in the tenant's own
//! hash slot and changed only by atomic Lua scripts:
//!
//! - `rate_per_sec`: a token bucket (`{Q}:quota:rate`, capacity one
//!   second's worth, at least 1 token): a worker takes a token per task it
//!   starts; it fetches only as many messages as it got tokens.
//! - `cpu_ms_per_min`: a ledger of the CPU time the tenant's tasks used, per
//!   second of the Redis server's clock (`{Q}:quota:cpu`), summed over the
//!   last 60 s. While the sum is at or over the budget no task starts.
//!
//! Over quota, a tenant's tasks stay in its queue (delayed, never failed or
//! dropped) and its fetch loops wait for the time the script says a start
//! becomes possible; `{Q}:quota:throttled` holds that time, for
//! `sluice stats`. Every worker adds its tasks' CPU time to the ledger in
//! batches (every [`FLUSH_EVERY`]), so the budget can be overrun by what
//! runs in that time plus the tasks already running.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Script;

use crate::queue::{Queue, QueueResult};

/// How often a worker adds its tenants' CPU time to their Redis ledgers.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

fn script(body: &str) -> Script {
    Script::new(&format!(
        "{}\n{}",
        include_str!("../queue/lua/common.lua"),
        body
    ))
}

/// The Redis keys of a tenant's quotas (in its queue's hash slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaKeys {
    /// Token bucket (hash: `tokens`, `ts`).
    pub rate: String,
    /// CPU ledger (hash: Unix second → CPU µs).
    pub cpu: String,
    /// Until when (Unix ms) the tenant is throttled (string, expiring).
    pub throttled: String,
}

impl QuotaKeys {
    /// The quota keys of queue `queue`.
    pub fn new(queue: &str) -> QuotaKeys {
        QuotaKeys {
            rate: format!("{{{queue}}}:quota:rate"),
            cpu: format!("{{{queue}}}:quota:cpu"),
            throttled: format!("{{{queue}}}:quota:throttled"),
        }
    }
}

/// One tenant's quotas, as a worker enforces them.
pub struct Quota {
    queue: Queue,
    keys: QuotaKeys,
    rate_per_sec: Option<f64>,
    cpu_budget_us: Option<u64>,
    admit: Script,
    charge: Script,
    /// CPU µs used since the last flush.
    unflushed: Arc<AtomicU64>,
    /// Wait the last refused admission asked for, ms.
    wait_ms: AtomicU64,
}

impl Quota {
    /// The quotas of the tenant whose queue is `queue`.
    pub fn new(queue: Queue, rate_per_sec: Option<f64>, cpu_ms_per_min: Option<u64>) -> Quota {
        Quota {
            keys: QuotaKeys::new(&queue.keys().pending),
            queue,
            rate_per_sec,
            cpu_budget_us: cpu_ms_per_min.map(|ms| ms.saturating_mul(1000)),
            admit: script(include_str!("lua/admit.lua")),
            charge: script(include_str!("lua/charge.lua")),
            unflushed: Arc::new(AtomicU64::new(0)),
            wait_ms: AtomicU64::new(0),
        }
    }

    /// Whether any quota is set (else admission is free and local).
    pub fn limited(&self) -> bool {
        self.rate_per_sec.is_some() || self.cpu_budget_us.is_some()
    }

    /// How many of `want` task starts the quotas allow now (taking that many
    /// tokens). 0 means over quota: see [`Quota::wait`]. When Redis cannot be
    /// reached, allows them all (the fetch that follows fails the same way).
    pub async fn admit(&self, want: usize) -> usize {
        if !self.limited() || want == 0 {
            return want;
        }
        match self.call_admit(want, 0).await {
            Ok((granted, wait)) => {
                self.wait_ms.store(wait, Ordering::Relaxed);
                usize::try_from(granted).unwrap_or(0)
            }
            Err(e) => {
                tracing::debug!(error = %e, "quota check failed; not throttling");
                want
            }
        }
    }

    /// Gives back `unused` admitted starts (fewer messages were fetched).
    pub async fn refund(&self, unused: usize) {
        if unused == 0 || self.rate_per_sec.is_none() {
            return;
        }
        if let Err(e) = self.call_admit(0, unused).await {
            tracing::debug!(error = %e, "quota refund failed");
        }
    }

    /// Waits as long as the last refused admission said (at most 1 s, then
    /// the caller asks again).
    pub async fn wait(&self) {
        let ms = self.wait_ms.load(Ordering::Relaxed).clamp(1, 1_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Adds a task's CPU time to the ledger (flushed to Redis by [`Quota::flush_loop`]).
    pub fn charge(&self, cpu_us: u64) {
        self.unflushed.fetch_add(cpu_us, Ordering::Relaxed);
    }

    /// Adds the CPU time charged locally to the tenant's Redis ledger every
    /// [`FLUSH_EVERY`]; runs until dropped.
    pub async fn flush_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            self.flush().await;
        }
    }

    /// Adds the CPU time charged locally to the Redis ledger now.
    pub async fn flush(&self) {
        let us = self.unflushed.swap(0, Ordering::Relaxed);
        if us == 0 {
            return;
        }
        let charged: QueueResult<i64> = self
            .charge
            .key(&self.keys.cpu)
            .arg(us)
            .invoke_async(&mut self.queue.connection())
            .await
            .map_err(Into::into);
        if let Err(e) = charged {
            // Keep it for the next flush.
            self.unflushed.fetch_add(us, Ordering::Relaxed);
            tracing::debug!(error = %e, "cannot add CPU time to the tenant's ledger");
        }
    }

    async fn call_admit(&self, want: usize, refund: usize) -> redis::RedisResult<(u64, u64)> {
        let rate = self.rate_per_sec.map(|r| r.to_string()).unwrap_or_default();
        let capacity = self.rate_per_sec.map_or(1.0, |r| r.max(1.0));
        let budget = self
            .cpu_budget_us
            .map(|b| b.to_string())
            .unwrap_or_default();
        self.admit
            .key(&self.keys.rate)
            .key(&self.keys.cpu)
            .key(&self.keys.throttled)
            .arg(want)
            .arg(rate)
            .arg(capacity)
            .arg(budget)
            .arg(refund)
            .invoke_async(&mut self.queue.connection())
            .await
    }
}

/// CPU µs `queue`'s tenant used in the rolling minute, and until when (Unix
/// ms, 0 if not) it is throttled by a quota.
///
/// # Errors
/// On Redis errors.
pub async fn minute_usage(queue: &Queue) -> QueueResult<(u64, u64)> {
    let keys = QuotaKeys::new(&queue.keys().pending);
    Ok(script(include_str!("lua/usage.lua"))
        .key(&keys.cpu)
        .key(&keys.throttled)
        .invoke_async(&mut queue.connection())
        .await?)
}
