//! Sharing one worker's `concurrency` slots among tenants, fairly by the
//! CPU time their tasks actually use.
//!
//! The algorithm is deficit round robin (Shreedhar & Varghese, SIGCOMM '95)
//! in its virtual-time form, as in start-time fair queuing: each tenant has
//! a *virtual time*, the CPU µs its tasks used divided by its `weight`.
//! Whenever a slot is free, it goes to the waiting tenant with the smallest
//! virtual time (that is below its `max_concurrency`). A task's cost is not
//! known until it ran, so a grant charges an estimate (the tenant's moving
//! average) at once — otherwise one tenant would receive every free slot of
//! a burst — and the difference to the measured CPU time when the slot is
//! given back. A tenant with 10× costlier tasks thus gets ~1/10 of the task
//! starts of an equal-weight neighbour and neither starves.
//!
//! Work-conserving: a tenant that waits for nothing is skipped at once, and
//! a tenant that becomes active again starts at most [`IDLE_CREDIT_US`]
//! behind the smallest virtual time of the active ones (as Linux CFS places
//! a waking task near `min_vruntime`), so it cannot bank credit while idle
//! and then monopolise the worker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Estimate charged for a tenant's first task, µs of CPU.
const FIRST_ESTIMATE_US: f64 = 100.0;

/// Most CPU time (µs, per unit of weight) a tenant can bank while idle: a
/// tenant waking up starts at most this far behind the others. Without any
/// allowance, a backlogged tenant whose fetches were all in flight for a
/// moment (no task running or waiting) lost its whole lead.
pub const IDLE_CREDIT_US: f64 = 50_000.0;

/// How long a tenant must have had nothing running or waiting to count as
/// idle when it asks again: a backlogged tenant's tasks are all between
/// fetch and start for moments now and then, which is not idleness.
pub const IDLE_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// Weight of the newest task in a tenant's moving average of task cost.
const EWMA_ALPHA: f64 = 0.2;

/// One tenant's share settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Relative share when tenants compete (> 0).
    pub weight: f64,
    /// Most slots the tenant may hold at once.
    pub max_concurrency: usize,
}

/// The slots of one worker, shared by its tenants. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

struct State {
    free: usize,
    tenants: Vec<TenantState>,
    /// Virtual time of the latest grant (before its charge): where a
    /// tenant waking up while no other is active starts.
    clock: f64,
    /// A delayed dispatch is scheduled (see [`Scheduler::dispatch_later`]).
    redispatch_pending: bool,
}

struct TenantState {
    share: Share,
    running: usize,
    /// CPU µs charged divided by weight.
    vtime: f64,
    /// Moving average of the tenant's task CPU time, µs.
    estimate_us: f64,
    waiters: VecDeque<oneshot::Sender<Grant>>,
    /// CPU µs charged in all (measured), for reports.
    charged_us: u64,
    /// When it last had a task running or waiting (`None`: never).
    last_active: Option<std::time::Instant>,
}

impl TenantState {
    fn active(&self) -> bool {
        self.running > 0 || !self.waiters.is_empty()
    }

    /// Holds a slot now (fetching or running) and was granted or gave one
    /// back within [`IDLE_AFTER`], but is not asking for another right now:
    /// it is between a fetch's request and its reply, and will ask again.
    fn between_fetches(&self) -> bool {
        self.waiters.is_empty()
            && self.running > 0
            && self.running < self.share.max_concurrency
            && self.last_active.is_some_and(|at| at.elapsed() < IDLE_AFTER)
    }
}

/// Free slots held back for tenants due before virtual time `vtime` (other
/// than `tenant`) that are [between fetches](TenantState::between_fetches):
/// as many as each holds (its fetch loops will ask for about as many again). This is anticipatory scheduling (Iyer & Druschel, SOSP '01): a
/// tenant with cheap tasks spends much of each slot waiting on Redis
/// round trips, and a slot handed to a neighbour with costly tasks in that
/// moment would stay with it for a whole (long) task, so with more slots
/// than cores the cheap tenant fell to a small fraction of its CPU share.
/// A reservation lapses after [`IDLE_AFTER`] (a timer dispatches again).
fn reserved_before(state: &State, tenant: Option<usize>, vtime: f64) -> usize {
    state
        .tenants
        .iter()
        .enumerate()
        .filter(|&(i, o)| Some(i) != tenant && o.vtime < vtime && o.between_fetches())
        .map(|(_, o)| o.running.min(o.share.max_concurrency - o.running))
        .sum()
}

