//! Plugins written in other languages than Rust, built by `cargo xtask
//! plugins` with their own toolchains (installed by `.ci/install-polyglot`).
//!
//! A folder under `plugins/` without a `Cargo.toml` is a plugin of the
//! language its entry file names:
//!
//! | entry      | language   | toolchain |
//! |------------|------------|-----------|
//! | `app.py`   | Python     | `componentize-py` (PyPI) |
//! | `app.js`   | JavaScript | `componentize-js` (npm `@bytecodealliance/componentize-js`) |
//! | `*.c`      | C          | `clang` for `wasm32-wasi` with wasi-libc, `wit-bindgen c`, `wasm-tools component new` + the WASI preview1 reactor adapter |
//!
//! Each builds `target/plugins/<folder>.wasm` (and copies `<folder>.toml`
//! when the folder has one). A language whose toolchain is missing is skipped
//! with a line saying so; a failing build is an error. A plugin is rebuilt
//! only when a file of its folder, the WIT contract or the tool is newer than
//! its component.
//!
//! The component targets the world `sluice:plugin/plugin@0.1.0`
//! (`guest-sdk/wit`), unless the folder has a `wit/` folder of its own: its
//! world may `include sluice:plugin/plugin@0.1.0` and import WASI interfaces
//! (e.g. `wasi:filesystem/preopens` for a JavaScript plugin, whose engine
//! has no file API); the build assembles it with the contract and the WASI
//! WIT packages that ship with the JavaScript toolchain.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::plugins::{BuiltPlugin, Selection};
use crate::setup::{cache_dir, cargo_bin, on_path};

/// Version of the WASI preview1 adapter (the host's wasmtime version), as
/// installed by `.ci/install-polyglot` under `$SLUICE_CACHE/wasi-adapter/`.
const ADAPTER_VERSION: &str = "48.0.8";

/// The WASI 0.2 WIT packages assembled for plugins with a `wit/` folder:
/// the version of jco's built-in WIT that componentize-js ships with.
const WASI_WIT_VERSION: &str = "0.2.12";

/// The world of the Sluice contract.
const CONTRACT_WORLD: &str = "plugin";

/// A non-Rust plugin folder.
#[derive(Debug)]
struct Polyglot {
    folder: String,
    dir: PathBuf,
    language: Language,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Python,
    JavaScript,
    C,
}

/// The result of building one plugin.
enum Outcome {
    Built(BuiltPlugin, String),
    Skipped(String),
}

/// Builds the selected non-Rust plugins under `<root>/plugins/` into their
/// [`crate::plugins::out_dir`], printing one line per plugin.
pub fn build(root: &Path, selection: Selection) -> Result<Vec<BuiltPlugin>> {
    let mut built = Vec::new();
    for p in discover(&root.join("plugins"))? {
        if !selection.includes(&p.folder) {
            continue;
        }
        let out_dir = crate::plugins::out_dir(root, &p.folder);
        fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let work = crate::plugins::target_dir(root)
            .join("polyglot")
            .join(&p.folder);
        let wasm = out_dir.join(format!("{}.wasm", p.folder));
        let outcome = match p.language {
            Language::Python => build_python(root, &p, &work, &wasm),
            Language::JavaScript => build_js(root, &p, &work, &wasm),
            Language::C => build_c(root, &p, &work, &wasm),
        }
        .with_context(|| format!("building plugins/{} failed", p.folder))?;
        match outcome {
            Outcome::Built(plugin, tool) => {
                let size = fs::metadata(&plugin.wasm)?.len();
                let manifest = match &plugin.manifest {
                    Some(m) => format!(" + {}", relative(root, m).display()),
                    None => String::new(),
                };
                println!(
                    "{:<18} {:>10}  {}{manifest}  ({tool})",
                    plugin.name,
                    crate::plugins::human_size(size),
                    relative(root, &plugin.wasm).display(),
                );
                built.push(plugin);
            }
            Outcome::Skipped(why) => {
                println!(
                    "{:<18} skipped: {why} — `cargo xtask test` installs it (or run .ci/install-polyglot)",
                    p.folder
                );
            }
        }
    }
    Ok(built)
}

