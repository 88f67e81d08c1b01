//! A plugin's manifest: the optional `NAME.toml` beside `NAME.wasm`.
//!
//! The manifest sets the sandbox of every task the plugin runs: its
//! wall-clock timeout, its linear-memory limit, and the capabilities it is
//! granted (directories, environment variables). Anything not granted is
//! denied: by default a plugin has no filesystem, no environment and no
//! network, 64 MiB of memory and 30 s per task.
//!
//! ```toml
//! version = "1.2.0"            # shown in result records
//! timeout_ms = 30000           # wall-clock limit per task, ms
//! memory_bytes = 67108864      # linear-memory limit per task, bytes
//! inherit_env = ["TZ"]         # host variables passed through (if set)
//! env = { MODE = "fast" }      # fixed variables
//! max_retries = 5              # retries after the first attempt
//! backoff_base_ms = 1000       # first retry delay, doubled per attempt
//! backoff_cap_ms = 3600000     # largest retry delay
//! instance_reuse = 1           # tasks per instance; > 1 trades isolation for speed
//! max_result_bytes = 1048576   # largest result (JSON text); default: the worker's --max-result-bytes
//! max_log_bytes = 65536        # bytes of `log` messages kept per task
//! max_log_lines = 1000         # `log` calls kept per task
//! allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:*"]  # wasi:http; default none
//! max_outbound_requests = 32   # HTTP requests per task
//! max_outbound_response_bytes = 10485760  # response body bytes per task
//! outbound_connect_timeout_ms = 5000      # per connection
//! may_enqueue = ["parse_log_file"]        # follow-up task types (sluice:plugin@0.2.0 `enqueue`)
//! max_enqueue = 100            # follow-ups per task
//! chain_depth = 16             # deepest follow-up of follow-up of … allowed
//!
//! [[dir]]
//! host = "data"                # relative paths are relative to the manifest's folder
//! guest = "/data"
//! mode = "read-write"          # or "read-only" (the default)
//!
//! [build]                      # for `sluice build`; ignored by the worker and `sluice run`
//! command = "cargo build --target wasm32-wasip2 --release"
//! workdir = "."                # where the command runs, relative to the manifest's folder
//! output = "target/wasm32-wasip2/release/hello.wasm"   # the component the command writes
//! requires = ["cargo", "wasm32-wasip2"]                # toolchain checked before building
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default wall-clock limit per task: 30 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default linear-memory limit per task: 64 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Default bytes of host `log` messages kept per task: 64 KiB, as for stdout
/// and stderr.
pub const DEFAULT_LOG_BYTES: u64 = 64 * 1024;
/// Default host `log` calls kept per task.
pub const DEFAULT_LOG_LINES: u32 = 1000;
/// Default outbound HTTP requests per task.
pub const DEFAULT_OUTBOUND_REQUESTS: u32 = 32;
/// Default response body bytes per task over all its HTTP requests: 10 MiB.
pub const DEFAULT_OUTBOUND_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;
/// Default connect timeout of an outbound HTTP request: 5 s.
pub const DEFAULT_OUTBOUND_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default follow-up tasks one task may enqueue.
pub const DEFAULT_MAX_ENQUEUE: u32 = 100;
/// Default deepest chain of follow-ups (a producer's task is depth 0).
pub const DEFAULT_CHAIN_DEPTH: u32 = 16;

/// Errors reading a manifest; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file exists but could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Io {
        /// The manifest file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid manifest TOML (unknown keys are errors too).
    #[error("invalid manifest {path}: {message}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, from the TOML parser or a check.
        message: String,
    },
}

/// Access granted to a preopened directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DirMode {
    /// The plugin may read files and list directories.
    #[default]
    ReadOnly,
    /// The plugin may also create, write and remove files.
    ReadWrite,
}

/// A host directory made visible to the plugin (a WASI preopen).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Host path; a relative path is resolved against the manifest's folder.
    pub host: PathBuf,
    /// Path the plugin sees, e.g. `/data`.
    pub guest: String,
    /// Read-only (default) or read-write.
    #[serde(default)]
    pub mode: DirMode,
}

