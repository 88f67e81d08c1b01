//! `sluice build [DIR]`: builds a plugin project with the command of its
//! manifest's `[build]` table (as `spin build` runs `[component.build]`).
//!
//! 1. Finds the manifest in `DIR` (default `.`): `DIR/<folder name>.toml`,
//!    else the one `*.toml` there with a `[build]` table. NAME is its stem.
//! 2. Checks every toolchain piece of `[build] requires` (see
//!    [`Requirement`]), looking on `PATH` and where Sluice's installer
//!    (`.ci/install-polyglot`) puts tools: `$SLUICE_CACHE/venv/bin`,
//!    `$SLUICE_CACHE/node/node_modules/.bin` (`SLUICE_CACHE` defaults to
//!    `~/.cache/sluice`) and `$CARGO_HOME/bin` (default `~/.cargo/bin`). A
//!    missing one stops the build before it starts, with exactly what to
//!    install (exit status 2).
//! 3. Runs `sh -c COMMAND` in `[build] workdir` with those folders put in
//!    front of the child's `PATH` (and `SLUICE_CACHE` set); its output goes
//!    to stderr, with progress lines. A failing command is exit status 1.
//! 4. Copies the component (`[build] output`, default `NAME.wasm`; `$VAR`
//!    and `${VAR:-default}` are expanded from the environment) to
//!    `DIR/dist/NAME.wasm` and the manifest beside it as
//!    `DIR/dist/NAME.toml` (relative `[[dir]] host` paths made absolute), so
//!    that `sluice plugin check`, `sluice run` and a worker's plugins
//!    directory take the pair as it is.
//! 5. Prints the component's path as the **last line of stdout**.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::manifest::{BuildSpec, Manifest};

/// Versions of the polyglot toolchains, as pinned by `.ci/install-polyglot`
/// (keep them in step): shown in the install advice.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// See [`COMPONENTIZE_PY_VERSION`].
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// See [`COMPONENTIZE_PY_VERSION`].
pub const JCO_VERSION: &str = "1.35.0";
/// See [`COMPONENTIZE_PY_VERSION`].
pub const WIT_BINDGEN_CLI_VERSION: &str = "0.46.0";
/// See [`COMPONENTIZE_PY_VERSION`].
pub const WASM_TOOLS_VERSION: &str = "1.254.2";
/// The WASI preview1 reactor adapter's version: the host's wasmtime.
pub const ADAPTER_VERSION: &str = "48.0.8";

/// The arguments of `sluice build`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The project folder (holding `NAME.toml` with a `[build]` table).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Why `sluice build` did not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No manifest with a `[build]` table, or an invalid one (exit 2).
    #[error("{0}")]
    Manifest(String),
    /// Toolchain pieces are missing; the text says what to install (exit 2).
    #[error("missing toolchain for {name}:\n{advice}")]
    Toolchain {
        /// The plugin.
        name: String,
        /// One line per missing piece: what, and the command installing it.
        advice: String,
    },
    /// The build command failed or did not write its output (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl BuildError {
    /// The exit status: 2 for a usage or toolchain problem, 1 for a failed build.
    pub fn exit_code(&self) -> u8 {
        match self {
            BuildError::Manifest(_) | BuildError::Toolchain { .. } => 2,
            BuildError::Failed(_) => 1,
        }
    }
}

/// Runs `sluice build`: prints the built component's path as the last line
/// of stdout, or the error on stderr; returns the exit status.
pub fn main(args: &BuildArgs) -> u8 {
    match build(&args.dir) {
        Ok(wasm) => {
            println!("{}", wasm.display());
            0
        }
        Err(e) => {
            eprintln!("sluice build: {e}");
            e.exit_code()
        }
    }
}

