//! What one task's store holds: its WASI context, its resource limits, its
//! deadline, and the log context that tags the plugin's log lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{v0_1, v0_2};
use super::follow_ups::FollowUps;
use super::log::LogBudget;
use super::outbound::OutboundHooks;

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
    /// wasi:http's per-store context (header size limits).
    pub(crate) http: WasiHttpCtx,
    /// The allow-list check, caps and meter of the task's HTTP requests.
    pub(crate) outbound: OutboundHooks,
    /// What the task may enqueue (0.2.0 `enqueue`), and what it did.
    pub(crate) follow_ups: FollowUps,
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

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
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

impl TaskState {
    /// The `log` host function of both contract versions: bounded per task
    /// (the sandbox reports what was dropped).
    fn log_line(&mut self, level: tracing::Level, message: &str) {
        let Some(message) = self.log.admit(message) else {
            return;
        };
        // The worker runs each task inside a span carrying the task id, task
        // type and plugin, so these lines are tagged without repeating them.
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "sluice::plugin", "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "sluice::plugin", "{message}"),
            tracing::Level::INFO => tracing::info!(target: "sluice::plugin", "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "sluice::plugin", "{message}"),
            tracing::Level::ERROR => tracing::error!(target: "sluice::plugin", "{message}"),
        }
    }
}

/// The `tracing` level of a WIT `level` (the same enum in both WIT versions).
macro_rules! tracing_level {
    ($version:ident, $level:expr) => {{
        use $version::sluice::plugin::host::Level;
        match $level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        }
    }};
}

impl v0_1::sluice::plugin::host::Host for TaskState {
    fn log(&mut self, level: v0_1::sluice::plugin::host::Level, message: String) {
        self.log_line(tracing_level!(v0_1, level), &message);
    }
}

impl v0_1::sluice::plugin::types::Host for TaskState {}

impl v0_2::sluice::plugin::host::Host for TaskState {
    fn log(&mut self, level: v0_2::sluice::plugin::host::Level, message: String) {
        self.log_line(tracing_level!(v0_2, level), &message);
    }

    fn enqueue(&mut self, task_type: String, params: String) -> Result<String, String> {
        let outcome = self.follow_ups.enqueue(task_type.clone(), params);
        match &outcome {
            Ok(id) => {
                tracing::debug!(follow_up = %id, follow_up_type = %task_type, "follow-up enqueued (pushed when this task succeeds)")
            }
            Err(why) => tracing::warn!(follow_up_type = %task_type, "enqueue refused: {why}"),
        }
        outcome
    }
}

impl v0_2::sluice::plugin::types::Host for TaskState {}