/// One slot held by a tenant. Giving it back (dropping it) charges the
/// tenant the CPU time set with [`Grant::charge`] (none if never set: the
/// slot was not used for a task) and hands the slot to the next tenant.
pub struct Grant {
    scheduler: Scheduler,
    tenant: usize,
    estimate_us: f64,
    actual_us: u64,
    armed: bool,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Grant {
    /// Records the measured CPU time of the task this slot ran, µs.
    pub fn charge(&mut self, cpu_us: u64) {
        self.actual_us = cpu_us;
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.armed {
            self.scheduler
                .release(self.tenant, self.estimate_us, self.actual_us);
        }
    }
}

impl Scheduler {
    /// A scheduler of `slots` slots for tenants with these shares (indexed
    /// as given).
    pub fn new(slots: usize, shares: &[Share]) -> Scheduler {
        let tenants = shares
            .iter()
            .map(|&share| TenantState {
                share: Share {
                    weight: if share.weight > 0.0 {
                        share.weight
                    } else {
                        1.0
                    },
                    max_concurrency: share.max_concurrency.clamp(1, slots.max(1)),
                },
                running: 0,
                vtime: 0.0,
                estimate_us: FIRST_ESTIMATE_US,
                waiters: VecDeque::new(),
                charged_us: 0,
                last_active: None,
            })
            .collect();
        Scheduler {
            inner: Arc::new(Mutex::new(State {
                free: slots,
                tenants,
                clock: 0.0,
                redispatch_pending: false,
            })),
        }
    }

    /// Waits for a slot for `tenant` (an index into the shares given to
    /// [`Scheduler::new`]).
    pub async fn acquire(&self, tenant: usize) -> Grant {
        let rx = {
            let mut state = self.lock();
            if let Some(grant) = self.try_grant(&mut state, tenant) {
                return grant;
            }
            let (tx, rx) = oneshot::channel();
            wake(&mut state, tenant);
            state.tenants[tenant].waiters.push_back(tx);
            rx
        };
        rx.await.expect("the scheduler outlives its waiters")
    }

    /// A slot for `tenant` now, if one is free and no other waiting tenant
    /// is due before it.
    pub fn try_acquire(&self, tenant: usize) -> Option<Grant> {
        let mut state = self.lock();
        self.try_grant(&mut state, tenant)
    }

    /// Slots `tenant` holds now.
    pub fn running(&self, tenant: usize) -> usize {
        self.lock().tenants[tenant].running
    }

    /// CPU µs charged to each tenant so far (measured).
    pub fn charged_us(&self) -> Vec<u64> {
        self.lock().tenants.iter().map(|t| t.charged_us).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().expect("scheduler lock")
    }

    fn try_grant(&self, state: &mut State, tenant: usize) -> Option<Grant> {
        let t = &state.tenants[tenant];
        if state.free == 0 || t.running >= t.share.max_concurrency {
            return None;
        }
        if !t.active() {
            wake(state, tenant);
        }
        let vtime = state.tenants[tenant].vtime;
        let someone_first = state.tenants.iter().enumerate().any(|(i, o)| {
            i != tenant
                && !o.waiters.is_empty()
                && o.running < o.share.max_concurrency
                && o.vtime < vtime
        });
        if someone_first || state.free <= reserved_before(state, Some(tenant), vtime) {
            return None;
        }
        Some(self.grant(state, tenant))
    }

    /// Books a slot for `tenant` (the caller checked it may have one).
    fn grant(&self, state: &mut State, tenant: usize) -> Grant {
        state.free -= 1;
        state.clock = state.tenants[tenant].vtime;
        let t = &mut state.tenants[tenant];
        t.running += 1;
        t.last_active = Some(std::time::Instant::now());
        t.vtime += t.estimate_us / t.share.weight;
        Grant {
            scheduler: self.clone(),
            tenant,
            estimate_us: t.estimate_us,
            actual_us: 0,
            armed: true,
        }
    }

    fn release(&self, tenant: usize, estimate_us: f64, actual_us: u64) {
        let mut state = self.lock();
        state.free += 1;
        let t = &mut state.tenants[tenant];
        t.running -= 1;
        t.last_active = Some(std::time::Instant::now());
        t.vtime += (actual_us as f64 - estimate_us) / t.share.weight;
        if actual_us > 0 {
            t.charged_us += actual_us;
            t.estimate_us += EWMA_ALPHA * (actual_us as f64 - t.estimate_us);
        }
        self.dispatch(&mut state);
    }

    /// Dispatches again after [`IDLE_AFTER`], when reservations made now
    /// have lapsed (no-op outside a tokio runtime, as in unit tests).
    fn dispatch_later(&self, state: &mut State) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if state.redispatch_pending {
            return;
        }
        state.redispatch_pending = true;
        let scheduler = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(IDLE_AFTER).await;
            let mut state = scheduler.lock();
            state.redispatch_pending = false;
            scheduler.dispatch(&mut state);
        });
    }

    /// Hands free slots to waiting tenants, smallest virtual time first.
    fn dispatch(&self, state: &mut State) {
        while state.free > 0 {
            let next = state
                .tenants
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.waiters.is_empty() && t.running < t.share.max_concurrency)
                .min_by(|(_, a), (_, b)| a.vtime.total_cmp(&b.vtime))
                .map(|(i, _)| i);
            let Some(tenant) = next else { return };
            if state.free <= reserved_before(state, Some(tenant), state.tenants[tenant].vtime) {
                // Held for a tenant due first that will ask in a moment;
                // look again once that reservation lapses.
                self.dispatch_later(state);
                return;
            }
            let tx = state.tenants[tenant]
                .waiters
                .pop_front()
                .expect("filtered on waiters");
            if tx.is_closed() {
                continue;
            }
            let grant = self.grant(state, tenant);
            if let Err(mut grant) = tx.send(grant) {
                // The waiter went away meanwhile: undo the booking in place
                // (its drop must not take the lock we hold).
                grant.armed = false;
                state.free += 1;
                let t = &mut state.tenants[tenant];
                t.running -= 1;
                t.vtime -= grant.estimate_us / t.share.weight;
            }
        }
    }
}

