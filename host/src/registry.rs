//! The plugin registry: every component in a plugins directory, and the
//! route from each `task_type` to the plugin claiming it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
        let mut paths = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
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
