//! The `sluice` command line: run a worker, inspect results.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use sluice::admin;
use sluice::output::{OutputArgs, PluginInfo};
use sluice::queue::{Queue, Retention};
use sluice::registry::{Registry, SharedRegistry};
use sluice::sandbox::{Plugin, Sandbox, SandboxConfig};
use sluice::worker::{RetryPolicy, Worker, WorkerConfig};
use sluice::{telemetry, tenant, watch};

/// Sluice: a Redis task-queue worker that runs every task in a sandboxed
/// WebAssembly component.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the queue lives.
#[derive(clap::Args, Clone)]
struct QueueArgs {
    #[command(flatten)]
    redis: sluice::connection::RedisArgs,
    /// Name of the Redis list producers push onto.
    #[arg(
        long,
        env = "SLUICE_QUEUE",
        default_value = "task_queue",
        global = true
    )]
    queue: String,
    /// Configuration file (TOML): worker settings and `[[tenant]]` tables.
    /// With tenants, `--tenant NAME` picks the tenant whose queue a command
    /// works on (`sluice stats` shows every tenant).
    #[arg(long, env = "SLUICE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Tenant name (with `--config`).
    #[arg(long, global = true)]
    tenant: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Take tasks from the queue and run them in sandboxed plugins.
    Worker(WorkerArgs),
    /// Print the result record of a task (JSON).
    Result {
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Task id.
        id: String,
    },
    /// Print per-queue counts: pending, in flight, delayed/retrying, dead, processed, failed.
    Stats {
        #[command(flatten)]
        queue: QueueArgs,
        /// Print one JSON object instead of a table (alias of `-o json`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the plugins of a directory: task types, version, hash, limits, capabilities.
    Plugins {
        /// Directory of plugin components.
        #[arg(long, env = "SLUICE_PLUGINS", default_value = "target/plugins")]
        plugins: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Run one task locally in the real sandbox, without Redis; print its
    /// result record (exit 0 succeeded, 1 task failed, 2 usage or load error).
    Run(sluice::local_run::RunArgs),
    /// Create a plugin project (rust, python, js or c) from a template:
    /// handler, WIT, manifest with a [build] table, unit test, README.
    New(sluice::scaffold::NewArgs),
    /// Build the plugin project in DIR with its manifest's [build] command;
    /// print the component's path as the last line (exit 2: missing toolchain).
    Build(sluice::plugin_build::BuildArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Inspect and requeue the dead-letter queue.
    Dead {
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Tenant tools (multi-tenant workers).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Redis ACL lines for Sluice's own users.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
}

#[derive(Subcommand)]
enum AclCommand {
    /// Print the `ACL SETUSER …` line of a Redis user that can run workers
    /// and nothing else: the commands a worker needs, on its queues' keys
    /// (`--queue`, or every tenant's with `--config`), plus `RPUSH` onto
    /// `reply_to` lists.
    Worker {
        /// Name of the Redis user.
        #[arg(long, default_value = "sluice-worker")]
        user: String,
        /// Queue the worker serves (ignored with a `--config` naming tenants).
        #[arg(long, env = "SLUICE_QUEUE", default_value = "task_queue")]
        queue: String,
        /// Configuration file: the queues of its tenants, each pushing
        /// replies only under its `reply_to_prefix`.
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// Only let replies go to keys starting with this prefix (default: any key).
        #[arg(long)]
        reply_to_prefix: Option<String>,
        /// Password of the user (default: `nopass`).
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Print the `ACL SETUSER …` line that gives tenant NAME's producers
    /// exactly their access: push to its queue, read its results and reply lists.
    Acl {
        /// Tenant name.
        name: String,
        /// Configuration file naming the tenant.
        #[arg(long, env = "SLUICE_CONFIG")]
        config: PathBuf,
        /// Password of the user (default: `nopass`).
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a component against the sluice:plugin world; print its task
    /// types, size and compile time, or explain the mismatch.
    Check {
        /// The `.wasm` file (its `NAME.toml` manifest beside it is checked too).
        file: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
    /// List dead letters, newest first (one JSON object per line).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print one dead letter (JSON).
    Show {
        /// Task id.
        id: String,
    },
    /// Put dead letters back on the queue, with their attempts reset.
    Requeue {
        /// Task id to requeue.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Requeue every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete every dead letter.
    Purge,
}

#[derive(clap::Args)]
struct WorkerArgs {
    #[command(flatten)]
    queue: QueueArgs,
    /// Directory of plugin components (`NAME.wasm` plus optional `NAME.toml`).
    #[arg(long, env = "SLUICE_PLUGINS", default_value = "target/plugins")]
    plugins: PathBuf,
    /// Tasks run at once.
    #[arg(long, env = "SLUICE_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Exit 0 once the queue is empty and nothing is in flight.
    #[arg(long, env = "SLUICE_BURST")]
    burst: bool,
    /// Seconds in-flight tasks get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SLUICE_GRACE_SECS", default_value_t = 30)]
    grace_secs: u64,
    /// Lease length in ms: a worker silent this long is presumed dead and
    /// its tasks are recovered.
    #[arg(long, env = "SLUICE_LEASE_MS", default_value_t = 15_000)]
    lease_ms: u64,
    /// Lease renewal and reaper period, ms.
    #[arg(long, env = "SLUICE_HEARTBEAT_MS", default_value_t = 5_000)]
    heartbeat_ms: u64,
    /// Default retries after the first attempt.
    #[arg(long, env = "SLUICE_MAX_RETRIES", default_value_t = 5)]
    max_retries: u32,
    /// Default first retry delay, ms (doubles per attempt).
    #[arg(long, env = "SLUICE_BACKOFF_BASE_MS", default_value_t = 1_000)]
    backoff_base_ms: u64,
    /// Default largest retry delay, ms.
    #[arg(long, env = "SLUICE_BACKOFF_CAP_MS", default_value_t = 3_600_000)]
    backoff_cap_ms: u64,
    /// Worker crashes a task may live through before it is dead-lettered as poison.
    #[arg(long, env = "SLUICE_MAX_CRASHES", default_value_t = 3)]
    max_crashes: u32,
    /// How long a task whose type no plugin handles waits for one to be
    /// deployed before it is dead-lettered, ms.
    #[arg(long, env = "SLUICE_UNKNOWN_TYPE_GRACE_MS", default_value_t = 300_000)]
    unknown_type_grace_ms: u64,
    /// Do not watch the plugins directory for changes.
    #[arg(long, env = "SLUICE_NO_WATCH")]
    no_watch: bool,
    /// Serve Prometheus metrics on /metrics, and /healthz and /readyz, at this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "SLUICE_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// TTL of result records, seconds.
    #[arg(long, env = "SLUICE_RESULT_TTL_SECS", default_value_t = 86_400)]
    result_ttl_secs: u64,
    /// Largest message processed, bytes; a longer one is dead-lettered at
    /// once with kind too_large (only its first 1 KiB is kept).
    #[arg(long, env = "SLUICE_MAX_MESSAGE_BYTES", default_value_t = sluice::worker::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Largest plugin result, bytes, unless the plugin's manifest sets
    /// max_result_bytes; a longer one fails the task with kind result_too_large.
    #[arg(long, env = "SLUICE_MAX_RESULT_BYTES", default_value_t = sluice::worker::DEFAULT_MAX_RESULT_BYTES)]
    max_result_bytes: usize,
}

/// jemalloc instead of the system allocator: a task's message, params,
/// result and record are allocated on one tokio thread and often freed on
/// another, which glibc's malloc pays for in arena locking and chunk
/// consolidation (~30 % of the worker threads' CPU in a profile of the
/// benchmark's native row). Measured with `cargo xtask bench`, two A/B pairs:
/// worker CPU per task 92–94 → 74–82 µs (wasm `parse_log_file`) and 58–61 →
/// 49–52 µs (no-op), resident memory +2–3 MiB. mimalloc cut as much CPU but
/// doubled resident memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (cli, config) = parse_with_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Worker(args) => worker(args, config).await,
            Command::Result { queue, output, id } => {
                result(queue, config, &id, output.json()).await
            }
            Command::Stats {
                queue,
                json,
                output,
            } => stats(queue, config, json || output.json()).await,
            Command::Dead {
                queue,
                output,
                command,
            } => dead(queue, config, command, output.json()).await,
            Command::Tenant {
                command:
                    TenantCommand::Acl {
                        name,
                        config,
                        password,
                    },
            } => tenant_acl(&config, &name, password.as_deref()),
            Command::Acl {
                command:
                    AclCommand::Worker {
                        user,
                        queue,
                        config,
                        reply_to_prefix,
                        password,
                    },
            } => worker_acl(
                &user,
                &queue,
                config.as_deref(),
                reply_to_prefix.as_deref(),
                password.as_deref(),
            ),
            Command::Plugins { plugins, output } => list_plugins(&plugins, output.json()).await,
            Command::Plugin {
                command: PluginCommand::Check { file, output },
            } => check_plugin(&file, output.json()).await,
            Command::New(args) => {
                let code = sluice::scaffold::main(&args);
                std::io::Write::flush(&mut std::io::stdout())?;
                std::process::exit(code.into())
            }
            Command::Build(args) => {
                let code = sluice::plugin_build::main(&args);
                std::io::Write::flush(&mut std::io::stdout())?;
                std::process::exit(code.into())
            }
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "sluice",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Run(args) => {
                let code = sluice::local_run::main(args).await;
                std::io::Write::flush(&mut std::io::stdout())?;
                std::process::exit(code as i32)
            }
        }
    })
}

/// Parses the command line; with `--config FILE` (or `SLUICE_CONFIG`),
/// reads the file and lets its top-level settings fill every flag that was
/// not given on the command line or in its environment variable.
fn parse_with_config() -> anyhow::Result<(Cli, Option<tenant::ConfigFile>)> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let Some((name, sub)) = matches.subcommand() else {
        return Ok((cli, None));
    };
    let path = match &cli.command {
        Command::Worker(a) => a.queue.config.clone(),
        Command::Result { queue, .. }
        | Command::Stats { queue, .. }
        | Command::Dead { queue, .. } => queue.config.clone(),
        _ => None,
    };
    let Some(path) = path else {
        return Ok((cli, None));
    };
    let config = tenant::config::load(&path)?;
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut extra = 0;
    for (flag, value) in config.worker.as_flags() {
        if name != "worker" && !sluice::connection::args::FLAGS.contains(&flag) {
            continue;
        }
        let id = flag.trim_start_matches("--").replace('-', "_");
        let given = sub.try_get_raw(&id).is_ok_and(|v| v.is_some())
            && matches!(
                sub.value_source(&id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            );
        if given {
            continue;
        }
        argv.push(flag.into());
        argv.extend(value.map(Into::into));
        extra += 1;
    }
    if extra == 0 {
        return Ok((cli, Some(config)));
    }
    Ok((Cli::parse_from(argv), Some(config)))
}

async fn worker(args: WorkerArgs, config: Option<tenant::ConfigFile>) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.max_message_bytes > 0 && args.max_result_bytes > 0,
        "--max-message-bytes and --max-result-bytes must be at least 1"
    );
    check_queue_name(&args.queue.queue)?;
    let tenants = config.filter(|c| !c.tenants.is_empty());
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: u32::try_from(args.concurrency * 2 + 8).unwrap_or(u32::MAX),
        consume_fuel: tenants
            .as_ref()
            .is_some_and(|c| c.tenants.iter().any(|t| t.fuel_per_task.is_some())),
        ..SandboxConfig::default()
    })?;
    if let Some(config) = tenants {
        return multi_tenant_worker(args, config, sandbox).await;
    }
    let registry = Registry::load_dir(&sandbox, &args.plugins)
        .await
        .with_context(|| format!("cannot load plugins from {}", args.plugins.display()))?;
    for plugin in registry.plugins() {
        tracing::info!(plugin = plugin.name(), task_types = ?plugin.task_types(), "plugin loaded");
    }
    let retention = Retention {
        result_ttl_secs: args.result_ttl_secs,
        ..Retention::default()
    };
    let queue = Queue::connect_with(&args.queue.redis.config(), &args.queue.queue, retention)
        .await
        .context("cannot start the worker")?;
    sluice::connection::topology::log(&queue.connection(), &[&args.queue.queue]).await;
    warn_if_evicting(&queue).await;
    let config = worker_config(&args);
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let registry = SharedRegistry::new(registry);
    let _watch = if args.no_watch {
        None
    } else {
        Some(
            watch::spawn(sandbox.clone(), args.plugins.clone(), registry.clone())
                .with_context(|| format!("cannot watch {}", args.plugins.display()))?,
        )
    };
    if let Some(addr) = args.metrics_addr {
        telemetry::serve(addr, queue.clone(), registry.clone()).await?;
    }
    let worker = Worker::new(
        queue,
        registry,
        sandbox,
        config,
        &format!("{host}:{}", std::process::id()),
    );
    worker.run(shutdown_signal()).await?;
    Ok(())
}