/// Builds the project in `dir`; returns the path of `dir/dist/NAME.wasm`.
///
/// # Errors
/// [`BuildError`].
pub fn build(dir: &Path) -> Result<PathBuf, BuildError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| BuildError::Manifest(format!("bad folder {}: {e}", dir.display())))?;
    let (manifest_path, spec) = find_manifest(&dir)?;
    let name = manifest_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned();
    let tools = ToolDirs::from_env();
    let missing: Vec<String> = spec
        .requires
        .iter()
        .filter_map(|r| Requirement::parse(r).check(&tools).err())
        .collect();
    if !missing.is_empty() {
        return Err(BuildError::Toolchain {
            name,
            advice: missing
                .iter()
                .map(|m| format!("    {m}"))
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    let workdir = match &spec.workdir {
        Some(w) => dir.join(w),
        None => dir.clone(),
    };
    let output = dir.join(expand(
        &spec
            .output
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{name}.wasm")),
    ));
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| BuildError::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    eprintln!(
        "sluice build: {name}: running `{}` in {}",
        spec.command,
        workdir.display()
    );
    let started = Instant::now();
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&workdir)
        .env("PATH", tools.path())
        .env("SLUICE_CACHE", &tools.cache)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| BuildError::Failed(format!("cannot run /bin/sh: {e}")))?;
    if !status.success() {
        return Err(BuildError::Failed(format!(
            "the build command `{}` failed ({status})",
            spec.command
        )));
    }
    if !output.is_file() {
        return Err(BuildError::Failed(format!(
            "the build command succeeded but {} does not exist: fix `output` in {}",
            output.display(),
            manifest_path.display()
        )));
    }
    let dist = dir.join("dist");
    std::fs::create_dir_all(&dist)
        .map_err(|e| BuildError::Failed(format!("cannot create {}: {e}", dist.display())))?;
    let wasm = dist.join(format!("{name}.wasm"));
    if output != wasm {
        std::fs::copy(&output, &wasm).map_err(|e| {
            BuildError::Failed(format!(
                "cannot copy {} to {}: {e}",
                output.display(),
                wasm.display()
            ))
        })?;
    }
    copy_manifest(&manifest_path, &dist.join(format!("{name}.toml")))?;
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "sluice build: {name}: built {} ({size} bytes) in {:.1} s",
        wasm.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(wasm)
}

