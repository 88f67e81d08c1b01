//! Operator visibility: Prometheus metrics (the `metrics` facade with
//! `metrics-exporter-prometheus`) and health endpoints, served over HTTP
//! (axum) by `sluice worker --metrics-addr HOST:PORT`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sluice_tasks_started_total` | counter | task_type, plugin |
//! | `sluice_tasks_succeeded_total` | counter | task_type, plugin |
//! | `sluice_tasks_failed_total` | counter | task_type, plugin (failed for good) |
//! | `sluice_tasks_retried_total` | counter | task_type, plugin |
//! | `sluice_tasks_dead_lettered_total` | counter | task_type, plugin, reason |
//! | `sluice_task_duration_seconds` | histogram | task_type, plugin |
//! | `sluice_sandbox_instantiate_seconds` | histogram | plugin |
//! | `sluice_queue_depth` | gauge | queue, state = pending, in_flight, delayed, dead |
//! | `sluice_plugin_loads_total` | counter | plugin |
//! | `sluice_plugin_reload_errors_total` | counter | |
//!
//! `/healthz` answers 200 while the process runs; `/readyz` answers 200 when
//! Redis answers `PING` and at least one plugin is loaded, else 503.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::admin;
use crate::queue::Queue;
use crate::registry::SharedRegistry;

/// Histogram buckets, seconds: 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

#[derive(Clone)]
struct AppState {
    prometheus: PrometheusHandle,
    queue: Queue,
    registry: SharedRegistry,
}

/// Installs the Prometheus recorder and serves `/metrics`, `/healthz` and
/// `/readyz` on `addr` in the background; also refreshes the queue-depth
/// gauges every second.
///
/// # Errors
/// When the address cannot be bound or a recorder is already installed.
pub async fn serve(addr: SocketAddr, queue: Queue, registry: SharedRegistry) -> anyhow::Result<()> {
    let prometheus = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let state = AppState {
        prometheus,
        queue: queue.clone(),
        registry,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    tokio::spawn(depth_gauges(queue));
    Ok(())
}

async fn metrics(State(state): State<AppState>) -> String {
    state.prometheus.render()
}

async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    let redis_ok = redis::cmd("PING")
        .query_async::<String>(&mut state.queue.connection())
        .await
        .is_ok();
    let plugins = state.registry.load().plugins().len();
    let status = if redis_ok && plugins > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        format!(
            "redis: {}\nplugins: {plugins}\n",
            if redis_ok { "ok" } else { "unreachable" }
        ),
    )
}

async fn depth_gauges(queue: Queue) {
    let name = queue.keys().pending.clone();
    loop {
        if let Ok(stats) = admin::stats(&queue).await {
            for (state, value) in [
                ("pending", stats.pending),
                ("in_flight", stats.in_flight),
                ("delayed", stats.delayed),
                ("dead", stats.dead),
            ] {
                ::metrics::gauge!("sluice_queue_depth", "queue" => name.clone(), "state" => state)
                    .set(value as f64);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