/// The worker's settings from its flags.
fn worker_config(args: &WorkerArgs) -> WorkerConfig {
    WorkerConfig {
        concurrency: args.concurrency,
        burst: args.burst,
        lease: Duration::from_millis(args.lease_ms),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        grace: Duration::from_secs(args.grace_secs),
        retry: RetryPolicy {
            max_retries: args.max_retries,
            base_ms: args.backoff_base_ms,
            cap_ms: args.backoff_cap_ms,
        },
        max_crashes: args.max_crashes,
        unknown_type_grace: Duration::from_millis(args.unknown_type_grace_ms),
        max_message_bytes: args.max_message_bytes,
        max_result_bytes: args.max_result_bytes,
        ..WorkerConfig::default()
    }
}

/// `sluice worker --config FILE` with `[[tenant]]` tables: one process
/// serving every tenant over one pool of `--concurrency` slots.
async fn multi_tenant_worker(
    args: WorkerArgs,
    config: tenant::ConfigFile,
    sandbox: Sandbox,
) -> anyhow::Result<()> {
    let options = tenant::ServeOptions {
        redis: args.queue.redis.config(),
        retention: Retention {
            result_ttl_secs: args.result_ttl_secs,
            ..Retention::default()
        },
        watch: !args.no_watch,
        base_id: format!("{}:{}", hostname(), std::process::id()),
    };
    let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    tracing::info!(tenants = ?names, config = %config.path.display(), "multi-tenant worker");
    let tenants = tenant::Tenants::load(&config, &sandbox, &worker_config(&args), &options)
        .await
        .context("cannot start the multi-tenant worker")?;
    if let Some((queue, _)) = tenants.first() {
        let queues: Vec<&str> = config.tenants.iter().map(|t| t.queue.as_str()).collect();
        sluice::connection::topology::log(&queue.connection(), &queues).await;
    }
    if let Some((queue, registry)) = tenants.first() {
        warn_if_evicting(queue).await;
        if let Some(addr) = args.metrics_addr {
            telemetry::serve(addr, queue.clone(), registry.clone()).await?;
        }
    }
    tenants.run(shutdown_signal()).await?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Warns when Redis may evict keys under memory pressure: an evicted lease
/// or in-flight list would break the delivery guarantee.
async fn warn_if_evicting(queue: &Queue) {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut queue.connection())
        .await;
    if let Ok(values) = reply
        && let Some(policy) = values.get(1)
        && policy != "noeviction"
    {
        tracing::warn!(
            policy,
            "redis maxmemory-policy can evict keys; use noeviction so no lease, in-flight list or task is lost"
        );
    }
}

