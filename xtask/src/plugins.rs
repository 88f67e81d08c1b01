//! `cargo xtask plugins`: build the plugins as WASI 0.2 components: the Rust
//! crates with cargo, then the plugins in other languages with their own
//! toolchains (see [`crate::polyglot`]).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The wasm target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The cargo profile plugins are built with (defined in the root `Cargo.toml`).
pub const PROFILE: &str = "plugin";

/// A Rust plugin crate found under `plugins/`.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    /// The folder name, e.g. `parse-log-file`; also the output file stem.
    pub folder: String,
    /// The folder's path.
    pub dir: PathBuf,
    /// The cargo package name.
    pub package: String,
    /// The library target name (the `.wasm` file stem cargo writes).
    pub lib_name: String,
}

/// A built plugin in `target/plugins/`.
#[derive(Debug, Clone)]
pub struct BuiltPlugin {
    /// The folder name of the plugin crate.
    pub name: String,
    /// The component, `target/plugins/<name>.wasm`.
    pub wasm: PathBuf,
    /// The manifest copied next to it, when the plugin has one.
    pub manifest: Option<PathBuf>,
}

/// Builds every plugin crate under `<root>/plugins/` with one cargo
/// invocation, then copies the components and their manifests to
/// `target/plugins/`; then builds the Python, JavaScript and C plugins
/// (skipping a language whose toolchain is not installed). Prints one line
/// per plugin.
pub fn build(root: &Path) -> Result<Vec<BuiltPlugin>> {
    let crates = discover(&root.join("plugins"))?;
    if crates.is_empty() {
        bail!(
            "no plugin crates (folders with a Cargo.toml) under {}",
            root.join("plugins").display()
        );
    }
    check_target_installed()?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args(["build", "--target", TARGET, "--profile", PROFILE]);
    for c in &crates {
        cmd.args(["-p", &c.package]);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("building the plugins failed ({status})");
    }

    let target_dir = target_dir(root);
    let build_dir = target_dir.join(TARGET).join(PROFILE);
    let out_dir = target_dir.join("plugins");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;

    let mut built = Vec::new();
    for c in &crates {
        let src = build_dir.join(format!("{}.wasm", c.lib_name));
        let wasm = out_dir.join(format!("{}.wasm", c.folder));
        fs::copy(&src, &wasm).with_context(|| {
            format!(
                "cannot copy {} to {} (is `{}` a cdylib?)",
                src.display(),
                wasm.display(),
                c.package
            )
        })?;
        let manifest_src = c.dir.join(format!("{}.toml", c.folder));
        let manifest = if manifest_src.is_file() {
            let dst = out_dir.join(format!("{}.toml", c.folder));
            fs::copy(&manifest_src, &dst)
                .with_context(|| format!("cannot copy {}", manifest_src.display()))?;
            Some(dst)
        } else {
            None
        };
        built.push(BuiltPlugin {
            name: c.folder.clone(),
            wasm,
            manifest,
        });
    }

    for p in &built {
        let size = fs::metadata(&p.wasm)
            .with_context(|| format!("cannot stat {}", p.wasm.display()))?
            .len();
        let manifest = match &p.manifest {
            Some(m) => format!(" + {}", relative(root, m).display()),
            None => String::new(),
        };
        println!(
            "{:<18} {:>10}  {}{manifest}",
            p.name,
            human_size(size),
            relative(root, &p.wasm).display(),
        );
    }
    built.extend(crate::polyglot::build(root, &out_dir)?);
    Ok(built)
}

/// The plugin crates: every direct subfolder of `plugins_dir` that has a
/// `Cargo.toml`, sorted by folder name.
pub fn discover(plugins_dir: &Path) -> Result<Vec<PluginCrate>> {
    let entries = fs::read_dir(plugins_dir)
        .with_context(|| format!("cannot list {}", plugins_dir.display()))?;
    let mut crates = Vec::new();
    for entry in entries {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let folder = dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("plugin folder name is not UTF-8: {}", dir.display()))?
            .to_string();
        let text = fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let package = table_string(&text, "package", "name")
            .with_context(|| format!("no [package] name in {}", manifest.display()))?;
        let lib_name =
            table_string(&text, "lib", "name").unwrap_or_else(|| package.replace('-', "_"));
        crates.push(PluginCrate {
            folder,
            dir,
            package,
            lib_name,
        });
    }
    crates.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(crates)
}

/// `key = "value"` in `[table]` of a Cargo.toml: enough for the simple
/// manifests of plugin crates, without a TOML parser.
fn table_string(text: &str, table: &str, key: &str) -> Option<String> {
    let header = format!("[{table}]");
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == header;
            continue;
        }
        if !in_table {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.trim();
            return v
                .strip_prefix('"')
                .and_then(|v| v.split_once('"'))
                .map(|(v, _)| v.to_string());
        }
    }
    None
}

/// Fails with advice when the Rust standard library for [`TARGET`] is
/// missing from the active toolchain.
fn check_target_installed() -> Result<()> {
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
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !sysroot.join("lib").join("rustlib").join(TARGET).is_dir() {
        bail!(
            "the Rust target {TARGET} is not installed in {}\n\
             install it with: rustup target add {TARGET}",
            sysroot.display()
        );
    }
    Ok(())
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace
/// root) or `<root>/target`.
/// The cargo target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

fn relative<'a>(root: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_package_and_lib_names() {
        let text = "[package]\nname = \"parse-log-file\" # c\nversion.workspace = true\n\n\
                    [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nname = \"x\"\n";
        assert_eq!(
            table_string(text, "package", "name").as_deref(),
            Some("parse-log-file")
        );
        assert_eq!(table_string(text, "lib", "name"), None);
        assert_eq!(
            table_string("[lib]\nname = \"plug\"\n", "lib", "name").as_deref(),
            Some("plug")
        );
    }

    #[test]
    fn discovers_the_workspace_plugins() {
        let crates = discover(&crate::workspace_root().join("plugins")).unwrap();
        let noop = crates.iter().find(|c| c.folder == "noop").unwrap();
        assert_eq!(noop.package, "noop");
        let parse = crates
            .iter()
            .find(|c| c.folder == "parse-log-file")
            .unwrap();
        assert_eq!(parse.lib_name, "parse_log_file");
    }
}
