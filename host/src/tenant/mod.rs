//! Multi-tenant workers: one process serving many tenants, each with its own
//! queue (the existing `{queue}:` key layout, so tenants land in different
//! Redis Cluster slots), its own plugins directory (hot-reloaded), its own
//! leases, reaper and dead letters — sharing one pool of `concurrency`
//! slots that the [`scheduler`] divides by measured CPU time and `weight`.
//!
//! - [`config`]: the `--config FILE` TOML (worker flags and `[[tenant]]` tables).
//! - [`scheduler`]: deficit round robin over the shared slots, charged with each task's CPU time.
//! - [`quota`]: `rate_per_sec` and `cpu_ms_per_min`, across workers, in Redis.
//! - [`acl`]: the Redis `ACL SETUSER` line for a tenant's producers.
//! - [`Tenants`]: loads every tenant and runs one [`Worker`] per tenant over the shared slots.

pub mod acl;
pub mod config;
pub mod quota;
pub mod scheduler;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::queue::{Queue, QueueError, Retention};
use crate::registry::{Registry, SharedRegistry};
use crate::sandbox::{Sandbox, TaskLimits, Usage};
use crate::worker::{Summary, Worker, WorkerConfig};

pub use config::{ConfigError, ConfigFile, TenantSpec};
pub use scheduler::{Scheduler, Share};

/// What a worker serving one tenant needs to know about it.
pub struct TenantContext {
    /// Tenant name (result records' `tenant`, metrics' `tenant` label).
    pub name: String,
    /// The tenant's index in the [`Scheduler`].
    pub index: usize,
    /// The worker's shared slots.
    pub scheduler: Scheduler,
    /// The tenant's fuel and ceilings over its manifests.
    pub limits: TaskLimits,
    /// What every `reply_to` must start with.
    pub reply_to_prefix: String,
    /// Its quotas across workers.
    pub quota: Arc<quota::Quota>,
    /// CPU µs its tasks used on this worker (for `sluice_tenant_cpu_seconds_total`).
    cpu_us: AtomicU64,
}

impl TenantContext {
    /// The context of tenant `spec`, index `index` in `scheduler`, whose
    /// queue is `queue`.
    pub fn new(spec: &TenantSpec, index: usize, scheduler: Scheduler, queue: Queue) -> Self {
        TenantContext {
            name: spec.name.clone(),
            index,
            scheduler,
            limits: TaskLimits {
                fuel: spec.fuel_per_task,
                memory_bytes: spec.memory_bytes,
                timeout_ms: spec.timeout_ms,
                allowed_outbound_hosts: spec.allowed_outbound_hosts.as_ref().map(|hosts| {
                    // Checked when the file was read; denying all is the fallback.
                    Arc::new(crate::sandbox::AllowList::parse(hosts).unwrap_or_default())
                }),
            },
            reply_to_prefix: spec.reply_to_prefix.clone(),
            quota: Arc::new(quota::Quota::new(
                queue,
                spec.rate_per_sec,
                spec.cpu_ms_per_min,
            )),
            cpu_us: AtomicU64::new(0),
        }
    }

    /// Whether a task of this tenant may name `reply_to`.
    pub fn allows_reply_to(&self, reply_to: &str) -> bool {
        reply_to.starts_with(&self.reply_to_prefix)
    }

    /// How many of `want` tasks may start now under the tenant's quotas.
    pub async fn admit(&self, want: usize) -> usize {
        self.quota.admit(want).await
    }

    /// Gives back admitted starts that found no message.
    pub async fn refund(&self, unused: usize) {
        self.quota.refund(unused).await;
    }

    /// Waits until a refused admission may be asked again.
    pub async fn wait_for_quota(&self) {
        self.quota.wait().await;
    }

    /// Accounts a task's usage: the CPU ledger and the tenant's metrics.
    pub fn record_usage(&self, usage: &Usage) {
        self.quota.charge(usage.cpu_us);
        let total = self.cpu_us.fetch_add(usage.cpu_us, Ordering::Relaxed) + usage.cpu_us;
        ::metrics::gauge!("sluice_tenant_cpu_seconds_total", "tenant" => self.name.clone())
            .set(total as f64 / 1e6);
        if let Some(fuel) = usage.fuel {
            ::metrics::counter!("sluice_tenant_fuel_total", "tenant" => self.name.clone())
                .increment(fuel);
        }
    }
}

/// How the multi-tenant worker runs, besides its [`WorkerConfig`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How to reach Redis, shared by all tenants (on a Cluster their queues
    /// spread over the masters by slot).
    pub redis: crate::connection::RedisConfig,
    /// Result retention.
    pub retention: Retention,
    /// Watch the tenants' plugins directories.
    pub watch: bool,
    /// Prefix of the worker ids (`host:pid`); each tenant's worker appends
    /// `:<tenant>`.
    pub base_id: String,
}

