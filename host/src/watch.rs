//! Hot reload: watch the plugins directory (the `notify` crate) and swap a
//! reloaded registry into the running worker.
//!
//! New and changed components are validated and compiled here, off the task
//! path; tasks already running keep the plugin version they started with;
//! a file that fails to load (half-copied, invalid) never replaces a working
//! version. Deploy by writing to a temporary name outside the directory (or
//! not ending in `.wasm`) and renaming it into place.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::registry::SharedRegistry;
use crate::sandbox::Sandbox;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `dir`; reloads `registry` on every change. The watch
/// lasts as long as the returned task.
///
/// # Errors
/// When the directory cannot be watched.
pub fn spawn(
    sandbox: Sandbox,
    dir: PathBuf,
    registry: SharedRegistry,
) -> notify::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = RecommendedWatcher::new(
        move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        },
        notify::Config::default(),
    )?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Debounce: a copy or a build writes in many events.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reload(&sandbox, &dir, &registry).await;
        }
    }))
}

/// Reloads once and logs what changed.
pub async fn reload(sandbox: &Sandbox, dir: &std::path::Path, registry: &SharedRegistry) {
    let current = registry.load();
    let (next, problems) = match current.reload(sandbox, dir).await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "plugin reload failed; keeping the loaded plugins");
            ::metrics::counter!("sluice_plugin_reload_errors_total").increment(1);
            return;
        }
    };
    for problem in &problems {
        tracing::error!("plugin reload: {problem}; keeping the previous version");
        ::metrics::counter!("sluice_plugin_reload_errors_total").increment(1);
    }
    for plugin in next.plugins() {
        match current.plugins().iter().find(|p| p.path() == plugin.path()) {
            Some(old) if old.sha256() == plugin.sha256() && old.manifest() == plugin.manifest() => {
            }
            old => {
                let action = if old.is_some() {
                    "plugin replaced"
                } else {
                    "plugin added"
                };
                tracing::info!(plugin = plugin.name(), version = plugin.manifest().version.as_deref().unwrap_or("-"), sha256 = &plugin.sha256()[..12], task_types = ?plugin.task_types(), "{action}");
                ::metrics::counter!("sluice_plugin_loads_total", "plugin" => plugin.name().to_owned()).increment(1);
            }
        }
    }
    for old in current.plugins() {
        if !next.plugins().iter().any(|p| p.path() == old.path()) {
            tracing::info!(
                plugin = old.name(),
                "plugin removed; its task types are no longer routed"
            );
        }
    }
    registry.store(next);
}
