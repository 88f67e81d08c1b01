//! The sandbox: one wasmtime [`Engine`] for the process, and a fresh store
//! and component instance for every task — unless the plugin's manifest opts
//! in to `instance_reuse` (see the `warm` module).
//!
//! How a task is confined (see `notes` in the README for the sources):
//! - **memory**: a [`wasmtime::ResourceLimiter`] caps all linear memories of
//!   the instance at the manifest's `memory_bytes`; a refused grow traps.
//! - **time**: epoch interruption. A plain thread ticks the engine's epoch
//!   every [`EPOCH_TICK`]; at each tick a running guest yields to tokio and
//!   traps once the manifest's `timeout_ms` has passed or the task was
//!   cancelled. The tick thread lives outside tokio so a guest that never
//!   yields cannot starve it (wasmtime#5056).
//! - **capabilities**: WASI 0.2 with nothing but what the manifest grants —
//!   preopened directories, environment variables; no network, no stdin;
//!   stdout/stderr captured (bounded) into the task's log, and the host
//!   `log` function bounded per task (the `log` module).
//! - **speed**: the pooling allocator with copy-on-write memory images,
//!   one [`wasmtime::component::Component`] compiled per plugin and an `InstancePre` so a task
//!   only instantiates (tens of µs).

mod bindings;
mod compile;
mod follow_ups;
mod log;
mod outbound;
mod output;
mod plugin;
mod state;
mod usage;
mod warm;
pub mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{FsPerms, WasiCtx};

pub use compile::{CompileInfo, default_cache_dir};
pub use follow_ups::{FollowUp, MAX_FOLLOW_UP_BYTES};
pub use outbound::{AllowList, HostPattern};
pub use output::{CapturedOutput, DEFAULT_CAPTURE_BYTES};
pub use plugin::{LoadError, NativeHandler, Plugin, sha256_hex};
pub use state::CancelToken;
pub use usage::{Usage, on_cpu, thread_cpu_time};

use bindings::WitTaskError;
use follow_ups::FollowUps;
use log::LogBudget;
use outbound::{OutboundBreach, OutboundHooks, OutboundPolicy};
use state::{Cancelled, DeadlinePassed, MemoryLimitExceeded, TaskState};
use warm::{Sandboxed, WarmPool};

/// How often the epoch advances; the resolution of timeouts and cancellation.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Time allowed for a plugin's `task-types` export at load time.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How a task failed inside the sandbox. [`TaskFailure::kind`] names the
/// case in result records and dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFailure {
    /// The plugin returned `task-error::retryable`.
    #[error("{0}")]
    Retryable(String),
    /// The plugin returned `task-error::fatal`.
    #[error("{0}")]
    Fatal(String),
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access…).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The task ran past its manifest's `timeout_ms`.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The guest asked for more linear memory than its manifest allows.
    #[error("memory limit exceeded: {0}")]
    MemoryExhausted(String),
    /// The task was interrupted by the worker (its lease was lost, or shutdown).
    #[error("interrupted by the worker")]
    Interrupted,
    /// The sandbox could not be set up (a preopen failed, the pool is exhausted).
    #[error("sandbox error: {0}")]
    Sandbox(String),
    /// The task used up its fuel (its tenant's `fuel_per_task`, in wasmtime
    /// fuel units). Deterministic: the same input exhausts it again.
    #[error("out of fuel: the task used its {0} units of fuel")]
    FuelExhausted(u64),
    /// The task failed after an HTTP request of it was refused by the
    /// allow-list (`allowed_outbound_hosts`). Permanent.
    #[error("outbound HTTP request refused by allowed_outbound_hosts; the plugin then failed: {0}")]
    OutboundDenied(String),
    /// The task failed after reaching its `max_outbound_requests` or
    /// `max_outbound_response_bytes`. Permanent.
    #[error(
        "outbound HTTP limit reached (max_outbound_requests or max_outbound_response_bytes); the plugin then failed: {0}"
    )]
    OutboundLimit(String),
}