/// How `sluice build` builds the plugin: the manifest's optional `[build]`
/// table, as Spin's `[component.build]` in `spin.toml`. The worker and
/// `sluice run` parse it (so a typo is still an error) and ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// The build command, run by `sh -c` in [`BuildSpec::workdir`], e.g.
    /// `"cargo build --target wasm32-wasip2 --release"`.
    pub command: String,
    /// Folder the command runs in, relative to the manifest's folder
    /// (default: the manifest's folder).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// The component the command writes, relative to the manifest's folder
    /// (default `NAME.wasm`, NAME being the manifest's file stem).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Toolchain pieces the command needs, checked before it runs so a
    /// missing one is reported with what to install (see
    /// `sluice build --help`): e.g. `["cargo", "wasm32-wasip2"]`,
    /// `["componentize-py"]`. Other names are looked up as programs.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// A plugin's limits and capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Free-form version text shown in result records, e.g. "1.2.0".
    #[serde(default)]
    pub version: Option<String>,
    /// Wall-clock limit per task in milliseconds, enforced by epoch interruption.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Linear-memory limit per task in bytes (all memories of the instance together).
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: u64,
    /// Names of host environment variables passed through when set.
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// Environment variables with fixed values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Directories the plugin may access.
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirGrant>,
    /// Retries allowed after the first attempt for this plugin's task types
    /// (the worker's default when absent; a task's `max_retries` wins).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// First retry delay, ms, doubled per attempt (worker default when absent).
    #[serde(default)]
    pub backoff_base_ms: Option<u64>,
    /// Largest retry delay, ms (worker default when absent).
    #[serde(default)]
    pub backoff_cap_ms: Option<u64>,
    /// Tasks one component instance may run before it is discarded
    /// (default 1: a fresh instance per task, nothing carried over).
    ///
    /// An explicit speed/isolation trade-off, like Spin's and wasmCloud's
    /// instance reuse: with `n > 1` a task may see what earlier tasks of
    /// *this plugin* left in the instance's memory (globals, caches, open
    /// files), so opt in only when every task routed to the plugin belongs to
    /// one tenant. Instances are never shared between plugins, an instance
    /// that trapped, timed out or was interrupted is never reused, and each
    /// task still gets its own deadline and cancellation. Saves the
    /// instantiate + teardown cost (measured in the README). At most
    /// [`MAX_INSTANCE_REUSE`].
    #[serde(default = "default_instance_reuse")]
    pub instance_reuse: u32,
    /// Largest result (the JSON text `handle` returns) in bytes; a larger one
    /// fails the task with kind `result_too_large`. The worker's
    /// `--max-result-bytes` (1 MiB) when absent.
    #[serde(default)]
    pub max_result_bytes: Option<u64>,
    /// Bytes of host `log` messages written to the worker's log per task
    /// (default [`DEFAULT_LOG_BYTES`]); the rest are dropped and counted.
    #[serde(default = "default_log_bytes")]
    pub max_log_bytes: u64,
    /// Host `log` calls written to the worker's log per task (default
    /// [`DEFAULT_LOG_LINES`]); the rest are dropped and counted.
    #[serde(default = "default_log_lines")]
    pub max_log_lines: u32,
    /// How `sluice build` builds the component (the `[build]` table); not
    /// used when running tasks.
    #[serde(default)]
    pub build: Option<BuildSpec>,
    /// Where the plugin may send HTTP requests (`wasi:http/outgoing-handler`),
    /// in Spin's format: `"https://api.example.com"`, `"http://127.0.0.1:8080"`,
    /// `"https://*.example.com"`, `"http://127.0.0.1:*"` (see
    /// [`crate::sandbox::AllowList`]). Default: none (every request refused).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// HTTP requests one task may send (default [`DEFAULT_OUTBOUND_REQUESTS`]).
    #[serde(default = "default_outbound_requests")]
    pub max_outbound_requests: u32,
    /// Response body bytes one task may receive over all its requests
    /// (default [`DEFAULT_OUTBOUND_RESPONSE_BYTES`]).
    #[serde(default = "default_outbound_response_bytes")]
    pub max_outbound_response_bytes: u64,
    /// Connect timeout of each HTTP request, ms (default
    /// [`DEFAULT_OUTBOUND_CONNECT_TIMEOUT_MS`]); the task's `timeout_ms`
    /// bounds the whole exchange.
    #[serde(default = "default_outbound_connect_timeout_ms")]
    pub outbound_connect_timeout_ms: u64,
    /// Task types the plugin may start as follow-ups with the host's
    /// `enqueue` (`sluice:plugin@0.2.0`). Default: none.
    #[serde(default)]
    pub may_enqueue: Vec<String>,
    /// Follow-up tasks one task may enqueue (default [`DEFAULT_MAX_ENQUEUE`]).
    #[serde(default = "default_max_enqueue")]
    pub max_enqueue: u32,
    /// How deep a chain of follow-ups started by this plugin's tasks may go
    /// (default [`DEFAULT_CHAIN_DEPTH`]): a producer's task is at depth 0,
    /// its follow-ups at 1, theirs at 2…; `enqueue` from a task at this
    /// depth is refused, which ends cycles (a type that enqueues itself).
    #[serde(default = "default_chain_depth")]
    pub chain_depth: u32,
}