/// The loaded tenants of a multi-tenant worker, ready to [`Tenants::run`].
pub struct Tenants {
    workers: Vec<(String, Worker)>,
    registries: Vec<(Queue, SharedRegistry)>,
    _watches: Vec<tokio::task::JoinHandle<()>>,
    flushers: Vec<tokio::task::JoinHandle<()>>,
}

impl Tenants {
    /// Connects every tenant's queue and loads its plugins. A tenant whose
    /// plugins directory is empty or holds broken plugins starts with what
    /// loads (possibly nothing; its tasks then wait for a plugin as usual)
    /// and does not stop the others; its directory is watched like any.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn load(
        config: &ConfigFile,
        sandbox: &Sandbox,
        worker: &WorkerConfig,
        options: &ServeOptions,
    ) -> Result<Tenants, QueueError> {
        let shares: Vec<Share> = config
            .tenants
            .iter()
            .map(|t| Share {
                weight: t.weight,
                max_concurrency: t.max_concurrency.unwrap_or(usize::MAX),
            })
            .collect();
        let scheduler = Scheduler::new(worker.concurrency, &shares);
        let mut tenants = Tenants {
            workers: Vec::new(),
            registries: Vec::new(),
            _watches: Vec::new(),
            flushers: Vec::new(),
        };
        for (index, spec) in config.tenants.iter().enumerate() {
            let queue =
                Queue::connect_with(&options.redis, &spec.queue, options.retention.clone()).await?;
            let registry = SharedRegistry::new(
                Registry::from_plugins(Vec::new()).unwrap_or_else(|_| unreachable!("no plugins")),
            );
            let span = tracing::info_span!("tenant", tenant = %spec.name);
            let _entered = span.enter();
            crate::watch::reload(sandbox, &spec.plugins, &registry).await;
            if registry.load().plugins().is_empty() {
                tracing::warn!(dir = %spec.plugins.display(), "tenant has no plugin loaded; its tasks wait for one");
            }
            if options.watch {
                match crate::watch::spawn(sandbox.clone(), spec.plugins.clone(), registry.clone()) {
                    Ok(handle) => tenants._watches.push(handle),
                    Err(e) => {
                        tracing::error!(error = %e, dir = %spec.plugins.display(), "cannot watch the tenant's plugins directory")
                    }
                }
            }
            drop(_entered);
            let context = Arc::new(TenantContext::new(
                spec,
                index,
                scheduler.clone(),
                queue.clone(),
            ));
            tenants
                .flushers
                .push(tokio::spawn(context.quota.clone().flush_loop()));
            let mut tenant_worker = worker.clone();
            if let Some(max) = spec.max_message_bytes {
                tenant_worker.max_message_bytes = usize::try_from(max).unwrap_or(usize::MAX);
            }
            let w = Worker::new(
                queue.clone(),
                registry.clone(),
                sandbox.clone(),
                tenant_worker,
                &format!("{}:{}", options.base_id, spec.name),
            )
            .with_tenant(context);
            tenants.registries.push((queue, registry));
            tenants.workers.push((spec.name.clone(), w));
        }
        Ok(tenants)
    }

    /// The first tenant's queue and registry (what `/readyz` and the queue
    /// depth gauge report on).
    pub fn first(&self) -> Option<&(Queue, SharedRegistry)> {
        self.registries.first()
    }

    /// Runs every tenant's worker until `shutdown` resolves (or, in burst
    /// mode, until every tenant's queue is empty and nothing is in flight),
    /// and returns the sum of their summaries.
    ///
    /// # Errors
    /// When a tenant's first lease cannot be registered.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<Summary, QueueError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // One tokio task per tenant: its fetch loops wake on their own.
        let mut runs = Vec::new();
        for (name, w) in self.workers {
            let mut stop = stop_rx.clone();
            let span = tracing::info_span!("tenant", tenant = %name);
            runs.push(tokio::spawn(tracing::Instrument::instrument(
                async move {
                    w.run(async move {
                        let _ = stop.wait_for(|&s| s).await;
                    })
                    .await
                },
                span,
            )));
        }
        let all = async {
            let mut results = Vec::new();
            for run in runs {
                results.push(run.await.expect("a tenant's worker panicked"));
            }
            results
        };
        tokio::pin!(all);
        tokio::pin!(shutdown);
        let results = tokio::select! {
            results = &mut all => results,
            () = &mut shutdown => {
                let _ = stop_tx.send(true);
                all.await
            }
        };
        for flusher in &self.flushers {
            flusher.abort();
        }
        let mut total = Summary::default();
        for summary in results {
            let s = summary?;
            total.succeeded += s.succeeded;
            total.failed += s.failed;
            total.retried += s.retried;
            total.deferred += s.deferred;
            total.abandoned += s.abandoned;
            total.released += s.released;
        }
        Ok(total)
    }
}
