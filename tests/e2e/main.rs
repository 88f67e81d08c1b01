//! End-to-end tests: the real `sluice` binary against private
//! `redis-server` processes, with plugins built by `cargo xtask plugins`.
//! One binary, one module per topic (the wasmtime `tests/all` layout).

mod cluster_harness;
mod harness;

mod authoring;
mod bad_input;
mod cluster;
mod delivery;
mod follow_ups;
mod hostile;
mod hot_reload;
mod limits;
mod local_run;
mod main_job;
mod ordering;
mod outbound_http;
mod polyglot;
mod replies;
mod retries;
mod sandbox_limits;
mod soak;
mod startup;
mod tenancy;
mod tls;