impl TaskFailure {
    /// Short, stable name of the case: `retryable`, `fatal`, `trap`,
    /// `timeout`, `memory`, `interrupted`, `sandbox`, `fuel_exhausted`,
    /// `outbound_denied` or `outbound_limit`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskFailure::Retryable(_) => "retryable",
            TaskFailure::Fatal(_) => "fatal",
            TaskFailure::Trap(_) => "trap",
            TaskFailure::Timeout(_) => "timeout",
            TaskFailure::MemoryExhausted(_) => "memory",
            TaskFailure::Interrupted => "interrupted",
            TaskFailure::Sandbox(_) => "sandbox",
            TaskFailure::FuelExhausted(_) => "fuel_exhausted",
            TaskFailure::OutboundDenied(_) => "outbound_denied",
            TaskFailure::OutboundLimit(_) => "outbound_limit",
        }
    }

    /// Whether another attempt may succeed. Only `fatal` is permanent: traps,
    /// timeouts and memory exhaustion can be transient (input-dependent
    /// paths, a slow dependency), so they are retried like `retryable`.
    /// Fuel exhaustion is deterministic, so it is permanent too, and so are
    /// outbound refusals and limits (the manifest would have to change).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            TaskFailure::Fatal(_)
                | TaskFailure::FuelExhausted(_)
                | TaskFailure::OutboundDenied(_)
                | TaskFailure::OutboundLimit(_)
        )
    }
}

/// The task as handed to a plugin's `handle` export.
#[derive(Debug, Clone)]
pub struct TaskInput<'a> {
    /// Task id.
    pub id: &'a str,
    /// Task type.
    pub task_type: &'a str,
    /// `params` as JSON text.
    pub params: &'a str,
    /// 1-based attempt number.
    pub attempt: u32,
}

/// Where the wall-clock time of one [`Sandbox::run_timed`] went. A native
/// plugin only has `call`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTimings {
    /// Building the task's WASI context and store, and copying its input.
    pub setup: Duration,
    /// Instantiating the component from its `InstancePre` (pooling allocator:
    /// a slot and its copy-on-write memory image).
    pub instantiate: Duration,
    /// The guest's `handle` export, arguments and result included.
    pub call: Duration,
    /// Dropping the store: the pooling allocator resets the slot's dirty
    /// memory pages for the next instance.
    pub teardown: Duration,
}

/// What [`Sandbox::run_task`] reports about one task.
#[derive(Debug)]
pub struct TaskRun {
    /// The plugin's JSON result text, or how the task failed.
    pub outcome: Result<String, TaskFailure>,
    /// Where the wall-clock time went.
    pub timings: RunTimings,
    /// What the task used.
    pub usage: Usage,
    /// The follow-ups the task enqueued, in call order; always empty unless
    /// `outcome` is `Ok` (a failed attempt's follow-ups are dropped).
    pub follow_ups: Vec<FollowUp>,
}

impl TaskRun {
    fn new(
        outcome: Result<String, TaskFailure>,
        timings: RunTimings,
        usage: Usage,
        follow_ups: Vec<FollowUp>,
    ) -> TaskRun {
        TaskRun {
            outcome,
            timings,
            usage,
            follow_ups,
        }
    }
}

/// Limits of one task beyond its plugin's manifest: a tenant's ceilings
/// and fuel. `None` everywhere (the default) means the manifest's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel the task may consume (only when the sandbox meters fuel, see
    /// [`SandboxConfig::consume_fuel`]); running out fails it with
    /// [`TaskFailure::FuelExhausted`].
    pub fuel: Option<u64>,
    /// Ceiling over the manifest's `memory_bytes`, bytes.
    pub memory_bytes: Option<u64>,
    /// Ceiling over the manifest's `timeout_ms`, ms.
    pub timeout_ms: Option<u64>,
    /// Ceiling over the manifest's `allowed_outbound_hosts`: a request must
    /// be allowed by both (the tenant's `allowed_outbound_hosts`).
    pub allowed_outbound_hosts: Option<Arc<AllowList>>,
}

impl TaskLimits {
    fn memory_bytes(&self, manifest: &crate::manifest::Manifest) -> u64 {
        self.memory_bytes
            .map_or(manifest.memory_bytes, |m| m.min(manifest.memory_bytes))
    }