async fn result(
    args: QueueArgs,
    config: Option<tenant::ConfigFile>,
    id: &str,
    json: bool,
) -> anyhow::Result<()> {
    let queue = connect(&args, config.as_ref()).await?;
    let record: Option<String> = redis::cmd("GET")
        .arg(queue.keys().result(id))
        .query_async(&mut queue.connection())
        .await?;
    match record {
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(&text)?;
            if json {
                println!("{}", serde_json::to_string(&value)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            Ok(())
        }
        None => anyhow::bail!(
            "no result for task {id:?} in queue {:?} (unknown id, not finished yet, or expired)",
            queue.keys().pending
        ),
    }
}

/// Rejects a queue name that would break the key layout (see
/// [`sluice::keys::check_queue_name`]), before anything touches Redis.
fn check_queue_name(queue: &str) -> anyhow::Result<()> {
    sluice::keys::check_queue_name(queue).context("invalid --queue (SLUICE_QUEUE)")
}

/// Connects to the queue a command works on: `--queue`, or with `--config`
/// and `--tenant NAME`, that tenant's queue.
async fn connect(args: &QueueArgs, config: Option<&tenant::ConfigFile>) -> anyhow::Result<Queue> {
    let queue = match (config, &args.tenant) {
        (Some(config), Some(name)) => match config.tenant(name) {
            Some(t) => t.queue.clone(),
            None => anyhow::bail!(
                "no tenant {name:?} in {} (tenants: {})",
                config.path.display(),
                config
                    .tenants
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        (Some(config), None) if !config.tenants.is_empty() => anyhow::bail!(
            "{} has tenants: name one with --tenant NAME",
            config.path.display()
        ),
        (Some(config), None) => config
            .worker
            .queue
            .clone()
            .unwrap_or_else(|| args.queue.clone()),
        (None, Some(name)) => {
            anyhow::bail!(
                "--tenant {name} needs --config FILE (or SLUICE_CONFIG) naming the tenants"
            )
        }
        (None, None) => args.queue.clone(),
    };
    check_queue_name(&queue)?;
    Queue::connect_with(&args.redis.config(), &queue, Retention::default())
        .await
        .map_err(Into::into)
}

async fn stats(
    args: QueueArgs,
    config: Option<tenant::ConfigFile>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(config) = config
        .as_ref()
        .filter(|c| !c.tenants.is_empty() && args.tenant.is_none())
    {
        return tenant_stats(&args, config, json).await;
    }
    let stats = admin::stats(&connect(&args, config.as_ref()).await?).await?;
    if json {
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    let counter = |name: &str| stats.counters.get(name).copied().unwrap_or(0);
    println!("queue      {}", stats.queue);
    println!("pending    {}", stats.pending);
    println!("in flight  {}", stats.in_flight);
    println!("delayed    {}  (retries and delayed tasks)", stats.delayed);
    println!("dead       {}", stats.dead);
    println!("workers    {}", stats.workers);
    println!(
        "outbox     {}  (replies not yet pushed onto reply_to)",
        stats.outbox
    );
    println!(
        "ordering_blocked  {}  (ordering keys blocked behind a retry)",
        stats.ordering_blocked
    );
    println!(
        "ordering_parked   {}  (tasks waiting for their ordering key)",
        stats.ordering_parked
    );
    println!(
        "ordering_keys     {}  (ordering keys held by a task)",
        stats.ordering_keys
    );
    println!("processed  {}", counter("processed"));
    println!("succeeded  {}", counter("succeeded"));
    println!("failed     {}", counter("failed"));
    println!("retried    {}", counter("retried"));
    println!(
        "recovered  {}  (taken back from crashed workers)",
        counter("recovered")
    );
    println!("poisoned   {}", counter("poisoned"));
    Ok(())
}

/// `sluice stats --config FILE`: one row per tenant.
async fn tenant_stats(
    args: &QueueArgs,
    config: &tenant::ConfigFile,
    json: bool,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for t in &config.tenants {
        let queue =
            Queue::connect_with(&args.redis.config(), &t.queue, Retention::default()).await?;
        let stats = admin::stats(&queue).await?;
        let (cpu_us, throttled_until) = tenant::quota::minute_usage(&queue).await?;
        rows.push((t, stats, cpu_us, throttled_until));
    }
    if json {
        for (t, stats, cpu_us, throttled_until) in &rows {
            let row = serde_json::json!({
                "tenant": t.name, "queue": stats.queue, "pending": stats.pending,
                "in_flight": stats.in_flight, "delayed": stats.delayed, "dead": stats.dead,
                "ordering_blocked": stats.ordering_blocked, "ordering_parked": stats.ordering_parked,
                "processed": stats.counters.get("processed").copied().unwrap_or(0),
                "cpu_ms_this_minute": cpu_us / 1000,
                "cpu_ms_per_min": t.cpu_ms_per_min,
                "throttled_until": (*throttled_until > 0).then_some(*throttled_until),
            });
            println!("{row}");
        }
        return Ok(());
    }
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>7} {:>10} {:>14}  quota",
        "tenant", "pending", "in_flight", "delayed", "dead", "processed", "cpu_ms/minute"
    );
    for (t, stats, cpu_us, throttled_until) in &rows {
        let budget = t
            .cpu_ms_per_min
            .map(|b| format!("/{b}"))
            .unwrap_or_default();
        let quota = if *throttled_until > 0 {
            "throttled (waiting)"
        } else {
            "-"
        };
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>7} {:>10} {:>14}  {quota}",
            t.name,
            stats.pending,
            stats.in_flight,
            stats.delayed,
            stats.dead,
            stats.counters.get("processed").copied().unwrap_or(0),
            format!("{}{budget}", cpu_us / 1000),
        );
    }
    Ok(())
}

