//! `sluice run`: one task, run locally in the real sandbox, without Redis —
//! a plugin author's inner loop (as `spin up` or `wash call` are for theirs).
//!
//! ```text
//! sluice run COMPONENT --task-type T [--params JSON | --params-file F] [--manifest FILE]
//! ```
//!
//! The component is loaded exactly as a worker loads it ([`Plugin::load`]:
//! same engine, limits and WASI grants, from `NAME.toml` beside it or from
//! `--manifest`), the task runs once (attempt 1, no retry), and the result
//! record — the JSON a worker would store under `{Q}:result:<id>`, with
//! `worker` set to `"local"` — is printed on stdout. Exit status
//! ([`ExitCode`]): 0 when the task succeeded, 1 when it failed, 2 for a usage
//! or load error (message on stderr).

use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use crate::record::{ErrorInfo, ResultRecord, Status, now_ms};
use crate::sandbox::{CancelToken, Plugin, Sandbox, SandboxConfig, TaskInput, TaskLimits};

/// The arguments of `sluice run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The plugin component (`NAME.wasm`); its manifest `NAME.toml` beside it
    /// applies unless `--manifest` names another.
    pub component: PathBuf,
    /// The task type to run (one the component claims).
    #[arg(long)]
    pub task_type: String,
    /// The task's `params`, JSON text (default `{}`).
    #[arg(long, conflicts_with = "params_file")]
    pub params: Option<String>,
    /// A file holding the task's `params` as JSON.
    #[arg(long)]
    pub params_file: Option<PathBuf>,
    /// The manifest to run with instead of the `NAME.toml` beside the
    /// component (relative `[[dir]] host` paths resolve against its folder).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

/// The exit status of `sluice run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The task succeeded (0).
    Succeeded = 0,
    /// The task failed: the record's `error` says how (1).
    TaskFailed = 1,
    /// Bad arguments, unreadable params, or a component or manifest that
    /// does not load (2).
    Usage = 2,
}

/// Why `sluice run` could not run the task at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// `--params` or the `--params-file` content is not JSON.
    #[error("params are not valid JSON: {0}")]
    BadParams(serde_json::Error),
    /// `--params-file` cannot be read.
    #[error("cannot read the params file {path}: {source}")]
    ParamsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest given with `--manifest` cannot be read or is invalid.
    #[error("cannot use the manifest {path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The component does not load (not a component, wrong world, bad
    /// manifest beside it…).
    #[error("{0}")]
    Load(String),
    /// The component does not claim the task type.
    #[error("{component} does not handle task type {task_type:?}; it handles: {claimed}")]
    UnknownTaskType {
        /// The component file.
        component: PathBuf,
        /// The task type asked for.
        task_type: String,
        /// The task types it claims, comma-separated.
        claimed: String,
    },
}

/// Runs `sluice run` and returns its exit status: prints the result record
/// (pretty JSON) on stdout, or a usage error on stderr.
pub async fn main(args: RunArgs) -> ExitCode {
    match run(&args).await {
        Ok(record) => {
            let code = match record.status {
                Status::Succeeded => ExitCode::Succeeded,
                Status::Failed | Status::Retrying => ExitCode::TaskFailed,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&record).expect("a record serializes")
            );
            code
        }
        Err(e) => {
            eprintln!("sluice run: {e}");
            ExitCode::Usage
        }
    }
}

/// Loads the component and runs one task of `args.task_type` in a fresh
/// sandbox; the record says whether the task succeeded or how it failed.
///
/// # Errors
/// A [`UsageError`] when the task cannot be run at all.
pub async fn run(args: &RunArgs) -> Result<ResultRecord, UsageError> {
    let params = read_params(args)?;
    // One plugin load and one task: a small pool.
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 4,
        ..SandboxConfig::default()
    })
    .map_err(|e| UsageError::Load(format!("{e:#}")))?;
    let staged = match &args.manifest {
        Some(manifest) => Some(stage_with_manifest(&args.component, manifest)?),
        None => None,
    };
    let path = staged
        .as_ref()
        .map_or(args.component.as_path(), |s| s.component.as_path());
    let plugin = Plugin::load(&sandbox, path)
        .await
        .map_err(|e| UsageError::Load(e.to_string()))?;
    if !plugin.task_types().iter().any(|t| t == &args.task_type) {
        return Err(UsageError::UnknownTaskType {
            component: args.component.clone(),
            task_type: args.task_type.clone(),
            claimed: plugin.task_types().join(", "),
        });
    }
    let id = format!("local-{}", uuid::Uuid::now_v7());
    let started_at = now_ms();
    // Follow-ups the task enqueues are listed in `children`, never pushed:
    // a local run touches no queue.
    let run = sandbox
        .run_task(
            &plugin,
            &TaskInput {
                id: &id,
                task_type: &args.task_type,
                params: &params,
                attempt: 1,
            },
            &CancelToken::default(),
            &TaskLimits::default(),
            0,
        )
        .await;
    let (outcome, usage) = (run.outcome, run.usage);
    let finished_at = now_ms();
    let mut record = ResultRecord {
        id,
        task_type: Some(args.task_type.clone()),
        status: Status::Succeeded,
        result: None,
        error: None,
        attempts: 1,
        started_at,
        finished_at,
        duration_ms: finished_at.saturating_sub(started_at),
        plugin: Some(args.component_name()),
        plugin_version: plugin.manifest().version.clone(),
        plugin_sha256: Some(plugin.sha256().to_owned()),
        worker: "local".into(),
        usage,
        tenant: None,
        parent_id: None,
        children: run.follow_ups.into_iter().map(|f| f.id).collect(),
    };
    match outcome {
        Ok(result) => match serde_json::value::RawValue::from_string(result) {
            Ok(raw) => record.result = Some(raw),
            Err(e) => {
                record.status = Status::Failed;
                record.error = Some(ErrorInfo {
                    kind: "fatal".into(),
                    message: format!("the plugin's result is not JSON: {e}"),
                });
            }
        },
        Err(failure) => {
            record.status = Status::Failed;
            record.error = Some(ErrorInfo {
                kind: failure.kind().into(),
                message: failure.to_string(),
            });
        }
    }
    Ok(record)
}