/// Folders under `plugins_dir` without a `Cargo.toml` whose entry file names
/// a language, sorted by name.
fn discover(plugins_dir: &Path) -> Result<Vec<Polyglot>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(plugins_dir)
        .with_context(|| format!("cannot list {}", plugins_dir.display()))?
    {
        let dir = entry?.path();
        if !dir.is_dir() || dir.join("Cargo.toml").is_file() {
            continue;
        }
        let Some(folder) = dir.file_name().and_then(OsStr::to_str).map(str::to_owned) else {
            continue;
        };
        let language = if dir.join("app.py").is_file() {
            Language::Python
        } else if dir.join("app.js").is_file() {
            Language::JavaScript
        } else if !c_sources(&dir)?.is_empty() {
            Language::C
        } else {
            continue;
        };
        found.push(Polyglot {
            folder,
            dir,
            language,
        });
    }
    found.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(found)
}

/// `candidate` if it is a file, else `name` on `PATH`.
fn find_tool(candidates: &[PathBuf], name: &str) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .or_else(|| on_path(name))
}

/// Runs `cmd`, failing with its output when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The first line a tool prints for `--version`.
fn version(tool: &Path, arg: &str) -> String {
    Command::new(tool)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines().next().map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| tool.display().to_string())
}

/// Whether `output` exists and is newer than every file of `inputs`
/// (folders are walked, skipping `__pycache__` and `node_modules`).
fn up_to_date(output: &Path, inputs: &[&Path]) -> bool {
    let Ok(built) = fs::metadata(output).and_then(|m| m.modified()) else {
        return false;
    };
    fn newest(path: &Path) -> SystemTime {
        let Ok(meta) = fs::metadata(path) else {
            return SystemTime::UNIX_EPOCH;
        };
        if !meta.is_dir() {
            return meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        }
        let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
        if name == "__pycache__" || name == "node_modules" {
            return SystemTime::UNIX_EPOCH;
        }
        fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| newest(&e.path()))
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
    inputs.iter().all(|i| newest(i) < built)
}

/// Copies `<folder>.toml` next to the component when the folder has one.
fn copy_manifest(p: &Polyglot, wasm: &Path) -> Result<Option<PathBuf>> {
    let src = p.dir.join(format!("{}.toml", p.folder));
    if !src.is_file() {
        return Ok(None);
    }
    let dst = wasm.with_extension("toml");
    fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
    Ok(Some(dst))
}

fn built(p: &Polyglot, wasm: &Path, tool: String) -> Result<Outcome> {
    Ok(Outcome::Built(
        BuiltPlugin {
            name: p.folder.clone(),
            wasm: wasm.to_owned(),
            manifest: copy_manifest(p, wasm)?,
        },
        tool,
    ))
}

