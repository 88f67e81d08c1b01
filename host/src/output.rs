//! The output format of the inspecting commands (`result`, `stats`,
//! `dead list`, `dead show`, `plugins`, `plugin check`): `-o table` (the
//! default; `text` is an alias) for people, `-o json` / `--output json` for
//! scripts, as `kubectl -o json` or `gh --json`.
//!
//! JSON output is one document on stdout, stable across releases (fields
//! are only ever added):
//! - `result ID`: the result record, on one line;
//! - `stats`: one object (with `--config` and tenants: one object per
//!   tenant, one per line); `stats --json` is an alias;
//! - `dead list`: an array of dead letters, newest first;
//! - `dead show ID`: the dead letter, on one line;
//! - `plugins`: an array of [`PluginInfo`];
//! - `plugin check FILE`: a [`PluginInfo`] with `ok: true`, `world` and
//!   `compile_ms`; or, when the component does not fit,
//!   `{"ok": false, "file": …, "error": …}` (exit status 1).

use std::path::PathBuf;

use serde::Serialize;

use crate::manifest::DirMode;
use crate::sandbox::Plugin;

/// An output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text for people (`text` is an alias).
    #[default]
    #[value(alias = "text")]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// The `-o FORMAT` / `--output FORMAT` flag.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format: table (default; alias text) or json.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value_t,
        global = true
    )]
    pub output: Format,
}

impl OutputArgs {
    /// Whether JSON was asked for.
    pub fn json(&self) -> bool {
        self.output == Format::Json
    }
}

/// What `sluice plugins` and `sluice plugin check` show about a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's name (the file stem).
    pub name: String,
    /// The component file.
    pub file: PathBuf,
    /// Its size, bytes.
    pub size_bytes: u64,
    /// The manifest's `version`, if any.
    pub version: Option<String>,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The task types it handles.
    pub task_types: Vec<String>,
    /// Limits per task.
    pub limits: Limits,
    /// Tasks one instance may run (`instance_reuse`; 1 = a fresh instance per task).
    pub instance_reuse: u32,
    /// Capabilities granted by the manifest.
    pub grants: Grants,
}

/// A plugin's limits per task.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Wall-clock limit, ms.
    pub timeout_ms: u64,
    /// Linear-memory limit, bytes.
    pub memory_bytes: u64,
    /// Largest result, bytes; `null` means the worker's `--max-result-bytes`.
    pub max_result_bytes: Option<u64>,
    /// `log` calls kept per task.
    pub max_log_lines: u32,
    /// Bytes of `log` messages kept per task.
    pub max_log_bytes: u64,
}

/// A plugin's capabilities.
#[derive(Debug, Clone, Serialize)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirInfo>,
    /// Host environment variables passed through when set.
    pub inherit_env: Vec<String>,
    /// Names of the fixed environment variables (values are not shown).
    pub env: Vec<String>,
}

/// One preopened directory.
#[derive(Debug, Clone, Serialize)]
pub struct DirInfo {
    /// Host path.
    pub host: PathBuf,
    /// Path the plugin sees.
    pub guest: String,
    /// `read-only` or `read-write`.
    pub mode: &'static str,
}

impl PluginInfo {
    /// The description of a loaded plugin.
    pub fn of(plugin: &Plugin) -> PluginInfo {
        let m = plugin.manifest();
        PluginInfo {
            name: plugin.name().to_owned(),
            file: plugin.path().to_owned(),
            size_bytes: plugin.size(),
            version: m.version.clone(),
            sha256: plugin.sha256().to_owned(),
            task_types: plugin.task_types().to_vec(),
            limits: Limits {
                timeout_ms: m.timeout_ms,
                memory_bytes: m.memory_bytes,
                max_result_bytes: m.max_result_bytes,
                max_log_lines: m.max_log_lines,
                max_log_bytes: m.max_log_bytes,
            },
            instance_reuse: m.instance_reuse,
            grants: Grants {
                dirs: m
                    .dirs
                    .iter()
                    .map(|d| DirInfo {
                        host: d.host.clone(),
                        guest: d.guest.clone(),
                        mode: match d.mode {
                            DirMode::ReadOnly => "read-only",
                            DirMode::ReadWrite => "read-write",
                        },
                    })
                    .collect(),
                inherit_env: m.inherit_env.clone(),
                env: m.env.keys().cloned().collect(),
            },
        }
    }

    /// The table form: one `label  value` line per field.
    pub fn table(&self) -> String {
        let l = &self.limits;
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("{label:<12}{value}\n"));
        };
        line("plugin", self.name.clone());
        line(
            "file",
            format!("{} ({} bytes)", self.file.display(), self.size_bytes),
        );
        line(
            "version",
            self.version.clone().unwrap_or_else(|| "-".into()),
        );
        line("sha256", self.sha256.clone());
        line("task types", self.task_types.join(", "));
        line(
            "limits",
            format!(
                "timeout {} ms, memory {} bytes, result {}, log {} lines / {} bytes per task",
                l.timeout_ms,
                l.memory_bytes,
                l.max_result_bytes
                    .map_or("the worker's --max-result-bytes".to_owned(), |b| format!(
                        "{b} bytes"
                    )),
                l.max_log_lines,
                l.max_log_bytes
            ),
        );
        line(
            "instances",
            match self.instance_reuse {
                1 => "a fresh instance per task".to_owned(),
                n => format!(
                    "reused for up to {n} tasks (instance_reuse; shares state between tasks)"
                ),
            },
        );
        let g = &self.grants;
        let mut caps: Vec<String> = g
            .dirs
            .iter()
            .map(|d| {
                let mode = if d.mode == "read-only" {
                    "ReadOnly"
                } else {
                    "ReadWrite"
                };
                format!("dir {} -> {} ({mode})", d.host.display(), d.guest)
            })
            .collect();
        caps.extend(g.inherit_env.iter().map(|v| format!("env {v} (inherited)")));
        caps.extend(g.env.iter().map(|v| format!("env {v}")));
        if caps.is_empty() {
            caps.push("none (no filesystem, no environment, no network)".into());
        }
        line("grants", caps.join("; "));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        output: OutputArgs,
    }

    #[test]
    fn table_is_the_default_text_an_alias_and_json_the_other() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
                .map(|c| c.output.output)
        };
        assert_eq!(parse(&[]).unwrap(), Format::Table);
        assert_eq!(parse(&["-o", "text"]).unwrap(), Format::Table);
        assert_eq!(parse(&["-o", "json"]).unwrap(), Format::Json);
        assert_eq!(parse(&["--output", "json"]).unwrap(), Format::Json);
        assert!(parse(&["-o", "yaml"]).is_err());
    }
}
