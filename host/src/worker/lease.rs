//! The worker's lease: its id, the token that interrupts its sandboxes when
//! the lease is lost, and the heartbeat that renews it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::queue::Queue;
use crate::sandbox::CancelToken;

/// One lease: a worker id registered in `{Q}:workers`, and the token shared
/// by every sandbox running a task fetched under it.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Worker id, `host:pid:random`; fresh for every lease.
    pub worker_id: Arc<str>,
    /// Cancelled when the lease is lost (or at shutdown, after the grace period).
    pub cancel: CancelToken,
}

impl Lease {
    fn new(base_id: &str) -> Lease {
        Lease {
            worker_id: format!("{base_id}:{:06x}", fastrand::u32(..0x100_0000)).into(),
            cancel: CancelToken::default(),
        }
    }
}

/// Holds the current lease; replaced when a lease is lost.
#[derive(Debug)]
pub struct LeaseHolder {
    base_id: String,
    current: RwLock<Lease>,
}

impl LeaseHolder {
    /// A holder whose worker ids start with `base_id` (e.g. `host:pid`).
    pub fn new(base_id: &str) -> LeaseHolder {
        LeaseHolder {
            base_id: base_id.to_owned(),
            current: RwLock::new(Lease::new(base_id)),
        }
    }

    /// The current lease.
    pub fn current(&self) -> Lease {
        self.current.read().expect("lease lock").clone()
    }

    /// Marks `lost` as lost (its sandboxes are interrupted) and, if it is
    /// still the current lease, replaces it with a fresh one, which the
    /// caller must register. Returns the new current lease.
    pub fn replace(&self, lost: &Lease) -> Lease {
        lost.cancel.cancel();
        self.rotate(lost)
    }

    /// Replaces `old`, if it is still the current lease, with a fresh one
    /// (which the caller must register) without interrupting `old`'s tasks:
    /// they may acknowledge until `old` expires, which it then does since it
    /// is no longer renewed, and a reaper puts back whatever its in-flight
    /// list still holds. Returns the new current lease.
    pub fn rotate(&self, old: &Lease) -> Lease {
        let mut current = self.current.write().expect("lease lock");
        if Arc::ptr_eq(&current.worker_id, &old.worker_id) {
            *current = Lease::new(&self.base_id);
        }
        current.clone()
    }
}

/// Renews the lease every `heartbeat` until the process ends. A renewal
/// that finds the lease lost (the worker stalled past its expiry, e.g.
/// `SIGSTOP`, and a reaper requeued its tasks) interrupts every sandbox
/// of that lease and registers a fresh worker id. If Redis cannot be
/// reached for a whole lease period the lease is treated as lost too.
pub async fn heartbeat(
    queue: Queue,
    holder: Arc<LeaseHolder>,
    lease_for: Duration,
    heartbeat: Duration,
) {
    let mut last_ok = tokio::time::Instant::now();
    let mut redis_down = false;
    loop {
        tokio::time::sleep(heartbeat).await;
        let lease = holder.current();
        match queue.renew(&lease.worker_id, lease_for).await {
            Ok(true) => {
                if redis_down {
                    tracing::info!("redis reachable again; lease renewed");
                    redis_down = false;
                }
                last_ok = tokio::time::Instant::now();
            }
            Ok(false) => {
                tracing::warn!(worker = %lease.worker_id, "lease lost (worker stalled past its expiry); interrupting its tasks");
                register_fresh(&queue, &holder, &lease, lease_for).await;
                last_ok = tokio::time::Instant::now();
            }
            Err(e) => {
                if !redis_down {
                    tracing::warn!(error = %e, "cannot renew the lease; retrying");
                    redis_down = true;
                }
                if last_ok.elapsed() > lease_for {
                    tracing::warn!(worker = %lease.worker_id, "lease expired while redis was unreachable; interrupting its tasks");
                    let fresh = holder.replace(&lease);
                    // Registered once Redis answers again (next heartbeat).
                    let _ = queue.register(&fresh.worker_id, lease_for).await;
                    last_ok = tokio::time::Instant::now();
                }
            }
        }
    }
}

/// Replaces a lost lease and registers the new one, retrying until Redis answers.
pub async fn register_fresh(
    queue: &Queue,
    holder: &LeaseHolder,
    lost: &Lease,
    lease_for: Duration,
) -> Lease {
    let fresh = holder.replace(lost);
    register(queue, &fresh, lease_for).await;
    fresh
}

/// Registers `fresh`, retrying until Redis answers.
pub async fn register(queue: &Queue, fresh: &Lease, lease_for: Duration) {
    let mut delay = Duration::from_millis(100);
    while let Err(e) = queue.register(&fresh.worker_id, lease_for).await {
        tracing::warn!(error = %e, "cannot register a new lease; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    tracing::info!(worker = %fresh.worker_id, "registered a new lease");
}
