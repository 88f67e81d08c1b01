//! Instance reuse, for plugins that opt in with
//! [`Manifest::instance_reuse`](crate::manifest::Manifest::instance_reuse):
//! a store whose guest returned normally is parked with its plugin and
//! re-armed (deadline, cancellation, epoch) for the plugin's next task,
//! until it has run `instance_reuse` tasks.
//!
//! Parked instances keep their slots in the pooling allocator, so the whole
//! sandbox parks at most a budget of them (half the pool); past it an
//! instance is torn down as usual.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use super::bindings;
use super::output::CapturedOutput;
use super::state::{CancelToken, TaskState};

/// One task's sandbox: its store, the instance once created, and the sinks
/// its stdout and stderr are captured into.
pub(super) struct Sandboxed {
    pub(super) store: Store<TaskState>,
    /// `None` until instantiated.
    pub(super) instance: Option<bindings::Plugin>,
    pub(super) stdout: CapturedOutput,
    pub(super) stderr: CapturedOutput,
    /// Tasks this instance has run to completion.
    pub(super) runs: u32,
}

impl Sandboxed {
    /// Arms the store for a task: a deadline `timeout` from now, `cancel`,
    /// and an epoch check at the next tick (a new store's deadline is 0,
    /// which traps at once: wasmtime#4342).
    pub(super) fn arm(&mut self, timeout: Duration, cancel: &CancelToken) {
        let state = self.store.data_mut();
        state.deadline = Instant::now() + timeout;
        state.cancel = cancel.clone();
        state.memory_exceeded = false;
        state.log.reset();
        state.memory_peak = state.memory_used;
        self.store.set_epoch_deadline(1);
    }
}

/// The parked instances of one plugin.
#[derive(Default)]
pub(super) struct WarmPool {
    idle: Mutex<Vec<(Sandboxed, OwnedSemaphorePermit)>>,
}

impl WarmPool {
    /// A parked instance, if any (most recently parked first: its memory is
    /// the likeliest to be in cache).
    pub(super) fn take(&self) -> Option<Sandboxed> {
        let (sandboxed, _budget) = self.idle.lock().expect("warm pool lock").pop()?;
        Some(sandboxed)
    }

    /// Parks `sandboxed` if `budget` (the sandbox-wide limit of parked
    /// instances) allows; otherwise hands it back to be torn down.
    pub(super) fn park(&self, sandboxed: Sandboxed, budget: &Arc<Semaphore>) -> Option<Sandboxed> {
        match budget.clone().try_acquire_owned() {
            Ok(permit) => {
                self.idle
                    .lock()
                    .expect("warm pool lock")
                    .push((sandboxed, permit));
                None
            }
            Err(_) => Some(sandboxed),
        }
    }
}