fn default_chain_depth() -> u32 {
    DEFAULT_CHAIN_DEPTH
}

fn default_outbound_requests() -> u32 {
    DEFAULT_OUTBOUND_REQUESTS
}

fn default_outbound_response_bytes() -> u64 {
    DEFAULT_OUTBOUND_RESPONSE_BYTES
}

fn default_outbound_connect_timeout_ms() -> u64 {
    DEFAULT_OUTBOUND_CONNECT_TIMEOUT_MS
}

fn default_max_enqueue() -> u32 {
    DEFAULT_MAX_ENQUEUE
}

fn default_log_bytes() -> u64 {
    DEFAULT_LOG_BYTES
}

fn default_log_lines() -> u32 {
    DEFAULT_LOG_LINES
}

/// Largest accepted [`Manifest::instance_reuse`]: bounds how long one
/// instance's state (and memory growth) can live.
pub const MAX_INSTANCE_REUSE: u32 = 10_000;

fn default_instance_reuse() -> u32 {
    1
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_memory_bytes() -> u64 {
    DEFAULT_MEMORY_BYTES
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            version: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            inherit_env: Vec::new(),
            env: BTreeMap::new(),
            dirs: Vec::new(),
            max_retries: None,
            backoff_base_ms: None,
            backoff_cap_ms: None,
            instance_reuse: 1,
            max_result_bytes: None,
            max_log_bytes: DEFAULT_LOG_BYTES,
            max_log_lines: DEFAULT_LOG_LINES,
            build: None,
            allowed_outbound_hosts: Vec::new(),
            max_outbound_requests: DEFAULT_OUTBOUND_REQUESTS,
            max_outbound_response_bytes: DEFAULT_OUTBOUND_RESPONSE_BYTES,
            outbound_connect_timeout_ms: DEFAULT_OUTBOUND_CONNECT_TIMEOUT_MS,
            may_enqueue: Vec::new(),
            max_enqueue: DEFAULT_MAX_ENQUEUE,
            chain_depth: DEFAULT_CHAIN_DEPTH,
        }
    }
}

