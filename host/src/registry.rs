//! The plugin registry: every component in a plugins directory, and the
//! route from each `task_type` to the plugin claiming it; [`SharedRegistry`]
//! lets a running worker swap in a reloaded registry while tasks already
//! running finish on the plugin version they started with.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::sandbox::{LoadError, Plugin, Sandbox};

/// Why a plugins directory could not be loaded. Every case names files.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The directory could not be listed.
    #[error("cannot read plugins directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more plugins failed to load, or two claim one task type.
    #[error("{}", list(.0))]
    Plugins(Vec<PluginProblem>),
}

/// One problem found while loading a plugins directory.
#[derive(Debug, thiserror::Error)]
pub enum PluginProblem {
    /// A file failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two plugins claim the same task type.
    #[error("task type {task_type:?} is claimed by both {} and {}", .first.display(), .second.display())]
    Conflict {
        /// The task type.
        task_type: String,
        /// The plugin that claimed it first (file name order).
        first: PathBuf,
        /// The other plugin.
        second: PathBuf,
    },
}

fn list(problems: &[PluginProblem]) -> String {
    let mut out = format!("{} plugin problem(s):", problems.len());
    for p in problems {
        let _ = write!(out, "\n  - {p}");
    }
    out
}

/// Loaded plugins and the routing table. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    plugins: Vec<Plugin>,
    routes: HashMap<String, Plugin>,
}

impl Registry {
    /// Loads every `*.wasm` in `dir` (with its optional `NAME.toml`), in
    /// file-name order, and builds the routing table.
    ///
    /// # Errors
    /// [`RegistryError::Dir`] if `dir` cannot be listed;
    /// [`RegistryError::Plugins`] listing every file that failed and every
    /// task type claimed twice.
    pub async fn load_dir(sandbox: &Sandbox, dir: &Path) -> Result<Registry, RegistryError> {
        let paths = wasm_files(dir)?;
        let mut problems = Vec::new();
        let mut plugins = Vec::new();
        for path in &paths {
            match Plugin::load(sandbox, path).await {
                Ok(plugin) => plugins.push(plugin),
                Err(e) => problems.push(PluginProblem::Load(e)),
            }
        }
        let registry = Registry::from_plugins(plugins);
        match registry {
            Ok(registry) if problems.is_empty() => Ok(registry),
            Ok(_) => Err(RegistryError::Plugins(problems)),
            Err(mut conflicts) => {
                problems.append(&mut conflicts);
                Err(RegistryError::Plugins(problems))
            }
        }
    }

    /// Reloads `dir` against this registry, for hot reload: a plugin whose
    /// `.wasm` and manifest are unchanged is kept as it is; a new or changed
    /// one is compiled and loaded; a removed one is dropped. A file that
    /// fails to load, or that claims a task type another plugin serves,
    /// leaves the previous version of that file (if any) in place.
    ///
    /// Returns the new registry and the problems found (each names its file).
    ///
    /// # Errors
    /// [`RegistryError::Dir`] if `dir` cannot be listed.
    pub async fn reload(
        &self,
        sandbox: &Sandbox,
        dir: &Path,
    ) -> Result<(Registry, Vec<PluginProblem>), RegistryError> {
        let paths = wasm_files(dir)?;
        let mut problems = Vec::new();
        let mut kept = Vec::new();
        let mut fresh = Vec::new();
        for path in &paths {
            let old = self.plugins.iter().find(|p| p.path() == path);
            if let Some(old) = old.filter(|old| unchanged(old, path)) {
                kept.push(old.clone());
                continue;
            }
            match Plugin::load(sandbox, path).await {
                Ok(plugin) => fresh.push((plugin, old.cloned())),
                Err(e) => {
                    problems.push(PluginProblem::Load(e));
                    kept.extend(old.cloned());
                }
            }
        }
        // Unchanged plugins keep their routes; a new version may not take a
        // task type another plugin serves.
        let mut plugins = kept;
        for (plugin, old) in fresh {
            let mut candidate = plugins.clone();
            candidate.push(plugin);
            match Registry::from_plugins(candidate) {
                Ok(registry) => plugins = registry.plugins,
                Err(mut conflicts) => {
                    problems.append(&mut conflicts);
                    plugins.extend(old);
                }
            }
        }
        plugins.sort_by(|a, b| a.path().cmp(b.path()));
        let registry = Registry::from_plugins(plugins).unwrap_or_else(|_| self.clone());
        Ok((registry, problems))
    }

    /// Builds the routing table from loaded plugins.
    ///
    /// # Errors
    /// A [`PluginProblem::Conflict`] for every task type claimed twice.
    pub fn from_plugins(plugins: Vec<Plugin>) -> Result<Registry, Vec<PluginProblem>> {
        let mut routes: HashMap<String, Plugin> = HashMap::new();
        let mut conflicts = Vec::new();
        for plugin in &plugins {
            for task_type in plugin.task_types() {
                if let Some(first) = routes.get(task_type) {
                    conflicts.push(PluginProblem::Conflict {
                        task_type: task_type.clone(),
                        first: first.path().to_owned(),
                        second: plugin.path().to_owned(),
                    });
                } else {
                    routes.insert(task_type.clone(), plugin.clone());
                }
            }
        }
        if conflicts.is_empty() {
            Ok(Registry { plugins, routes })
        } else {
            Err(conflicts)
        }
    }

    /// The plugin that handles `task_type`, if any.
    pub fn route(&self, task_type: &str) -> Option<&Plugin> {
        self.routes.get(task_type)
    }

    /// All loaded plugins, in file-name order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }
}

/// The `*.wasm` files of `dir`, sorted by name.
fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Whether the file at `path` and its manifest are what `plugin` was loaded from.
fn unchanged(plugin: &Plugin, path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let same_code = crate::sandbox::sha256_hex(&bytes) == plugin.sha256();
    same_code
        && crate::manifest::Manifest::load_or_default(&path.with_extension("toml"))
            .is_ok_and(|m| &m == plugin.manifest())
}

/// The registry a running worker routes with; replaced atomically on reload.
#[derive(Debug, Clone, Default)]
pub struct SharedRegistry(Arc<RwLock<Arc<Registry>>>);

impl SharedRegistry {
    /// Wraps `registry`.
    pub fn new(registry: Registry) -> SharedRegistry {
        SharedRegistry(Arc::new(RwLock::new(Arc::new(registry))))
    }

    /// The current registry.
    pub fn load(&self) -> Arc<Registry> {
        self.0.read().expect("registry lock").clone()
    }

    /// Replaces the current registry.
    pub fn store(&self, registry: Registry) {
        *self.0.write().expect("registry lock") = Arc::new(registry);
    }
}