/// The WIT folder and world a plugin is built against: the contract in
/// `guest-sdk/wit`, or the plugin's own `wit/` assembled under `work` with
/// the contract and the WASI packages from `wasi_wit` as dependencies.
fn wit_for(
    root: &Path,
    p: &Polyglot,
    work: &Path,
    wasi_wit: Option<&Path>,
) -> Result<(PathBuf, String)> {
    let own = p.dir.join("wit");
    let contract = root.join("guest-sdk").join("wit");
    if !own.is_dir() {
        return Ok((contract, CONTRACT_WORLD.to_owned()));
    }
    let wit = work.join("wit");
    let _ = fs::remove_dir_all(&wit);
    let deps = wit.join("deps");
    fs::create_dir_all(&deps)?;
    let mut world = None;
    for entry in fs::read_dir(&own)? {
        let path = entry?.path();
        if path.extension() != Some(OsStr::new("wit")) {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        if world.is_none() {
            world = text.lines().find_map(|l| {
                let rest = l.trim().strip_prefix("world ")?;
                Some(rest.trim_end_matches('{').trim().to_owned())
            });
        }
        fs::copy(&path, wit.join(path.file_name().expect("a file")))?;
    }
    let world = world.with_context(|| format!("no `world` in {}/*.wit", own.display()))?;
    let plugin_dep = deps.join("sluice-plugin");
    fs::create_dir_all(&plugin_dep)?;
    for entry in fs::read_dir(&contract)? {
        let path = entry?.path();
        if path.extension() == Some(OsStr::new("wit")) {
            fs::copy(&path, plugin_dep.join(path.file_name().expect("a file")))?;
        }
    }
    if let Some(wasi) = wasi_wit {
        for package in ["wasi-io", "wasi-clocks", "wasi-filesystem"] {
            let dst = deps.join(package);
            fs::create_dir_all(&dst)?;
            fs::copy(
                wasi.join(package).join("package.wit"),
                dst.join("package.wit"),
            )
            .with_context(|| format!("no WASI WIT package {package} in {}", wasi.display()))?;
        }
    }
    Ok((wit, world))
}

// ---------------------------------------------------------------- Python

fn build_python(root: &Path, p: &Polyglot, work: &Path, wasm: &Path) -> Result<Outcome> {
    let Some(tool) = find_tool(
        &[cache_dir().join("venv/bin/componentize-py")],
        "componentize-py",
    ) else {
        return Ok(Outcome::Skipped("componentize-py not found".into()));
    };
    let tool_version = version(&tool, "--version");
    let contract = root.join("guest-sdk").join("wit");
    if up_to_date(wasm, &[&p.dir, &contract, &tool]) {
        return built(p, wasm, format!("{tool_version}, up to date"));
    }
    fs::create_dir_all(work)?;
    let (wit, world) = wit_for(root, p, work, None)?;
    let tmp = work.join("component.wasm");
    // componentize-py imports the module at build time (it leaves a
    // `__pycache__` there, which git ignores) and snapshots its state.
    run(Command::new(&tool)
        .arg("-d")
        .arg(&wit)
        .args(["-w", &world, "componentize", "-p"])
        .arg(&p.dir)
        .args(["app", "-o"])
        .arg(&tmp))?;
    fs::rename(&tmp, wasm)?;
    built(p, wasm, tool_version)
}

// ---------------------------------------------------------------- JavaScript

fn build_js(root: &Path, p: &Polyglot, work: &Path, wasm: &Path) -> Result<Outcome> {
    let node_modules = cache_dir().join("node").join("node_modules");
    let Some(tool) = find_tool(
        &[node_modules.join(".bin/componentize-js")],
        "componentize-js",
    ) else {
        return Ok(Outcome::Skipped("componentize-js not found".into()));
    };
    if on_path("node").is_none() {
        return Ok(Outcome::Skipped("node not found".into()));
    }
    // The package folder next to the `.bin` link (the tool may be on PATH).
    let modules = tool
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or(node_modules);
    let tool_version =
        fs::read_to_string(modules.join("@bytecodealliance/componentize-js/package.json"))
            .ok()
            .and_then(|t| {
                let v: serde_json::Value = serde_json::from_str(&t).ok()?;
                Some(format!("componentize-js {}", v["version"].as_str()?))
            })
            .unwrap_or_else(|| "componentize-js".into());
    let contract = root.join("guest-sdk").join("wit");
    if up_to_date(wasm, &[&p.dir, &contract, &tool]) {
        return built(p, wasm, format!("{tool_version}, up to date"));
    }
    let wasi_wit = modules
        .join("@bytecodealliance/jco/lib/wit/builtin")
        .join(WASI_WIT_VERSION);
    if p.dir.join("wit").is_dir() && !wasi_wit.is_dir() {
        bail!(
            "{} is missing: the WASI WIT packages come with @bytecodealliance/jco (run .ci/install-polyglot)",
            wasi_wit.display()
        );
    }
    fs::create_dir_all(work)?;
    let (wit, world) = wit_for(root, p, work, Some(&wasi_wit))?;
    let tmp = work.join("component.wasm");
    // No wasi:http (the host does not provide it): no `fetch`.
    run(Command::new(&tool)
        .args(["--disable", "http", "fetch-event"])
        .arg("--wit")
        .arg(&wit)
        .args(["--world-name", &world, "-o"])
        .arg(&tmp)
        .arg(p.dir.join("app.js")))?;
    fs::rename(&tmp, wasm)?;
    built(p, wasm, tool_version)
}

// ---------------------------------------------------------------- C

fn c_sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension() == Some(OsStr::new("c")) && path.is_file() {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

fn build_c(root: &Path, p: &Polyglot, work: &Path, wasm: &Path) -> Result<Outcome> {
    let Some(clang) = find_tool(&[], "clang") else {
        return Ok(Outcome::Skipped("clang not found".into()));
    };
    if on_path("wasm-ld").is_none() {
        return Ok(Outcome::Skipped("wasm-ld (lld) not found".into()));
    }
    let sysroot = std::env::var_os("WASI_SYSROOT").map(PathBuf::from);
    let has_libc = match &sysroot {
        Some(s) => s.join("lib/wasm32-wasi/libc.a").is_file(),
        None => Path::new("/usr/lib/wasm32-wasi/libc.a").is_file(),
    };
    if !has_libc {
        return Ok(Outcome::Skipped(
            "wasi-libc not found (Debian package wasi-libc, or set WASI_SYSROOT)".into(),
        ));
    }
    let Some(wit_bindgen) = find_tool(&[cargo_bin().join("wit-bindgen")], "wit-bindgen") else {
        return Ok(Outcome::Skipped("wit-bindgen not found".into()));
    };
    let Some(wasm_tools) = find_tool(&[cargo_bin().join("wasm-tools")], "wasm-tools") else {
        return Ok(Outcome::Skipped("wasm-tools not found".into()));
    };
    let adapter = cache_dir()
        .join("wasi-adapter")
        .join(ADAPTER_VERSION)
        .join("wasi_snapshot_preview1.reactor.wasm");
    if !adapter.is_file() {
        return Ok(Outcome::Skipped(format!(
            "the WASI preview1 reactor adapter {ADAPTER_VERSION} not found ({})",
            adapter.display()
        )));
    }
    let tools = format!(
        "{}, {}, {}",
        version(&clang, "--version"),
        version(&wit_bindgen, "--version"),
        version(&wasm_tools, "--version")
    );
    let contract = root.join("guest-sdk").join("wit");
    if up_to_date(
        wasm,
        &[
            &p.dir,
            &contract,
            &clang,
            &wit_bindgen,
            &wasm_tools,
            &adapter,
        ],
    ) {
        return built(p, wasm, format!("{tools}, up to date"));
    }
    let (wit, world) = wit_for(root, p, work, None)?;

    // 1. C bindings for the world: <world>.h, <world>.c, <world>_component_type.o.
    let bindings = work.join("bindings");
    let _ = fs::remove_dir_all(&bindings);
    fs::create_dir_all(&bindings)?;
    run(Command::new(&wit_bindgen)
        .arg("c")
        .arg(&wit)
        .args(["--world", &world, "--out-dir"])
        .arg(&bindings))?;

    // 2. A WASI preview1 reactor module (no `main`; exports called by the host).
    let core = work.join("core.wasm");
    let mut cc = Command::new(&clang);
    cc.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-std=c11",
    ])
    .args(["-Wall", "-Wextra", "-Wl,--strip-debug"]);
    if let Some(s) = &sysroot {
        cc.arg(format!("--sysroot={}", s.display()));
    }
    cc.arg("-I")
        .arg(&bindings)
        .args(c_sources(&p.dir)?)
        .arg(bindings.join(format!("{world}.c")))
        .arg(bindings.join(format!("{world}_component_type.o")))
        .arg("-o")
        .arg(&core);
    run(&mut cc)?;

    // 3. The component: the module's preview1 imports adapted to WASI 0.2.
    let tmp = work.join("component.wasm");
    run(Command::new(&wasm_tools)
        .args(["component", "new"])
        .arg(&core)
        .arg("--adapt")
        .arg(format!("wasi_snapshot_preview1={}", adapter.display()))
        .arg("-o")
        .arg(&tmp))?;
    fs::rename(&tmp, wasm)?;
    built(p, wasm, tools)
}

fn relative<'a>(root: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_the_polyglot_plugins() {
        let found = discover(&crate::workspace_root().join("plugins")).unwrap();
        let language = |folder: &str| {
            found
                .iter()
                .find(|p| p.folder == folder)
                .map(|p| p.language)
        };
        assert_eq!(language("summarize-py"), Some(Language::Python));
        assert_eq!(language("render-template-js"), Some(Language::JavaScript));
        assert_eq!(language("checksum-c"), Some(Language::C));
        assert_eq!(
            language("parse-log-file"),
            None,
            "Rust crates are not polyglot"
        );
    }

    #[test]
    fn up_to_date_compares_modification_times() {
        let dir = std::env::temp_dir().join(format!("xtask-polyglot-{}", std::process::id()));
        fs::create_dir_all(dir.join("src")).unwrap();
        let out = dir.join("out.wasm");
        assert!(!up_to_date(&out, &[&dir.join("src")]), "no output yet");
        fs::write(dir.join("src/a.py"), "x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&out, "w").unwrap();
        assert!(up_to_date(&out, &[&dir.join("src")]));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.join("src/a.py"), "y").unwrap();
        assert!(!up_to_date(&out, &[&dir.join("src")]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