impl Manifest {
    /// Reads the manifest at `path`, or returns the defaults when the file
    /// does not exist. Relative `dir.host` paths are made absolute against
    /// the manifest's folder, and read-write directories are created when
    /// missing.
    ///
    /// # Errors
    /// [`ManifestError`] when the file cannot be read, is not valid TOML, has
    /// unknown keys, a zero timeout, memory or result limit, a read-only
    /// directory that does not exist, or a guest path that is not absolute.
    pub fn load_or_default(path: &Path) -> Result<Manifest, ManifestError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(source) => {
                return Err(ManifestError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Manifest::parse(&text, path)
    }

    /// Parses manifest `text` read from `path` (which names the file in
    /// errors and anchors relative `dir.host` paths), with the checks of
    /// [`Manifest::load_or_default`]. Read-write directories are created.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`], never a panic, for any text.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if manifest.timeout_ms == 0 {
            return Err(invalid("timeout_ms must be greater than 0".into()));
        }
        if manifest.memory_bytes == 0 {
            return Err(invalid("memory_bytes must be greater than 0".into()));
        }
        if manifest.max_result_bytes == Some(0) {
            return Err(invalid("max_result_bytes must be greater than 0".into()));
        }
        if !(1..=MAX_INSTANCE_REUSE).contains(&manifest.instance_reuse) {
            return Err(invalid(format!(
                "instance_reuse must be between 1 (a fresh instance per task) and {MAX_INSTANCE_REUSE}"
            )));
        }
        if let Err(e) = crate::sandbox::AllowList::parse(&manifest.allowed_outbound_hosts) {
            return Err(invalid(format!("allowed_outbound_hosts: {e}")));
        }
        if manifest.outbound_connect_timeout_ms == 0 {
            return Err(invalid(
                "outbound_connect_timeout_ms must be greater than 0".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for dir in &mut manifest.dirs {
            if !dir.guest.starts_with('/') {
                return Err(invalid(format!(
                    "dir.guest {:?} must be an absolute path such as \"/data\"",
                    dir.guest
                )));
            }
            if dir.host.is_relative() {
                dir.host = base.join(&dir.host);
            }
            match dir.mode {
                DirMode::ReadWrite => std::fs::create_dir_all(&dir.host).map_err(|e| {
                    invalid(format!("cannot create dir {}: {e}", dir.host.display()))
                })?,
                DirMode::ReadOnly if !dir.host.is_dir() => {
                    return Err(invalid(format!(
                        "read-only dir {} does not exist",
                        dir.host.display()
                    )));
                }
                DirMode::ReadOnly => {}
            }
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults() {
        let m = Manifest::load_or_default(Path::new("/nonexistent/x.toml")).unwrap();
        assert_eq!(m, Manifest::default());
        assert_eq!(m.timeout_ms, 30_000);
        assert_eq!(m.memory_bytes, 64 << 20);
        assert!(m.dirs.is_empty() && m.env.is_empty() && m.inherit_env.is_empty());
    }

    #[test]
    fn relative_dirs_resolve_against_manifest_folder() {
        let tmp = std::env::temp_dir().join(format!("sluice-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = tmp.join("p.toml");
        std::fs::write(
            &path,
            "timeout_ms = 500\n[[dir]]\nhost = \"out\"\nguest = \"/data\"\nmode = \"read-write\"\n",
        )
        .unwrap();
        let m = Manifest::load_or_default(&path).unwrap();
        assert_eq!(m.timeout_ms, 500);
        assert_eq!(m.dirs[0].host, tmp.join("out"));
        assert!(tmp.join("out").is_dir(), "read-write dir is created");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let tmp = std::env::temp_dir().join(format!("sluice-manifest-bad-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = tmp.join("p.toml");
        std::fs::write(&path, "timeout = 5\n").unwrap();
        let err = Manifest::load_or_default(&path).unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains("timeout"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn instance_reuse_defaults_to_a_fresh_instance_and_is_bounded() {
        assert_eq!(Manifest::default().instance_reuse, 1);
        let tmp =
            std::env::temp_dir().join(format!("sluice-manifest-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = tmp.join("p.toml");
        std::fs::write(&path, "instance_reuse = 50\n").unwrap();
        assert_eq!(Manifest::load_or_default(&path).unwrap().instance_reuse, 50);
        for bad in ["0", "10001"] {
            std::fs::write(&path, format!("instance_reuse = {bad}\n")).unwrap();
            let err = Manifest::load_or_default(&path).unwrap_err().to_string();
            assert!(err.contains("instance_reuse must be between 1"), "{err}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_build_table_is_accepted_and_checked() {
        let path = Path::new("/nonexistent/p.toml");
        let m = Manifest::parse(
            "timeout_ms = 100\n[build]\ncommand = \"sh build.sh\"\noutput = \"dist/p.wasm\"\nrequires = [\"clang\"]\n",
            path,
        )
        .unwrap();
        assert_eq!(m.timeout_ms, 100);
        let build = m.build.unwrap();
        assert_eq!(build.command, "sh build.sh");
        assert_eq!(build.output, Some(PathBuf::from("dist/p.wasm")));
        assert_eq!(build.requires, ["clang"]);
        let err = Manifest::parse("[build]\ncommand = \"x\"\ncmd = \"y\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cmd"),
            "unknown [build] keys are errors: {err}"
        );
        let err = Manifest::parse("[build]\noutput = \"x.wasm\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("command"), "{err}");
    }

    #[test]
    fn result_and_log_limits_are_manifest_keys() {
        let path = Path::new("/nonexistent/p.toml");
        let m = Manifest::parse("", path).unwrap();
        assert_eq!(
            (m.max_result_bytes, m.max_log_bytes, m.max_log_lines),
            (None, 64 * 1024, 1000)
        );
        let m = Manifest::parse(
            "max_result_bytes = 4096\nmax_log_bytes = 0\nmax_log_lines = 5\n",
            path,
        )
        .unwrap();
        assert_eq!(
            (m.max_result_bytes, m.max_log_bytes, m.max_log_lines),
            (Some(4096), 0, 5)
        );
        let err = Manifest::parse("max_result_bytes = 0\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_result_bytes must be greater than 0"),
            "{err}"
        );
    }

    #[test]
    fn outbound_and_enqueue_keys_default_to_nothing_granted() {
        let path = Path::new("/nonexistent/p.toml");
        let m = Manifest::parse("", path).unwrap();
        assert!(m.allowed_outbound_hosts.is_empty() && m.may_enqueue.is_empty());
        assert_eq!((m.max_outbound_requests, m.max_enqueue), (32, 100));
        let m = Manifest::parse(
            "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\nmax_outbound_requests = 2\nmay_enqueue = [\"x\"]\n",
            path,
        )
        .unwrap();
        assert_eq!(m.max_outbound_requests, 2);
        assert_eq!(m.may_enqueue, ["x"]);
        let err = Manifest::parse("allowed_outbound_hosts = [\"127.0.0.1\"]\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("allowed_outbound_hosts") && err.contains("no scheme"),
            "{err}"
        );
    }
}