    fn timeout(&self, manifest: &crate::manifest::Manifest) -> Duration {
        Duration::from_millis(
            self.timeout_ms
                .map_or(manifest.timeout_ms, |t| t.min(manifest.timeout_ms)),
        )
    }
}

/// Fuel given to a task without a fuel limit when the engine meters fuel.
const UNLIMITED_FUEL: u64 = i64::MAX as u64;

/// Sizing of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Component instances that may exist at once (running tasks, plugin
    /// loads, and instances parked for reuse, which take at most half). The
    /// pooling allocator reserves slots for this many.
    pub max_instances: u32,
    /// Bytes of stdout and of stderr kept per task.
    pub capture_bytes: usize,
    /// Folder of precompiled components (`None`: compile every time).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Meter fuel (wasmtime `consume_fuel`) in every store, so tasks can
    /// have a fuel limit and report the fuel they used. It changes the
    /// compiled code (a counter update per basic block), so it is an
    /// engine-wide switch, off by default; the multi-tenant worker turns it
    /// on when a tenant sets `fuel_per_task`.
    pub consume_fuel: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_instances: 128,
            capture_bytes: DEFAULT_CAPTURE_BYTES,
            cache_dir: default_cache_dir(),
            consume_fuel: false,
        }
    }
}

/// The process-wide engine and linker. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<TaskState>,
    config: SandboxConfig,
    /// Instances all plugins may keep parked for reuse (half the pool).
    warm_budget: Arc<tokio::sync::Semaphore>,
}

