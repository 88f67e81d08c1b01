//! `sluice run`: one task in the real sandbox, without Redis — the record on
//! stdout and the exit status (0 succeeded, 1 task failed, 2 usage or load
//! error).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// `sluice run COMPONENT ARGS…`, waited for.
fn run(component: &Path, args: &[&str]) -> Output {
    let mut cmd = sluice();
    cmd.arg("run").arg(component).args(args);
    wait_output(cmd, Duration::from_secs(120))
}

/// The record printed on stdout.
fn record(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a record ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A copy of `misbehave` in its own folder, with `manifest` beside it ("" for none).
fn misbehave(manifest: &str) -> (TempDir, std::path::PathBuf) {
    let plugins = Plugins::new(&[("misbehave", manifest)]);
    let path = plugins.path().join("misbehave.wasm");
    (plugins.dir, path)
}

#[test]
fn a_task_that_succeeds_prints_its_record_and_exits_0() {
    let (_dir, wasm) = misbehave("");
    let out = run(&wasm, &["--task-type", "echo", "--params", r#"{"n": 7}"#]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r = record(&out);
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["result"], json!({"n": 7}));
    assert_eq!(r["error"], Value::Null);
    assert!(r["duration_ms"].is_u64(), "{r}");
    assert_eq!(r["task_type"], "echo");
    assert_eq!(r["plugin"], "misbehave");
    assert_eq!(r["worker"], "local");
}

#[test]
fn params_come_from_a_file_too() {
    let (dir, wasm) = misbehave("");
    let file = dir.path().join("params.json");
    std::fs::write(&file, r#"{"from": "file"}"#).unwrap();
    let out = run(
        &wasm,
        &[
            "--task-type",
            "echo",
            "--params-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(record(&out)["result"], json!({"from": "file"}));
}

#[test]
fn a_failed_task_prints_its_error_and_exits_1() {
    let (_dir, wasm) = misbehave("");
    for (task_type, kind) in [
        ("fail_fatal", "fatal"),
        ("fail_retryable", "retryable"),
        ("trap", "trap"),
    ] {
        let out = run(&wasm, &["--task-type", task_type]);
        assert_eq!(out.status.code(), Some(1), "{task_type}: {out:?}");
        let r = record(&out);
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["error"]["kind"], kind, "{r}");
    }
}

#[test]
fn the_manifest_limits_apply_as_in_a_worker() {
    // Beside the component…
    let (_dir, wasm) = misbehave("timeout_ms = 200\n");
    let out = run(&wasm, &["--task-type", "loop_forever"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(record(&out)["error"]["kind"], "timeout");

    // …or named with --manifest, its relative dirs resolved against its folder.
    let (dir, wasm) = misbehave("");
    let out = run(
        &wasm,
        &[
            "--task-type",
            "read_file",
            "--params",
            r#"{"path": "/data/in.txt"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "no grant, no file: {out:?}");
    assert_eq!(record(&out)["error"]["kind"], "fatal");
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("data")).unwrap();
    std::fs::write(conf.join("data/in.txt"), "12345").unwrap();
    let manifest = conf.join("other.toml");
    std::fs::write(
        &manifest,
        "version = \"9.9.9\"\n[[dir]]\nhost = \"data\"\nguest = \"/data\"\n",
    )
    .unwrap();
    let out = run(
        &wasm,
        &[
            "--task-type",
            "read_file",
            "--params",
            r#"{"path": "/data/in.txt"}"#,
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r = record(&out);
    assert_eq!(r["result"], json!({"len": 5}));
    assert_eq!(r["plugin_version"], "9.9.9");
}

#[test]
fn usage_and_load_errors_exit_2_without_a_record() {
    let (dir, wasm) = misbehave("");
    let not_wasm = dir.path().join("junk.wasm");
    std::fs::write(&not_wasm, "not wasm").unwrap();
    let missing = dir.path().join("missing.json");
    let cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (
            &wasm,
            vec!["--task-type", "echo", "--params", "{nope"],
            "not valid JSON",
        ),
        (
            &wasm,
            vec!["--task-type", "nope"],
            "does not handle task type",
        ),
        (
            &wasm,
            vec![
                "--task-type",
                "echo",
                "--params-file",
                missing.to_str().unwrap(),
            ],
            "cannot read the params file",
        ),
        (
            &wasm,
            vec![
                "--task-type",
                "echo",
                "--manifest",
                missing.to_str().unwrap(),
            ],
            "cannot use the manifest",
        ),
        (&not_wasm, vec!["--task-type", "echo"], "junk.wasm"),
        (&wasm, vec![], "--task-type"),
        (
            &wasm,
            vec![
                "--task-type",
                "echo",
                "--params",
                "{}",
                "--params-file",
                "x",
            ],
            "cannot be used with",
        ),
    ];
    for (component, args, message) in cases {
        let out = run(component, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