/// The manifest of the project in `dir` and its `[build]` table.
fn find_manifest(dir: &Path) -> Result<(PathBuf, BuildSpec), BuildError> {
    let parse = |path: &Path| -> Result<Option<BuildSpec>, BuildError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BuildError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        // Parsed as a whole, so a typo anywhere is reported now, not by the worker.
        let manifest =
            Manifest::parse(&text, path).map_err(|e| BuildError::Manifest(e.to_string()))?;
        Ok(manifest.build)
    };
    if let Some(folder) = dir.file_name().and_then(|n| n.to_str()) {
        let own = dir.join(format!("{folder}.toml"));
        if own.is_file() {
            return match parse(&own)? {
                Some(spec) => Ok((own, spec)),
                None => Err(BuildError::Manifest(format!(
                    "{} has no [build] table (command = \"…\", output = \"…\"): nothing to build",
                    own.display()
                ))),
            };
        }
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BuildError::Manifest(format!("cannot list {}: {e}", dir.display())))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Other tools' files, never a plugin manifest.
        if path.extension().is_none_or(|e| e != "toml")
            || [
                "Cargo.toml",
                "pyproject.toml",
                "rustfmt.toml",
                "clippy.toml",
            ]
            .contains(&file)
        {
            continue;
        }
        if let Ok(Some(spec)) = parse(&path) {
            found.push((path, spec));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(BuildError::Manifest(format!(
            "no plugin manifest with a [build] table in {} (create a project with `sluice new LANG DIR`)",
            dir.display()
        ))),
        _ => Err(BuildError::Manifest(format!(
            "several manifests with a [build] table in {}: {}",
            dir.display(),
            found
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Copies the manifest to `dst`, with relative `[[dir]] host` paths made
/// absolute (they are relative to the manifest's own folder).
fn copy_manifest(src: &Path, dst: &Path) -> Result<(), BuildError> {
    let fail = |e: String| BuildError::Failed(format!("cannot copy {}: {e}", src.display()));
    let text = std::fs::read_to_string(src).map_err(|e| fail(e.to_string()))?;
    let base = src.parent().unwrap_or(Path::new("."));
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let mut rewritten = false;
    if let Some(toml::Value::Array(dirs)) = table.get_mut("dir") {
        for d in dirs.iter_mut() {
            if let Some(toml::Value::String(host)) = d.get_mut("host")
                && Path::new(host.as_str()).is_relative()
            {
                *host = base.join(&*host).display().to_string();
                rewritten = true;
            }
        }
    }
    let text = if rewritten {
        toml::to_string(&table).map_err(|e| fail(e.to_string()))?
    } else {
        text
    };
    std::fs::write(dst, text).map_err(|e| fail(e.to_string()))
}

/// Expands `$VAR`, `${VAR}` and `${VAR:-default}` from the environment (an
/// unset or empty variable is the default, or empty).
pub fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, default, len) = if let Some(body) = rest.strip_prefix('{') {
            match body.find('}') {
                Some(end) => {
                    let inner = &body[..end];
                    match inner.split_once(":-") {
                        Some((n, d)) => (n, d, end + 2),
                        None => (inner, "", end + 2),
                    }
                }
                None => ("", "", 0),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], "", end)
        };
        if name.is_empty() {
            out.push('$');
            continue;
        }
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => out.push_str(&v),
            _ => out.push_str(default),
        }
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// Where tools are looked for: the installer's folders, then `PATH`.
#[derive(Debug, Clone)]
pub struct ToolDirs {
    /// `$SLUICE_CACHE`, default `~/.cache/sluice`.
    pub cache: PathBuf,
    /// `$CARGO_HOME/bin`, default `~/.cargo/bin`.
    pub cargo_bin: PathBuf,
    /// The inherited `PATH`.
    pub path: OsString,
}

impl ToolDirs {
    /// From the environment.
    pub fn from_env() -> ToolDirs {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let cache = std::env::var_os("SLUICE_CACHE")
            .filter(|c| !c.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache/sluice"));
        let cargo_bin = std::env::var_os("CARGO_HOME")
            .filter(|c| !c.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cargo"))
            .join("bin");
        ToolDirs {
            cache,
            cargo_bin,
            path: std::env::var_os("PATH").unwrap_or_default(),
        }
    }

    /// The installer's tool folders, in search order.
    fn installer_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.cache.join("venv/bin"),
            self.cache.join("node/node_modules/.bin"),
            self.cargo_bin.clone(),
        ]
    }

    /// The child's `PATH`: the installer's folders that exist, then `PATH`.
    pub fn path(&self) -> OsString {
        let dirs = self
            .installer_dirs()
            .into_iter()
            .filter(|d| d.is_dir())
            .chain(std::env::split_paths(&self.path));
        std::env::join_paths(dirs).unwrap_or_else(|_| self.path.clone())
    }

    /// The program `name` in the installer's folders or on `PATH`.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        self.installer_dirs()
            .into_iter()
            .chain(std::env::split_paths(&self.path))
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A toolchain piece named in `[build] requires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `cargo` (Rust, via rustup).
    Cargo,
    /// `wasm32-wasip2`: the Rust target installed in the active toolchain.
    WasmTarget,
    /// `componentize-py` (PyPI).
    ComponentizePy,
    /// `componentize-js` (npm).
    ComponentizeJs,
    /// `node`, Node.js >= 20.
    Node,
    /// `clang` (Debian).
    Clang,
    /// `wasm-ld` (Debian `lld`).
    WasmLd,
    /// `wasi-libc` (Debian; or `$WASI_SYSROOT`).
    WasiLibc,
    /// `wit-bindgen` (crates.io `wit-bindgen-cli`).
    WitBindgen,
    /// `wasm-tools` (crates.io).
    WasmTools,
    /// `wasi-adapter`: the WASI preview1 reactor adapter (`$WASI_ADAPTER`, or
    /// `$SLUICE_CACHE/wasi-adapter/VERSION/`).
    WasiAdapter,
    /// Any other program, looked up by name.
    Program(String),
}

impl Requirement {
    /// The requirement a `requires` entry names.
    pub fn parse(name: &str) -> Requirement {
        match name {
            "cargo" => Requirement::Cargo,
            "wasm32-wasip2" => Requirement::WasmTarget,
            "componentize-py" => Requirement::ComponentizePy,
            "componentize-js" => Requirement::ComponentizeJs,
            "node" => Requirement::Node,
            "clang" => Requirement::Clang,
            "wasm-ld" => Requirement::WasmLd,
            "wasi-libc" => Requirement::WasiLibc,
            "wit-bindgen" => Requirement::WitBindgen,
            "wasm-tools" => Requirement::WasmTools,
            "wasi-adapter" => Requirement::WasiAdapter,
            other => Requirement::Program(other.to_owned()),
        }
    }

    /// `Ok` when present, else one line: what is missing and how to install it.
    ///
    /// # Errors
    /// The advice line when the piece is missing.
    pub fn check(&self, tools: &ToolDirs) -> Result<(), String> {
        let cache = tools.cache.display();
        let program = |name: &str, advice: String| match tools.find(name) {
            Some(_) => Ok(()),
            None => Err(format!("{name} not found: {advice}")),
        };
        match self {
            Requirement::Cargo => program(
                "cargo",
                "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`".into(),
            ),
            Requirement::WasmTarget => {
                let sysroot = tools.find("rustc").and_then(|rustc| {
                    let out = Command::new(rustc)
                        .args(["--print", "sysroot"])
                        .env("PATH", tools.path())
                        .output()
                        .ok()?;
                    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
                });
                match sysroot {
                    Some(s) if s.join("lib/rustlib/wasm32-wasip2").is_dir() => Ok(()),
                    _ => Err("the Rust target wasm32-wasip2 is not installed: rustup target add wasm32-wasip2".into()),
                }
            }
            Requirement::ComponentizePy => program(
                "componentize-py",
                format!(
                    "run `.ci/install-polyglot python` in a Sluice checkout, or: python3 -m venv {cache}/venv && {cache}/venv/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION}"
                ),
            ),
            Requirement::ComponentizeJs => program(
                "componentize-js",
                format!(
                    "run `.ci/install-polyglot js` in a Sluice checkout, or: npm install --prefix {cache}/node @bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION} @bytecodealliance/jco@{JCO_VERSION}"
                ),
            ),
            Requirement::Node => program(
                "node",
                "install Node.js >= 20: apt-get install nodejs npm (or https://nodejs.org)".into(),
            ),
            Requirement::Clang => program(
                "clang",
                "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32 (or `.ci/install-polyglot c`)".into(),
            ),
            Requirement::WasmLd => program(
                "wasm-ld",
                "apt-get install lld (or `.ci/install-polyglot c`)".into(),
            ),
            Requirement::WasiLibc => {
                let libc = match std::env::var_os("WASI_SYSROOT") {
                    Some(s) => PathBuf::from(s).join("lib/wasm32-wasi/libc.a"),
                    None => PathBuf::from("/usr/lib/wasm32-wasi/libc.a"),
                };
                if libc.is_file() {
                    Ok(())
                } else {
                    Err(format!(
                        "wasi-libc not found ({}): apt-get install wasi-libc libclang-rt-dev-wasm32, or set WASI_SYSROOT",
                        libc.display()
                    ))
                }
            }
            Requirement::WitBindgen => program(
                "wit-bindgen",
                format!(
                    "cargo install --locked wit-bindgen-cli@{WIT_BINDGEN_CLI_VERSION} --no-default-features --features c (or `.ci/install-polyglot c`)"
                ),
            ),
            Requirement::WasmTools => program(
                "wasm-tools",
                format!(
                    "cargo install --locked wasm-tools@{WASM_TOOLS_VERSION} --no-default-features --features component (or `.ci/install-polyglot c`)"
                ),
            ),
            Requirement::WasiAdapter => {
                let adapter = std::env::var_os("WASI_ADAPTER")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        tools
                            .cache
                            .join("wasi-adapter")
                            .join(ADAPTER_VERSION)
                            .join("wasi_snapshot_preview1.reactor.wasm")
                    });
                if adapter.is_file() {
                    Ok(())
                } else {
                    Err(format!(
                        "the WASI preview1 reactor adapter {ADAPTER_VERSION} is missing ({}): run `.ci/install-polyglot c` in a Sluice checkout (it takes artefacts/wasi_snapshot_preview1.reactor.wasm from the crates.io crate wasi-preview1-component-adapter-provider {ADAPTER_VERSION}), or set WASI_ADAPTER",
                        adapter.display()
                    ))
                }
            }
            Requirement::Program(name) => {
                program(name, format!("install `{name}` (named in [build] requires)"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_with_defaults() {
        assert_eq!(
            expand("${SLUICE_TEST_UNSET_VAR:-target}/x.wasm"),
            "target/x.wasm"
        );
        assert_eq!(expand("a$SLUICE_TEST_UNSET_VAR/b"), "a/b");
        assert_eq!(expand("plain/path.wasm"), "plain/path.wasm");
        assert_eq!(expand("cost$"), "cost$");
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand("${HOME:-x}/y"), format!("{home}/y"));
    }

    #[test]
    fn a_missing_tool_names_what_to_install() {
        let tools = ToolDirs {
            cache: PathBuf::from("/nonexistent/cache"),
            cargo_bin: PathBuf::from("/nonexistent/cargo/bin"),
            path: OsString::new(),
        };
        let err = Requirement::parse("componentize-py")
            .check(&tools)
            .unwrap_err();
        assert!(err.contains("pip install componentize-py==0.25.1"), "{err}");
        assert!(err.contains(".ci/install-polyglot python"), "{err}");
        let err = Requirement::parse("wasm32-wasip2")
            .check(&tools)
            .unwrap_err();
        assert!(err.contains("rustup target add wasm32-wasip2"), "{err}");
        let err = Requirement::parse("make").check(&tools).unwrap_err();
        assert!(err.contains("make not found"), "{err}");
    }
}