impl Sandbox {
    /// Creates the engine (pooling allocator, epoch interruption), links WASI
    /// 0.2 and the `host` interface, and starts the epoch ticker thread,
    /// which stops by itself when the last clone of the sandbox is dropped.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration (e.g. the pool cannot reserve
    /// its virtual memory).
    pub fn new(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e:#}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link wasi:http: {e:#}"))?;
        bindings::v0_1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link the host interface 0.1.0: {e:#}"))?;
        bindings::v0_2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link the host interface 0.2.0: {e:#}"))?;
        spawn_epoch_ticker(&engine);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                warm_budget: Arc::new(tokio::sync::Semaphore::new(
                    config.max_instances as usize / 2,
                )),
                config,
            }),
        })
    }

    /// The wasmtime engine (for compiling components).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Runs one task of `plugin` in a fresh store and instance and returns
    /// the plugin's JSON result text.
    ///
    /// The guest's stdout and stderr are logged (at info and warn) after the
    /// call, in the caller's tracing span.
    ///
    /// # Errors
    /// A [`TaskFailure`] naming how the task failed.
    pub async fn run(
        &self,
        plugin: &Plugin,
        task: &TaskInput<'_>,
        cancel: &CancelToken,
    ) -> Result<String, TaskFailure> {
        self.run_timed(plugin, task, cancel).await.0
    }

    /// [`Sandbox::run`], also returning where the time went (the benchmark
    /// reports these).
    pub async fn run_timed(
        &self,
        plugin: &Plugin,
        task: &TaskInput<'_>,
        cancel: &CancelToken,
    ) -> (Result<String, TaskFailure>, RunTimings) {
        let run = self
            .run_limited(plugin, task, cancel, &TaskLimits::default(), 0)
            .await;
        (run.outcome, run.timings)
    }

    /// [`Sandbox::run`] under `limits` (a tenant's ceilings and fuel),
    /// returning what the task used (see [`Usage`]).
    pub async fn run_metered(
        &self,
        plugin: &Plugin,
        task: &TaskInput<'_>,
        cancel: &CancelToken,
        limits: &TaskLimits,
    ) -> (Result<String, TaskFailure>, Usage) {
        let run = self.run_limited(plugin, task, cancel, limits, 0).await;
        (run.outcome, run.usage)
    }

    /// [`Sandbox::run_metered`] for a task at follow-up depth `chain_depth`
    /// (0 for a producer's task), also returning the follow-ups the task
    /// enqueued — only when it succeeded (see [`TaskRun::follow_ups`]).
    pub async fn run_task(
        &self,
        plugin: &Plugin,
        task: &TaskInput<'_>,
        cancel: &CancelToken,
        limits: &TaskLimits,
        chain_depth: u32,
    ) -> TaskRun {
        self.run_limited(plugin, task, cancel, limits, chain_depth)
            .await
    }

    async fn run_limited(
        &self,
        plugin: &Plugin,
        task: &TaskInput<'_>,
        cancel: &CancelToken,
        limits: &TaskLimits,
        chain_depth: u32,
    ) -> TaskRun {
        let mut timings = RunTimings::default();
        let mut usage = Usage::default();
        let mut cpu = Duration::ZERO;
        let pre = match plugin.code() {
            Ok(pre) => pre,
            Err(native) => {
                let start = Instant::now();
                let outcome = on_cpu(&mut cpu, async { native(task) }).await;
                timings.call = start.elapsed();
                usage.cpu_us = cpu.as_micros() as u64;
                return TaskRun::new(outcome, timings, usage, Vec::new());
            }
        };
        let setup = Instant::now();
        let manifest = plugin.manifest();
        let timeout = limits.timeout(manifest);
        let warm = Some(plugin.warm()).filter(|_| manifest.instance_reuse > 1);
        let mut sandboxed = match warm.and_then(WarmPool::take) {
            Some(parked) => parked,
            None => match self.sandboxed(plugin, limits) {
                Ok(fresh) => fresh,
                Err(e) => {
                    let failure = Err(TaskFailure::Sandbox(format!("{e:#}")));
                    return TaskRun::new(failure, timings, usage, Vec::new());
                }
            },
        };
        sandboxed.arm(timeout, cancel);
        sandboxed.store.data_mut().outbound.reset(task.id);
        sandboxed.store.data_mut().follow_ups.reset(chain_depth);
        let fuel = self.inner.config.consume_fuel.then(|| {
            let fuel = limits.fuel.unwrap_or(UNLIMITED_FUEL);
            // Cannot fail: the engine meters fuel.
            let _ = sandboxed.store.set_fuel(fuel);
            fuel
        });
        timings.setup = setup.elapsed();
        let Sandboxed {
            store, instance, ..
        } = &mut sandboxed;
        let call = async {
            let start = Instant::now();
            if instance.is_none() {
                *instance = Some(pre.instantiate_async(&mut *store).await?);
                timings.instantiate = start.elapsed();
                ::metrics::histogram!("sluice_sandbox_instantiate_seconds", "plugin" => plugin.name().to_owned())
                    .record(timings.instantiate.as_secs_f64());
            }
            let instance = instance.as_ref().expect("instantiated above");
            let outcome = on_cpu(&mut cpu, instance.call_handle(&mut *store, task)).await;
            timings.call = start.elapsed() - timings.instantiate;
            outcome
        };
        // Epoch interruption bounds guest code; this outer timeout bounds time
        // spent blocked in host calls (e.g. a WASI sleep), where no epoch check runs.
        let (outcome, returned) = match tokio::time::timeout(timeout + 2 * EPOCH_TICK, call).await {
            Ok(Ok(Ok(json))) => (Ok(json), true),
            Ok(Ok(Err(WitTaskError::Retryable(m)))) => (Err(TaskFailure::Retryable(m)), true),
            Ok(Ok(Err(WitTaskError::Fatal(m)))) => (Err(TaskFailure::Fatal(m)), true),
            Ok(Err(error)) => (Err(classify_trap(&error, store.data(), timeout)), false),
            Err(_elapsed) => (Err(TaskFailure::Timeout(timeout.as_millis() as u64)), false),
        };
        let outcome = match (outcome, fuel) {
            (Err(TaskFailure::FuelExhausted(_)), Some(limit)) => {
                Err(TaskFailure::FuelExhausted(limit))
            }
            (outcome, _) => outcome,
        };
        // A plugin that failed after the host cut its HTTP short fails with
        // the host's reason, a permanent one.
        let outcome = match (outcome, store.data().outbound.breach()) {
            (
                Err(TaskFailure::Retryable(m) | TaskFailure::Fatal(m) | TaskFailure::Trap(m)),
                Some(breach),
            ) => Err(match breach {
                OutboundBreach::Denied => TaskFailure::OutboundDenied(m),
                OutboundBreach::Limited => TaskFailure::OutboundLimit(m),
            }),
            (outcome, _) => outcome,
        };
        let meter = &store.data().outbound.meter;
        usage.outbound_requests = meter.requests.load(std::sync::atomic::Ordering::Relaxed);
        usage.outbound_bytes = meter.bytes.load(std::sync::atomic::Ordering::Relaxed);
        usage.cpu_us = cpu.as_micros() as u64;
        usage.instantiate_us = timings.instantiate.as_micros() as u64;
        usage.peak_memory_bytes = store.data().memory_peak as u64;
        usage.fuel = fuel.map(|given| given.saturating_sub(store.get_fuel().unwrap_or(0)));
        // Only a success hands its follow-ups on; a failure's die with it.
        let follow_ups = match &outcome {
            Ok(_) => std::mem::take(&mut store.data_mut().follow_ups.accepted),
            Err(_) => Vec::new(),
        };
        log_output("stdout", &sandboxed.stdout);
        log_output("stderr", &sandboxed.stderr);
        report_dropped_logs(task.id, &mut sandboxed.store.data_mut().log);
        // Only an instance whose guest returned is reused: after a trap or an
        // interruption its state is unknown (and wasmtime refuses re-entry).
        sandboxed.runs += 1;
        let leftover = match warm {
            Some(pool) if returned && sandboxed.runs < manifest.instance_reuse => {
                pool.park(sandboxed, &self.inner.warm_budget)
            }
            _ => Some(sandboxed),
        };
        let teardown = Instant::now();
        drop(leftover);
        timings.teardown = teardown.elapsed();
        TaskRun::new(outcome, timings, usage, follow_ups)
    }

    /// A fresh store for `plugin` (not yet armed, not yet instantiated):
    /// WASI with the manifest's grants, stdout/stderr captured, the memory
    /// limiter and the epoch callback.
    ///
    /// # Errors
    /// When a granted directory cannot be opened.
    fn sandboxed(&self, plugin: &Plugin, limits: &TaskLimits) -> anyhow::Result<Sandboxed> {
        let manifest = plugin.manifest();
        let stdout = CapturedOutput::new(self.inner.config.capture_bytes);
        let stderr = CapturedOutput::new(self.inner.config.capture_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        for name in &manifest.inherit_env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        for (name, value) in &manifest.env {
            wasi.env(name, value);
        }
        for dir in &manifest.dirs {
            let perms = match dir.mode {
                crate::manifest::DirMode::ReadOnly => FsPerms::ReadOnly,
                crate::manifest::DirMode::ReadWrite => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| {
                    anyhow::anyhow!("cannot open granted dir {}: {e:#}", dir.host.display())
                })?;
        }
        let state = TaskState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory_limit: usize::try_from(limits.memory_bytes(manifest)).unwrap_or(usize::MAX),
            memory_used: 0,
            memory_peak: 0,
            memory_exceeded: false,
            deadline: Instant::now(),
            cancel: CancelToken::default(),
            log: LogBudget::new(manifest.max_log_bytes, manifest.max_log_lines),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            follow_ups: FollowUps {
                allowed: manifest.may_enqueue.clone(),
                max: manifest.max_enqueue,
                max_depth: manifest.chain_depth,
                ..FollowUps::default()
            },
            outbound: OutboundHooks {
                policy: OutboundPolicy {
                    allowed: plugin.allow_list(),
                    ceiling: limits.allowed_outbound_hosts.clone(),
                    max_requests: manifest.max_outbound_requests,
                    max_response_bytes: manifest.max_outbound_response_bytes,
                    connect_timeout: Duration::from_millis(manifest.outbound_connect_timeout_ms),
                },
                ..OutboundHooks::default()
            },
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| s);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        Ok(Sandboxed {
            store,
            instance: None,
            stdout,
            stderr,
            runs: 0,
        })
    }

    /// Asks a freshly compiled plugin for its task types, in a sandbox with
    /// the plugin's own limits and a [`LOAD_TIMEOUT`].
    async fn task_types(&self, plugin: &Plugin) -> anyhow::Result<Vec<String>> {
        let pre = plugin
            .code()
            .map_err(|_| anyhow::anyhow!("a native plugin has no component"))?;
        let timeout = LOAD_TIMEOUT.min(Duration::from_millis(plugin.manifest().timeout_ms));
        let mut sandboxed = self.sandboxed(plugin, &TaskLimits::default())?;
        sandboxed.arm(timeout, &CancelToken::default());
        if self.inner.config.consume_fuel {
            let _ = sandboxed.store.set_fuel(UNLIMITED_FUEL);
        }
        let store = &mut sandboxed.store;
        let call = async {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_task_types(&mut *store).await
        };
        match tokio::time::timeout(timeout + 2 * EPOCH_TICK, call).await {
            Ok(Ok(types)) => Ok(types),
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "{}",
                classify_trap(&e, sandboxed.store.data(), timeout)
            )),
            Err(_) => anyhow::bail!("task-types did not return within {timeout:?}"),
        }
    }
}

