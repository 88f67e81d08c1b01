//! Where a worker's task slots come from: its own semaphore (one queue, the
//! classic worker) or a share of a multi-tenant worker's slots, handed out
//! by the tenant scheduler (see [`crate::tenant::scheduler`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tenant::scheduler::{Grant, Scheduler};

/// The source of a worker's slots.
#[derive(Clone)]
pub(crate) enum Slots {
    /// `concurrency` slots of its own.
    Own(Arc<Semaphore>, usize),
    /// Tenant `index`'s share of a scheduler's slots.
    Shared(Scheduler, usize),
}

/// One slot: a task may run while it is held. Dropping it gives it back.
#[derive(Debug)]
pub enum Slot {
    /// A permit of the worker's own semaphore.
    Own(OwnedSemaphorePermit),
    /// A grant of the tenant scheduler.
    Shared(Grant),
}

impl Slot {
    /// Records the CPU time the task run in this slot used (µs); the tenant
    /// scheduler charges it to the tenant when the slot is given back.
    pub fn charge(&mut self, cpu_us: u64) {
        if let Slot::Shared(grant) = self {
            grant.charge(cpu_us);
        }
    }
}

impl Slots {
    /// Waits for a slot.
    pub(crate) async fn acquire(&self) -> Slot {
        match self {
            Slots::Own(semaphore, _) => Slot::Own(
                semaphore
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open"),
            ),
            Slots::Shared(scheduler, tenant) => Slot::Shared(scheduler.acquire(*tenant).await),
        }
    }

    /// A slot now, if one is free (and, when shared, this tenant is due).
    pub(crate) fn try_acquire(&self) -> Option<Slot> {
        match self {
            Slots::Own(semaphore, _) => semaphore.clone().try_acquire_owned().ok().map(Slot::Own),
            Slots::Shared(scheduler, tenant) => scheduler.try_acquire(*tenant).map(Slot::Shared),
        }
    }

    /// Slots held now, by running tasks and by fetch loops about to fetch.
    pub(crate) fn held(&self) -> usize {
        match self {
            Slots::Own(semaphore, concurrency) => concurrency - semaphore.available_permits(),
            Slots::Shared(scheduler, tenant) => scheduler.running(*tenant),
        }
    }

    /// Whether idle fetch loops must not keep a slot while blocked on an
    /// empty queue (shared slots: other tenants need them).
    pub(crate) fn shared(&self) -> bool {
        matches!(self, Slots::Shared(..))
    }
}