impl RunArgs {
    /// The plugin's name: the component's file stem.
    fn component_name(&self) -> String {
        self.component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The params as JSON text: `--params`, the `--params-file` content, or `{}`;
/// checked to be JSON, passed on byte for byte as a worker does.
fn read_params(args: &RunArgs) -> Result<String, UsageError> {
    let text = match (&args.params, &args.params_file) {
        (Some(json), _) => json.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|source| UsageError::ParamsFile {
                path: path.clone(),
                source,
            })?
        }
        (None, None) => "{}".into(),
    };
    serde_json::from_str::<&serde_json::value::RawValue>(&text).map_err(UsageError::BadParams)?;
    Ok(text)
}

/// A temporary folder holding the component (linked) as `NAME.wasm` beside
/// the `--manifest` as `NAME.toml`, since [`Plugin::load`] takes the
/// manifest beside the component. Removed on drop.
struct Staged {
    dir: PathBuf,
    component: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stages `component` with `manifest`: the manifest is validated where it
/// is, then copied with its relative `[[dir]] host` paths made absolute
/// against its own folder, so they mean what they meant there.
fn stage_with_manifest(component: &Path, manifest: &Path) -> Result<Staged, UsageError> {
    let bad = |message: String| UsageError::Manifest {
        path: manifest.to_owned(),
        message,
    };
    if !manifest.is_file() {
        return Err(bad("no such file".into()));
    }
    Manifest::load_or_default(manifest).map_err(|e| bad(e.to_string()))?;
    let text = std::fs::read_to_string(manifest).map_err(|e| bad(e.to_string()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let base = std::path::absolute(manifest.parent().unwrap_or(Path::new(".")))
        .map_err(|e| bad(e.to_string()))?;
    if let Some(toml::Value::Array(dirs)) = table.get_mut("dir") {
        for dir in dirs {
            if let Some(toml::Value::String(host)) = dir.get_mut("host")
                && Path::new(host.as_str()).is_relative()
            {
                *host = base.join(host.as_str()).to_string_lossy().into_owned();
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("sluice-run-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
    let name = component
        .file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
    let staged = Staged {
        component: dir.join(format!("{name}.wasm")),
        dir,
    };
    let source = std::path::absolute(component).map_err(|e| UsageError::Load(e.to_string()))?;
    if !source.is_file() {
        return Err(UsageError::Load(format!(
            "cannot read plugin {}: no such file",
            component.display()
        )));
    }
    std::os::unix::fs::symlink(&source, &staged.component)
        .map_err(|e| UsageError::Load(format!("cannot stage {}: {e}", component.display())))?;
    std::fs::write(
        staged.component.with_extension("toml"),
        toml::to_string(&table).map_err(|e| bad(e.to_string()))?,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(params: Option<&str>) -> RunArgs {
        RunArgs {
            component: "x.wasm".into(),
            task_type: "t".into(),
            params: params.map(str::to_owned),
            params_file: None,
            manifest: None,
        }
    }

    #[test]
    fn params_default_to_an_empty_object_and_must_be_json() {
        assert_eq!(read_params(&args(None)).unwrap(), "{}");
        assert_eq!(
            read_params(&args(Some(r#"{"a": 1}"#))).unwrap(),
            r#"{"a": 1}"#
        );
        assert!(matches!(
            read_params(&args(Some("{nope"))),
            Err(UsageError::BadParams(_))
        ));
    }

    #[test]
    fn a_staged_manifest_keeps_its_relative_dirs_meaning() {
        let root = std::env::temp_dir().join(format!("sluice-stage-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("p.wasm"), b"\0asm").unwrap();
        let manifest = root.join("other.toml");
        std::fs::write(
            &manifest,
            "timeout_ms = 50\n[[dir]]\nhost = \"data\"\nguest = \"/data\"\n",
        )
        .unwrap();
        let staged = stage_with_manifest(&root.join("p.wasm"), &manifest).unwrap();
        let m = Manifest::load_or_default(&staged.component.with_extension("toml")).unwrap();
        assert_eq!(m.timeout_ms, 50);
        assert_eq!(
            m.dirs[0].host,
            std::path::absolute(root.join("data")).unwrap()
        );
        let dir = staged.dir.clone();
        drop(staged);
        assert!(!dir.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