/// Names the cause of an error returned by instantiation or a call.
fn classify_trap(error: &wasmtime::Error, state: &TaskState, timeout: Duration) -> TaskFailure {
    if error.is::<DeadlinePassed>() {
        TaskFailure::Timeout(timeout.as_millis() as u64)
    } else if error.is::<Cancelled>() {
        TaskFailure::Interrupted
    } else if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) {
        TaskFailure::FuelExhausted(0)
    } else if let Some(e) = error.downcast_ref::<MemoryLimitExceeded>() {
        TaskFailure::MemoryExhausted(e.to_string())
    } else if state.memory_exceeded {
        // The guest saw the failed grow and trapped on its own (an abort).
        TaskFailure::MemoryExhausted(format!(
            "memory limit of {} bytes exceeded; the plugin then trapped: {}",
            state.memory_limit,
            first_line(error)
        ))
    } else {
        TaskFailure::Trap(format!("{error:#}"))
    }
}

fn first_line(error: &wasmtime::Error) -> String {
    format!("{error}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn log_output(stream: &str, output: &CapturedOutput) {
    let (text, truncated) = output.take();
    for line in text.lines().filter(|l| !l.is_empty()) {
        tracing::info!(target: "sluice::plugin", stream, "{line}");
    }
    if truncated {
        tracing::warn!(target: "sluice::plugin", stream, "output truncated (limit reached)");
    }
}

/// Reports, once per task, the host `log` calls its budget dropped.
fn report_dropped_logs(task_id: &str, budget: &mut LogBudget) {
    let dropped = budget.take_dropped();
    if dropped > 0 {
        let (max_bytes, max_lines) = budget.limits();
        tracing::warn!(
            target: "sluice::plugin",
            task_id,
            dropped,
            max_log_lines = max_lines,
            max_log_bytes = max_bytes,
            "{dropped} log lines dropped (the task's log limit was reached)"
        );
    }
}

/// The engine configuration: async, epoch interruption, and the pooling
/// allocator tuned as measured in `notes/wasmtime-host.md` (keep-resident
/// memory, `pagemap_scan`, no component-model concurrency).
fn engine_config(config: &SandboxConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let instances = config.max_instances.max(4);
    pool.total_component_instances(instances)
        // Components built by componentize-py/js hold many core instances each.
        .total_core_instances(instances * 16)
        .total_memories(instances * 4)
        .total_tables(instances * 8)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .table_elements(MAX_TABLE_ELEMENTS_POOL)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 16)
        .pagemap_scan(Enabled::Auto);
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .consume_fuel(config.consume_fuel)
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    cfg
}

/// Table slots reserved per table in the pool.
const MAX_TABLE_ELEMENTS_POOL: usize = 100_000;

/// Starts the thread that advances the engine's epoch every [`EPOCH_TICK`].
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}
