//! Sluice: a Redis task-queue worker that runs every task in a sandboxed
//! WebAssembly component.
//!
//! Producers push JSON messages onto a Redis list exactly as in the classic
//! pattern (`RPUSH task_queue '{"task_type": "parse_log_file", "params": {...}}'`);
//! a Sluice worker takes them off, routes each `task_type` to the plugin
//! component that claims it, runs the task in a fresh wasmtime instance with
//! the plugin's memory, time and capability limits, and writes a result
//! record back to Redis.
//!
//! Map of the crate, one module per concept:
//! - [`message`]: the wire format producers push, parsed without copying `params`.
//! - [`manifest`]: a plugin's `NAME.toml` — limits and capabilities.
//! - [`sandbox`]: the wasmtime engine, per-task stores, epoch deadlines, WASI grants.
//! - [`registry`]: loading a plugins directory and routing task types to plugins.
//! - [`watch`]: hot reload — watching the plugins directory.
//! - [`keys`]: the Redis key layout of one queue (Cluster hash-tagged).
//! - [`record`]: result records and dead letters, as stored in Redis.
//! - [`connection`]: the one Redis connection type — single node, Cluster, TLS, auth.
//! - [`queue`]: the Redis side of the protocol — fetch, leases, acknowledgement;
//!   [`queue::ordering`]: per-key order (`ordering_key`).
//! - [`worker`]: the worker loop that ties them together.
//! - [`local_run`]: `sluice run` — one task in the sandbox, without Redis.
//! - [`scaffold`]: `sluice new` — plugin projects from embedded templates.
//! - [`plugin_build`]: `sluice build` — a project's `[build]` command, toolchain checks.
//! - [`output`]: `-o table|json` of the inspecting commands.
//! - [`tenant`]: multi-tenant workers — config file, fair scheduling by CPU, quotas, ACLs.
//! - [`admin`]: operator commands — queue counts and the dead-letter queue.
//! - [`telemetry`]: Prometheus metrics, `/healthz` and `/readyz`.
#![deny(missing_docs)]

pub mod admin;
pub mod connection;
pub mod keys;
pub mod local_run;
pub mod manifest;
pub mod message;
pub mod output;
pub mod plugin_build;
pub mod queue;
pub mod record;
pub mod registry;
pub mod sandbox;
pub mod scaffold;
pub mod telemetry;
pub mod tenant;
pub mod watch;
pub mod worker;