/// A tenant about to become active after being idle (nothing running or
/// waiting for [`IDLE_AFTER`]) starts no further behind the smallest
/// virtual time of the active tenants (or, when none is, that of the latest
/// grant) than [`IDLE_CREDIT_US`]: next to no credit banked while idle.
fn wake(state: &mut State, tenant: usize) {
    let t = &state.tenants[tenant];
    if t.active() || t.last_active.is_some_and(|at| at.elapsed() < IDLE_AFTER) {
        return;
    }
    let floor = state
        .tenants
        .iter()
        .filter(|t| t.active())
        .map(|t| t.vtime)
        .min_by(f64::total_cmp)
        .unwrap_or(state.clock);
    let t = &mut state.tenants[tenant];
    t.vtime = t.vtime.max(floor - IDLE_CREDIT_US / t.share.weight);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(weight: f64) -> Share {
        Share {
            weight,
            max_concurrency: usize::MAX,
        }
    }

    /// Simulates one slot, both tenants always backlogged (each always has
    /// a waiter queued): tenant `i`'s tasks cost `costs[i]` µs. Returns the
    /// CPU each tenant got.
    fn simulate(weights: [f64; 2], costs: [u64; 2], rounds: usize) -> [u64; 2] {
        let scheduler = Scheduler::new(1, &[share(weights[0]), share(weights[1])]);
        let mut held = scheduler.try_acquire(0).expect("a free slot");
        let mut holder = 0;
        let mut waiting: [Option<oneshot::Receiver<Grant>>; 2] = [None, None];
        let mut cpu = [0u64; 2];
        for _ in 0..rounds {
            for (tenant, rx) in waiting.iter_mut().enumerate() {
                if rx.is_none() {
                    let (tx, new_rx) = oneshot::channel();
                    let mut state = scheduler.lock();
                    wake(&mut state, tenant);
                    state.tenants[tenant].waiters.push_back(tx);
                    *rx = Some(new_rx);
                }
            }
            held.charge(costs[holder]);
            cpu[holder] += costs[holder];
            drop(held);
            let (next, grant) = waiting
                .iter_mut()
                .enumerate()
                .find_map(|(i, rx)| rx.as_mut().and_then(|r| r.try_recv().ok()).map(|g| (i, g)))
                .expect("the slot went to a waiter");
            waiting[next] = None;
            holder = next;
            held = grant;
        }
        cpu
    }

    #[test]
    fn equal_weights_share_cpu_not_task_count() {
        let cpu = simulate([1.0, 1.0], [1_000, 10_000], 4_000);
        let ratio = cpu[0] as f64 / cpu[1] as f64;
        assert!((0.8..1.25).contains(&ratio), "{cpu:?}");
    }

    #[test]
    fn weights_three_to_one() {
        let cpu = simulate([3.0, 1.0], [1_000, 1_000], 4_000);
        let ratio = cpu[0] as f64 / cpu[1] as f64;
        assert!((2.5..3.5).contains(&ratio), "{cpu:?}");
    }

    #[test]
    fn max_concurrency_is_a_cap() {
        let scheduler = Scheduler::new(
            4,
            &[
                Share {
                    weight: 1.0,
                    max_concurrency: 2,
                },
                share(1.0),
            ],
        );
        let a = scheduler.try_acquire(0);
        let b = scheduler.try_acquire(0);
        assert!(a.is_some() && b.is_some());
        assert!(scheduler.try_acquire(0).is_none());
        assert_eq!(scheduler.running(0), 2);
        drop(a);
        assert!(scheduler.try_acquire(0).is_some());
    }

    #[test]
    fn an_idle_tenant_yields_its_share_and_banks_no_credit() {
        let scheduler = Scheduler::new(1, &[share(1.0), share(1.0)]);
        for _ in 0..100 {
            let mut g = scheduler.try_acquire(0).expect("tenant 1 is idle");
            g.charge(1_000);
        }
        // Tenant 1 arrives: it is owed at most IDLE_CREDIT_US, not 100 tasks' worth.
        let mut g = scheduler.try_acquire(1).expect("free slot");
        g.charge(1_000);
        drop(g);
        let state = scheduler.lock();
        assert!(state.tenants[1].vtime >= state.tenants[0].vtime - IDLE_CREDIT_US - 1_000.0);
        const { assert!(IDLE_CREDIT_US < 100.0 * 1_000.0) };
    }

    #[test]
    fn an_unused_grant_costs_nothing() {
        let scheduler = Scheduler::new(1, &[share(1.0)]);
        drop(scheduler.try_acquire(0));
        assert_eq!(scheduler.lock().tenants[0].vtime, 0.0);
    }
}
