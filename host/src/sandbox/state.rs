//! What one task's store holds: its WASI context, its resource limits, its
//! deadline, and the log context that tags the plugin's log lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Level};
use super::log::LogBudget;

/// Table elements one instance may grow to (Python components need tens of thousands).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The error an epoch callback raises when the task's wall-clock deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline passed")]
pub(crate) struct DeadlinePassed;

/// The error an epoch callback raises when the task was cancelled (lease lost, shutdown).
#[derive(Debug, thiserror::Error)]
#[error("task cancelled")]
pub(crate) struct Cancelled;

/// The error the limiter raises when the guest asks for more memory than allowed.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {desired} bytes)")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) limit: usize,
    pub(crate) desired: usize,
}

/// A shared flag that asks a running task to stop at its next epoch check.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks every sandbox holding this token to trap at its next epoch tick (≤ 10 ms).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-task store data.
pub(crate) struct TaskState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    /// Linear-memory limit for the whole instance, bytes.
    pub(crate) memory_limit: usize,
    /// Bytes of linear memory currently allocated, over all memories.
    pub(crate) memory_used: usize,
    /// Largest `memory_used` since the store was last armed, bytes.
    pub(crate) memory_peak: usize,
    /// Set when a grow was refused, so a later trap can be explained.
    pub(crate) memory_exceeded: bool,
    /// Wall-clock deadline, checked at every epoch tick.
    pub(crate) deadline: Instant,
    pub(crate) cancel: CancelToken,
    /// What is left of the task's `log` budget (manifest `max_log_bytes`, `max_log_lines`).
    pub(crate) log: LogBudget,
}

impl TaskState {
    /// The epoch-deadline callback: trap when cancelled or past the deadline,
    /// otherwise yield to tokio (so a busy guest shares its worker thread)
    /// and check again at the next tick. `YieldCustom` with `yield_now`
    /// because a plain `Yield` is rescheduled at once (wasmtime#10667).
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.cancel.is_cancelled() {
            return Err(wasmtime::Error::new(Cancelled));
        }
        if Instant::now() >= self.deadline {
            return Err(wasmtime::Error::new(DeadlinePassed));
        }
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for TaskState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if total > self.memory_limit {
            self.memory_exceeded = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_limit,
                desired: total,
            }));
        }
        self.memory_used = total;
        self.memory_peak = self.memory_peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl bindings::sluice::plugin::host::Host for TaskState {
    fn log(&mut self, level: Level, message: String) {
        // Bounded per task; the sandbox reports what was dropped.
        let Some(message) = self.log.admit(&message) else {
            return;
        };
        // The worker runs each task inside a span carrying the task id, task
        // type and plugin, so these lines are tagged without repeating them.
        match level {
            Level::Trace => tracing::trace!(target: "sluice::plugin", "{message}"),
            Level::Debug => tracing::debug!(target: "sluice::plugin", "{message}"),
            Level::Info => tracing::info!(target: "sluice::plugin", "{message}"),
            Level::Warn => tracing::warn!(target: "sluice::plugin", "{message}"),
            Level::Error => tracing::error!(target: "sluice::plugin", "{message}"),
        }
    }
}

impl bindings::sluice::plugin::types::Host for TaskState {}
