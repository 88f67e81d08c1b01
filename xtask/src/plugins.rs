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

/// A built plugin in `target/plugins/` or `target/test-plugins/`.
#[derive(Debug, Clone)]
pub struct BuiltPlugin {
    /// The folder name of the plugin crate.
    pub name: String,
    /// The component, `<out_dir>/<name>.wasm` (see [`out_dir`]).
    pub wasm: PathBuf,
    /// The manifest copied next to it, when the plugin has one.
    pub manifest: Option<PathBuf>,
}

/// The plugin folders under `plugins/` that exist for the tests and the
/// benchmark rather than as examples: built into `target/test-plugins/`, so
/// that `target/plugins/` (and the demo's worker) hold only the example
/// plugins. A name here whose folder does not exist is ignored.
pub const TEST_PLUGINS: &[&str] = &["burn-cpu", "misbehave", "noop"];

/// Which plugins a command builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The example plugins only (`cargo xtask demo`).
    Examples,
    /// The example and the test plugins.
    All,
}

impl Selection {
    /// Whether the plugin in folder `folder` is built.
    pub fn includes(self, folder: &str) -> bool {
        self == Selection::All || !is_test_plugin(folder)
    }
}

/// Whether `folder` is named in [`TEST_PLUGINS`].
pub fn is_test_plugin(folder: &str) -> bool {
    TEST_PLUGINS.contains(&folder)
}

/// Where the plugin of folder `folder` is built: `target/test-plugins/` for
/// a test plugin, else `target/plugins/`.
pub fn out_dir(root: &Path, folder: &str) -> PathBuf {
    target_dir(root).join(if is_test_plugin(folder) {
        "test-plugins"
    } else {
        "plugins"
    })
}

/// Builds the selected plugin crates under `<root>/plugins/` with one cargo
/// invocation and copies the components and their manifests to
/// [`out_dir`]; then builds the selected Python, JavaScript and C plugins
/// (skipping a language whose toolchain is not installed). Prints one line
/// per plugin. Fails when the wasm target is missing (see
/// [`crate::setup::ensure`], which installs it).
pub fn build(root: &Path, selection: Selection) -> Result<Vec<BuiltPlugin>> {
    let crates: Vec<PluginCrate> = discover(&root.join("plugins"))?
        .into_iter()
        .filter(|c| selection.includes(&c.folder))
        .collect();
    if crates.is_empty() {
        bail!(
            "no plugin crates (folders with a Cargo.toml) under {}",
            root.join("plugins").display()
        );
    }
    if !crate::setup::wasm_target_installed()? {
        bail!(
            "the Rust target {TARGET} is not installed in the active toolchain\n\
             install it with: rustup target add {TARGET}"
        );
    }
    remove_misplaced_test_plugins(root)?;

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

    let build_dir = target_dir(root).join(TARGET).join(PROFILE);
    let mut built = Vec::new();
    for c in &crates {
        let out_dir = out_dir(root, &c.folder);
        fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
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
    built.extend(crate::polyglot::build(root, selection)?);
    Ok(built)
}

/// Removes test plugins that an older `cargo xtask plugins` built into
/// `target/plugins/`, so the demo's worker does not load them.
fn remove_misplaced_test_plugins(root: &Path) -> Result<()> {
    let dir = target_dir(root).join("plugins");
    for name in TEST_PLUGINS {
        for ext in ["wasm", "toml"] {
            let path = dir.join(format!("{name}.{ext}"));
            if path.is_file() {
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
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
    fn test_plugins_build_apart_from_the_examples() {
        let root = Path::new("/r");
        assert!(out_dir(root, "noop").ends_with("test-plugins"));
        assert!(out_dir(root, "misbehave").ends_with("test-plugins"));
        assert!(out_dir(root, "burn-cpu").ends_with("test-plugins"));
        assert!(out_dir(root, "parse-log-file").ends_with("plugins"));
        assert!(Selection::Examples.includes("fetch-url"));
        assert!(!Selection::Examples.includes("noop"));
        assert!(Selection::Examples.includes("summarize-py"));
        assert!(Selection::All.includes("misbehave"));
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
        let fetch = crates.iter().find(|c| c.folder == "fetch-url").unwrap();
        assert_eq!(fetch.lib_name, "fetch_url");
    }
}
