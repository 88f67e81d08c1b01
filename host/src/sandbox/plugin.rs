//! A loaded plugin: its compiled component, its `InstancePre`, its manifest
//! and the task types it claims.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CompileInfo;
use sha2::{Digest, Sha256};

use super::Sandbox;
use super::bindings::PluginPre;
use super::warm::WarmPool;
use crate::manifest::{Manifest, ManifestError};

/// Why a plugin file could not be loaded; every case names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `.wasm` file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Io {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest beside it is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The file is not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {message}")]
    InvalidComponent {
        /// The plugin file.
        path: PathBuf,
        /// The compiler's explanation.
        message: String,
    },
    /// The component does not fit the `sluice:plugin/plugin` world (missing
    /// exports, or imports the host does not provide).
    #[error("{path} does not match the sluice:plugin world: {message}")]
    WorldMismatch {
        /// The plugin file.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// Calling `task-types` failed or returned nothing.
    #[error("{path}: task-types failed: {message}")]
    TaskTypes {
        /// The plugin file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A plugin ready to run tasks. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    path: PathBuf,
    sha256: String,
    size: u64,
    compiled: CompileInfo,
    manifest: Manifest,
    /// The manifest's `allowed_outbound_hosts`, parsed once.
    allow_list: Arc<super::AllowList>,
    task_types: Vec<String>,
    code: Code,
    /// Instances parked for reuse (only with `instance_reuse` > 1).
    warm: WarmPool,
}

/// What runs a plugin's tasks.
enum Code {
    /// A WebAssembly component, pre-instantiated against the host's linker.
    Component(PluginPre),
    /// Native Rust compiled into the host: no sandbox. For benchmarks (the
    /// cost of sandboxing as a ratio) and for embedding trusted handlers.
    Native(NativeHandler),
}

/// A native handler: task → JSON result text, or a failure.
pub type NativeHandler =
    Arc<dyn Fn(&super::TaskInput<'_>) -> Result<String, super::TaskFailure> + Send + Sync>;

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("task_types", &self.inner.task_types)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads `NAME.wasm` and its optional manifest `NAME.toml` beside it:
    /// compiles the component (off the async threads), pre-instantiates it
    /// against the host's linker and asks it for its task types.
    ///
    /// # Errors
    /// A [`LoadError`] naming the file and the cause.
    pub async fn load(sandbox: &Sandbox, path: &Path) -> Result<Plugin, LoadError> {
        let manifest = Manifest::load_or_default(&path.with_extension("toml"))?;
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Io {
                path: path.to_owned(),
                source,
            })?;
        let sha256 = sha256_hex(&bytes);
        let engine = sandbox.engine().clone();
        let cache_dir = sandbox.inner.config.cache_dir.clone();
        let hash = sha256.clone();
        let size = bytes.len() as u64;
        let (component, compiled) = tokio::task::spawn_blocking(move || {
            super::compile::compile(&engine, &bytes, &hash, cache_dir.as_deref())
        })
        .await
        .expect("compile task panicked")
        .map_err(|e| LoadError::InvalidComponent {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
        let problems = super::world::mismatches(sandbox.engine(), &component);
        if !problems.is_empty() {
            return Err(LoadError::WorldMismatch {
                path: path.to_owned(),
                message: problems.join("; "),
            });
        }
        let mismatch = |e: wasmtime::Error| LoadError::WorldMismatch {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let instance_pre = sandbox
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(mismatch)?;
        let version = super::bindings::Version::of(sandbox.engine(), &component);
        let pre = PluginPre::new(version, instance_pre).map_err(mismatch)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut plugin = Plugin {
            inner: Arc::new(Inner {
                name,
                path: path.to_owned(),
                sha256,
                size,
                compiled,
                // Checked when the manifest was read; denying all is the fallback.
                allow_list: Arc::new(
                    super::AllowList::parse(&manifest.allowed_outbound_hosts).unwrap_or_default(),
                ),
                manifest,
                task_types: Vec::new(),
                code: Code::Component(pre),
                warm: WarmPool::default(),
            }),
        };
        let task_types = sandbox
            .task_types(&plugin)
            .await
            .map_err(|e| LoadError::TaskTypes {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?;
        if task_types.is_empty() {
            return Err(LoadError::TaskTypes {
                path: path.to_owned(),
                message: "the plugin claims no task type".into(),
            });
        }
        Arc::get_mut(&mut plugin.inner)
            .expect("plugin not shared yet")
            .task_types = task_types;
        Ok(plugin)
    }

    /// The plugin's name: its file name without `.wasm`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The `.wasm` file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// SHA-256 of the `.wasm` file, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Size of the `.wasm` file, bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// How the component was compiled (time, whether from the cache).
    pub fn compiled(&self) -> CompileInfo {
        self.inner.compiled
    }

    /// The plugin's manifest (defaults when it has none).
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// The manifest's `allowed_outbound_hosts`, parsed.
    pub(super) fn allow_list(&self) -> Arc<super::AllowList> {
        self.inner.allow_list.clone()
    }

    /// The task types it claims, as returned by its `task-types` export.
    pub fn task_types(&self) -> &[String] {
        &self.inner.task_types
    }

    /// A plugin made of native Rust (no sandbox, no limits) that claims
    /// `task_types`. Its `sha256` is empty and its manifest the default.
    pub fn native(name: &str, task_types: &[&str], handler: NativeHandler) -> Plugin {
        Plugin {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                path: PathBuf::from(format!("<native:{name}>")),
                sha256: String::new(),
                size: 0,
                compiled: CompileInfo {
                    elapsed: std::time::Duration::ZERO,
                    cached: false,
                },
                manifest: Manifest::default(),
                allow_list: Arc::default(),
                task_types: task_types.iter().map(|t| (*t).to_owned()).collect(),
                code: Code::Native(handler),
                warm: WarmPool::default(),
            }),
        }
    }

    /// The instances of this plugin parked for reuse.
    pub(super) fn warm(&self) -> &WarmPool {
        &self.inner.warm
    }

    /// The component's `InstancePre`, or the native handler.
    pub(super) fn code(&self) -> Result<&PluginPre, &NativeHandler> {
        match &self.inner.code {
            Code::Component(pre) => Ok(pre),
            Code::Native(handler) => Err(handler),
        }
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
