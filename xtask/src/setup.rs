//! Set-up of a fresh machine for `cargo xtask demo` and `cargo xtask test`:
//! everything a command needs beyond Rust itself, installed once, each with a
//! one-line notice of what goes where.
//!
//! | need | installed with | into |
//! |------|----------------|------|
//! | the Rust target `wasm32-wasip2` | `rustup target add` | the active toolchain |
//! | `redis-server` | `apt-get install redis-server` (root, or sudo) | `/usr/bin` |
//! | the Python, JavaScript and C plugin toolchains, redis-py | `.ci/install-polyglot` | `$SLUICE_CACHE` (default `~/.cache/sluice`), `~/.cargo/bin`, Debian packages |
//!
//! [`ensure`] first checks every need and plans the installs; when one of
//! them cannot be done here (no `rustup`, no `apt-get`, neither root nor a
//! usable `sudo`) it stops **before doing any work** with the exact commands
//! to run. `.ci/install-polyglot` stays the one source of truth for the
//! polyglot toolchains and their pinned versions: its `--check` mode lists
//! what is missing (and the Debian packages it would install).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::plugins::TARGET;

/// What a command needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// The wasm target for the Rust plugins.
    pub wasm_target: bool,
    /// A `redis-server` binary (the e2e harness starts its own; the demo
    /// starts one when no Redis answers).
    pub redis_server: bool,
    /// The Python, JavaScript and C toolchains and redis-py.
    pub polyglot: bool,
}

/// One install step of the plan.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// `rustup target add wasm32-wasip2`.
    WasmTarget,
    /// `apt-get install` these Debian packages (with `sudo` when not root).
    Apt(Vec<String>),
    /// `.ci/install-polyglot`; the lines are what it reported missing.
    Polyglot(Vec<String>),
}

/// How `apt-get` can be run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apt {
    /// As root.
    Root,
    /// Through `sudo`.
    Sudo,
    /// Not at all: no `apt-get`, or neither root nor a usable `sudo`.
    Unusable,
}

/// Checks `needs`, then installs what is missing (one notice line each), or
/// fails before installing anything with the commands to run by hand.
pub fn ensure(root: &Path, needs: Needs) -> Result<()> {
    let mut plan = Vec::new();
    let mut manual = Vec::new();
    let apt = apt_access();
    let mut apt_packages: Vec<String> = Vec::new();

    if needs.wasm_target && !wasm_target_installed()? {
        if on_path("rustup").is_some() {
            plan.push(Step::WasmTarget);
        } else {
            manual.push(format!(
                "rustup target add {TARGET}    # needs rustup: https://rustup.rs (the Rust toolchain here has no rustup)"
            ));
        }
    }
    if needs.redis_server && on_path("redis-server").is_none() {
        apt_packages.push("redis-server".into());
    }
    let mut polyglot_missing = Vec::new();
    if needs.polyglot {
        let (missing, packages) = polyglot_check(root)?;
        polyglot_missing = missing;
        for p in packages {
            if !apt_packages.contains(&p) {
                apt_packages.push(p);
            }
        }
    }
    if !apt_packages.is_empty() {
        match apt {
            Apt::Root | Apt::Sudo => plan.push(Step::Apt(apt_packages.clone())),
            Apt::Unusable if on_path("apt-get").is_some() => manual.push(format!(
                "sudo apt-get install -y {}",
                apt_packages.join(" ")
            )),
            Apt::Unusable => manual.push(format!(
                "install with your package manager: {}  (Debian names; e.g. brew install redis for redis-server)",
                apt_packages.join(" ")
            )),
        }
    }
    if !polyglot_missing.is_empty() {
        plan.push(Step::Polyglot(polyglot_missing));
    }

    if !manual.is_empty() {
        let mut text = String::from(
            "this machine lacks what the command needs, and it cannot install it itself; run:\n",
        );
        for m in &manual {
            text.push_str("    ");
            text.push_str(m);
            text.push('\n');
        }
        text.push_str("then run the command again.");
        bail!(text);
    }

    for step in plan {
        run_step(root, &step, apt)?;
    }
    Ok(())
}

