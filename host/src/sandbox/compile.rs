//! Compiling components, with an on-disk cache of precompiled artifacts.
//!
//! Cranelift takes tens of ms for a small Rust component and seconds for a
//! Python one (~18 MB); loading a precompiled artifact takes well under a
//! millisecond. Artifacts are keyed by the component's SHA-256 and the
//! engine's `precompile_compatibility_hash` (wasmtime version and every
//! setting that affects code), so a changed component or engine never
//! loads a stale artifact (wasmtime docs: `Engine::precompile_component`,
//! `Component::deserialize_file`).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileInfo {
    /// Time spent compiling or loading the artifact.
    pub elapsed: Duration,
    /// Whether the artifact came from the cache.
    pub cached: bool,
}

/// The default cache folder: `$SLUICE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/sluice/components`, else `~/.cache/sluice/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sluice").join("components"))
}

/// Compiles `bytes` (whose SHA-256 is `sha256`), or loads the artifact
/// cached for it in `cache_dir`. A missing or unwritable cache only costs
/// time: failures to read or write it are logged, never returned.
///
/// # Errors
/// When the bytes are not a valid component (wasmtime's message).
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<(Component, CompileInfo)> {
    let start = Instant::now();
    let artifact =
        cache_dir.map(|dir| dir.join(format!("{sha256}-{:016x}.cwasm", engine_key(engine))));
    if let Some(path) = artifact.as_deref().filter(|p| p.is_file()) {
        // SAFETY: `deserialize_file` trusts its input to be an artifact this
        // wasmtime produced. The file lives in our own cache, under a name
        // keyed by the component's hash and this engine's compatibility hash,
        // and is written only by `store` below (atomically, via rename).
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, path) };
        match loaded {
            Ok(component) => {
                return Ok((
                    component,
                    CompileInfo {
                        elapsed: start.elapsed(),
                        cached: true,
                    },
                ));
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cached artifact")
            }
        }
    }
    let precompiled = engine.precompile_component(bytes)?;
    if let Some(path) = &artifact {
        store(path, &precompiled);
    }
    // SAFETY: the bytes were produced by `precompile_component` on this very engine just above.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &precompiled)? };
    Ok((
        component,
        CompileInfo {
            elapsed: start.elapsed(),
            cached: false,
        },
    ))
}

fn engine_key(engine: &Engine) -> u64 {
    // DefaultHasher::new() uses fixed keys, so the key is stable across runs.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

fn store(path: &Path, artifact: &[u8]) {
    let write = || -> std::io::Result<()> {
        let dir = path.parent().expect("artifact path has a folder");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), fastrand::u64(..)));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
    }
}