/// `sluice tenant acl NAME --config FILE`.
fn tenant_acl(path: &std::path::Path, name: &str, password: Option<&str>) -> anyhow::Result<()> {
    let config = tenant::config::load(path)?;
    let Some(spec) = config.tenant(name) else {
        anyhow::bail!("no tenant {name:?} in {}", path.display());
    };
    println!("{}", tenant::acl::setuser_line(spec, password));
    Ok(())
}

/// `sluice acl worker`.
fn worker_acl(
    user: &str,
    queue: &str,
    config: Option<&std::path::Path>,
    reply_to_prefix: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<()> {
    let config = config.map(tenant::config::load).transpose()?;
    let line = match config.filter(|c| !c.tenants.is_empty()) {
        Some(config) => {
            let queues: Vec<&str> = config.tenants.iter().map(|t| t.queue.as_str()).collect();
            // One selector per tenant would need one line per tenant; the
            // prefixes share a user, so each gets its own selector.
            let mut line = sluice::worker::acl::setuser_line(
                user,
                &queues,
                Some(&config.tenants[0].reply_to_prefix),
                password,
            );
            for t in &config.tenants[1..] {
                line.push_str(&sluice::worker::acl::reply_selector(&t.reply_to_prefix));
            }
            line
        }
        None => {
            check_queue_name(queue)?;
            sluice::worker::acl::setuser_line(user, &[queue], reply_to_prefix, password)
        }
    };
    println!("{line}");
    Ok(())
}

async fn dead(
    args: QueueArgs,
    config: Option<tenant::ConfigFile>,
    command: DeadCommand,
    json: bool,
) -> anyhow::Result<()> {
    let queue = connect(&args, config.as_ref()).await?;
    match command {
        DeadCommand::List { limit } => {
            let letters = admin::dead_list(&queue, limit).await?;
            if json {
                println!("{}", serde_json::to_string(&letters)?);
            }
            for letter in letters.iter().filter(|_| !json) {
                println!("{}", serde_json::to_string(letter)?);
            }
        }
        DeadCommand::Show { id } => match admin::dead_show(&queue, &id).await? {
            Some(letter) if json => println!("{}", serde_json::to_string(&letter)?),
            Some(letter) => println!("{}", serde_json::to_string_pretty(&letter)?),
            None => anyhow::bail!("no dead letter {id:?} in queue {:?}", queue.keys().pending),
        },
        DeadCommand::Requeue { id: Some(id), .. } => {
            anyhow::ensure!(
                admin::dead_requeue(&queue, &id).await?,
                "no dead letter {id:?} in queue {:?}",
                queue.keys().pending
            );
            if json {
                println!("{}", serde_json::json!({"requeued": 1, "id": id}));
            } else {
                println!("requeued {id}");
            }
        }
        DeadCommand::Requeue { id: None, .. } => {
            let n = admin::dead_requeue_all(&queue).await?;
            if json {
                println!("{}", serde_json::json!({ "requeued": n }));
            } else {
                println!("requeued {n}");
            }
        }
        DeadCommand::Purge => {
            let n = admin::dead_purge(&queue).await?;
            if json {
                println!("{}", serde_json::json!({ "purged": n }));
            } else {
                println!("purged {n}");
            }
        }
    }
    Ok(())
}

async fn list_plugins(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let registry = Registry::load_dir(&sandbox, dir)
        .await
        .with_context(|| format!("cannot load plugins from {}", dir.display()))?;
    let infos: Vec<PluginInfo> = registry.plugins().iter().map(PluginInfo::of).collect();
    if json {
        println!("{}", serde_json::to_string(&infos)?);
        return Ok(());
    }
    for info in infos {
        println!("{}", info.table());
    }
    Ok(())
}

async fn check_plugin(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    // No compile cache: the compile time printed is the real one.
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: None,
        ..SandboxConfig::default()
    })?;
    let plugin = match Plugin::load(&sandbox, file).await {
        Ok(plugin) => plugin,
        Err(e) if json => {
            let error = format!("{:#}", anyhow::Error::from(e));
            println!(
                "{}",
                serde_json::json!({"ok": false, "file": file, "error": error})
            );
            anyhow::bail!(error)
        }
        Err(e) => return Err(e.into()),
    };
    let info = PluginInfo::of(&plugin);
    let compile_ms = plugin.compiled().elapsed.as_secs_f64() * 1e3;
    if json {
        let mut value = serde_json::to_value(&info)?;
        value["ok"] = true.into();
        value["world"] = "sluice:plugin/plugin@0.1.0".into();
        value["compile_ms"] = ((compile_ms * 10.0).round() / 10.0).into();
        println!("{value}");
        return Ok(());
    }
    print!("{}", info.table());
    println!("compile     {compile_ms:.1} ms (Cranelift, uncached)");
    println!("ok: {} fits the sluice:plugin@0.1.0 world", file.display());
    Ok(())
}