fn run_step(root: &Path, step: &Step, apt: Apt) -> Result<()> {
    match step {
        Step::WasmTarget => {
            println!(
                "setup: installing the Rust target {TARGET} (rustup target add {TARGET}, into {})",
                sysroot()?.display()
            );
            let status = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .context("cannot run rustup")?;
            anyhow::ensure!(
                status.success(),
                "rustup target add {TARGET} failed ({status})"
            );
            anyhow::ensure!(
                wasm_target_installed()?,
                "rustup target add {TARGET} succeeded, but the active toolchain still lacks it"
            );
        }
        Step::Apt(packages) => {
            let sudo = apt == Apt::Sudo;
            println!(
                "setup: installing {} (Debian packages, {}apt-get install, into /usr)",
                packages.join(" "),
                if sudo { "sudo " } else { "" }
            );
            let apt_get = |args: &[&str]| -> Result<()> {
                let mut cmd = if sudo {
                    let mut c = Command::new("sudo");
                    c.arg("apt-get");
                    c
                } else {
                    Command::new("apt-get")
                };
                cmd.args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdout(Stdio::null());
                let status = cmd.status().context("cannot run apt-get")?;
                anyhow::ensure!(
                    status.success(),
                    "apt-get {} failed ({status})",
                    args.join(" ")
                );
                Ok(())
            };
            apt_get(&["update", "-qq"])?;
            let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
            args.extend(packages.iter().map(String::as_str));
            apt_get(&args)?;
        }
        Step::Polyglot(missing) => {
            println!(
                "setup: installing the Python, JavaScript and C plugin toolchains and redis-py \
                 (.ci/install-polyglot, into {} and {}; first time only, minutes): {}",
                cache_dir().display(),
                cargo_bin().display(),
                missing.join("; ")
            );
            let status = Command::new(root.join(".ci/install-polyglot"))
                .current_dir(root)
                .status()
                .context("cannot run .ci/install-polyglot")?;
            anyhow::ensure!(status.success(), ".ci/install-polyglot failed ({status})");
        }
    }
    Ok(())
}

/// `.ci/install-polyglot --check`: (what is missing, Debian packages to install).
fn polyglot_check(root: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let script = root.join(".ci/install-polyglot");
    let out = Command::new(&script)
        .arg("--check")
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {} --check", script.display()))?;
    let (missing, packages) = parse_check(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() && missing.is_empty() && packages.is_empty() {
        bail!("{} --check failed ({})", script.display(), out.status);
    }
    Ok((missing, packages))
}

/// Parses `install-polyglot --check` output: `missing: WHAT` lines and one
/// `apt-get install PKG...` line.
fn parse_check(stdout: &str) -> (Vec<String>, Vec<String>) {
    let mut missing = Vec::new();
    let mut packages = Vec::new();
    for line in stdout.lines() {
        if let Some(what) = line.strip_prefix("missing: ") {
            if !what.ends_with("(Debian package)") {
                missing.push(what.trim().to_owned());
            }
        } else if let Some(list) = line.strip_prefix("apt-get install ") {
            packages.extend(list.split_whitespace().map(str::to_owned));
        }
    }
    (missing, packages)
}

/// Whether the active toolchain has the standard library for [`TARGET`].
pub fn wasm_target_installed() -> Result<bool> {
    Ok(sysroot()?.join("lib").join("rustlib").join(TARGET).is_dir())
}

/// `rustc --print sysroot` of the active toolchain.
fn sysroot() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("cannot run {}", rustc.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Root runs `apt-get` itself; otherwise `sudo` must exist and either not
/// ask for a password or have a terminal to ask on.
fn apt_access() -> Apt {
    if on_path("apt-get").is_none() {
        return Apt::Unusable;
    }
    if is_root() {
        return Apt::Root;
    }
    if on_path("sudo").is_none() {
        return Apt::Unusable;
    }
    let passwordless = Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if passwordless || std::io::stdin().is_terminal() {
        Apt::Sudo
    } else {
        Apt::Unusable
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `name` on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `$SLUICE_CACHE`, else `~/.cache/sluice`: where `.ci/install-polyglot`
/// puts the Python venv, the npm packages and the WASI adapter.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("sluice")
}

/// `$CARGO_HOME/bin`, else `~/.cargo/bin`: where `cargo install` puts tools.
pub fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default()
        .join("bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_check_output() {
        let out = "missing: componentize-py 0.25.1 (pip, into /c/venv)\n\
                   missing: clang (Debian package)\n\
                   missing: lld (Debian package)\n\
                   apt-get install clang lld\n";
        let (missing, packages) = parse_check(out);
        assert_eq!(missing, ["componentize-py 0.25.1 (pip, into /c/venv)"]);
        assert_eq!(packages, ["clang", "lld"]);
        assert_eq!(parse_check(""), (vec![], vec![]));
    }

    #[test]
    fn the_check_mode_installs_nothing_into_an_empty_cache() {
        let cache = std::env::temp_dir().join(format!("xtask-setup-{}", std::process::id()));
        let out = Command::new(crate::workspace_root().join(".ci/install-polyglot"))
            .arg("--check")
            .env("SLUICE_CACHE", &cache)
            .output()
            .unwrap();
        assert!(!out.status.success(), "an empty cache lacks the toolchains");
        let (missing, _) = parse_check(&String::from_utf8_lossy(&out.stdout));
        assert!(
            missing.iter().any(|m| m.starts_with("componentize-py")),
            "{missing:?}"
        );
        assert!(!cache.exists(), "--check created {}", cache.display());
    }
}
