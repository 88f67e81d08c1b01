//! Plugin authoring: `sluice new LANG DIR` → `sluice build` → `sluice
//! plugin check` → `sluice run`, for each template language, in a temporary
//! directory outside the repository; the generated unit tests pass; and the
//! refusals (`new` into a non-empty folder, `build` without its toolchain).
//! Also `-o json` of the inspecting commands and `sluice completions`.
//!
//! The toolchains come from `cargo xtask test`'s set-up (rustup's
//! `wasm32-wasip2`, `.ci/install-polyglot`): as in `polyglot.rs`, a missing
//! one fails the test with `sluice build`'s advice, it is not skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// `sluice ARGS…` waited for (up to `limit`).
fn sluice_out(args: &[&str], limit: Duration) -> Output {
    let mut cmd = sluice();
    cmd.args(args);
    wait_output(cmd, limit)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Cargo target folder shared by the generated Rust projects of all
/// runs (wit-bindgen compiles once), under the workspace's `target/`.
fn rust_target_dir() -> PathBuf {
    workspace().join("target/authoring-rust")
}

/// `sluice new LANG DIR [--task-type T]`, asserted to succeed.
fn new_project(lang: &str, dir: &Path, task_type: Option<&str>) {
    let mut cmd = sluice();
    cmd.args(["new", lang]).arg(dir);
    if let Some(t) = task_type {
        cmd.args(["--task-type", t]);
    }
    assert_ok(&wait_output(cmd, Duration::from_secs(30)));
}

/// `sluice build DIR`; returns the component path (stdout's last line).
fn build(dir: &Path) -> PathBuf {
    let mut cmd = sluice();
    cmd.arg("build")
        .arg(dir)
        .env("CARGO_TARGET_DIR", rust_target_dir());
    let out = wait_output(cmd, Duration::from_secs(20 * 60));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "sluice build failed ({:?}):\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().expect("a path on stdout").trim();
    let wasm = PathBuf::from(last);
    assert!(wasm.is_file(), "{last} is not the component: {stdout}");
    assert!(
        wasm.with_extension("toml").is_file(),
        "the manifest is copied beside the component"
    );
    wasm
}

/// `sluice run WASM --task-type T --params P`: exit status and record.
fn run(wasm: &Path, task_type: &str, params: &str) -> (Option<i32>, Value) {
    let mut cmd = sluice();
    cmd.arg("run")
        .arg(wasm)
        .args(["--task-type", task_type, "--params", params]);
    let out = wait_output(cmd, Duration::from_secs(10 * 60));
    let (stdout, stderr) = text(&out);
    let record = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a record ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code(), record)
}

/// Runs the generated project's own unit tests.
fn unit_tests(lang: &str, dir: &Path) {
    let mut cmd = match lang {
        "rust" => {
            let mut c = Command::new("cargo");
            c.arg("test").env("CARGO_TARGET_DIR", rust_target_dir());
            c
        }
        "python" => {
            let mut c = Command::new("python3");
            c.args(["-m", "unittest", "-v"]);
            c
        }
        "js" => {
            let mut c = Command::new("node");
            c.arg("--test");
            c
        }
        "c" => {
            let mut c = Command::new("sh");
            c.arg("test.sh");
            c
        }
        other => panic!("no language {other}"),
    };
    cmd.current_dir(dir);
    let out = wait_output(cmd, Duration::from_secs(10 * 60));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "the {lang} unit tests failed:\n{stdout}\n{stderr}"
    );
}

/// The whole inner loop for one language.
fn new_build_check_run(lang: &str, task_type: Option<&str>) {
    let tmp = TempDir::new(&format!("authoring-{lang}"));
    assert!(
        !tmp.path().starts_with(workspace()),
        "the project must live outside the repository"
    );
    let name = format!("hello-{lang}");
    let dir = tmp.path().join(&name);
    new_project(lang, &dir, task_type);
    let task_type = task_type.unwrap_or("hello");
    assert!(dir.join(format!("{name}.toml")).is_file());
    assert!(dir.join("wit/plugin.wit").is_file());

    unit_tests(lang, &dir);

    let wasm = build(&dir);
    assert_eq!(wasm, dir.join("dist").join(format!("{name}.wasm")));

    let out = sluice_out(
        &["plugin", "check", wasm.to_str().unwrap(), "-o", "json"],
        Duration::from_secs(10 * 60),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "plugin check: {stdout}\n{stderr}");
    let check: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["name"], name.as_str(), "{check}");
    assert_eq!(check["task_types"], json!([task_type]), "{check}");
    assert_eq!(check["version"], "0.1.0", "the manifest beside it: {check}");

    let (code, r) = run(&wasm, task_type, r#"{"name": "Ada"}"#);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["result"], json!({"greeting": "Hello, Ada!"}), "{r}");

    let (code, r) = run(&wasm, task_type, r#"{"nam": "Ada"}"#);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "fatal", "{r}");

    let (code, r) = run(&wasm, task_type, r#"{"name": "Ada", "fail": "retryable"}"#);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["error"]["kind"], "retryable", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attempt 1"),
        "{r}"
    );

    if lang == "rust" || lang == "c" {
        // A second build (quick for these two) prints the same path.
        assert_eq!(build(&dir), wasm);
    }
}

#[test]
fn rust_template_new_build_check_run() {
    new_build_check_run("rust", None);
}

#[test]
fn python_template_new_build_check_run() {
    new_build_check_run("python", Some("greet.v2"));
}

#[test]
fn js_template_new_build_check_run() {
    new_build_check_run("js", Some("greet"));
}

#[test]
fn c_template_new_build_check_run() {
    new_build_check_run("c", None);
}

#[test]
fn new_refuses_a_non_empty_folder_and_a_bad_name() {
    let tmp = TempDir::new("authoring-refused");
    let dir = tmp.path().join("taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = sluice_out(
        &["new", "python", dir.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing written"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );

    let bad = tmp.path().join("1 bad name");
    let out = sluice_out(
        &["new", "rust", bad.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not a usable plugin name"));
    assert!(!bad.exists());

    let out = sluice_out(
        &["new", "cobol", tmp.path().join("x").to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}

#[test]
fn build_without_the_toolchain_says_what_to_install() {
    let tmp = TempDir::new("authoring-notools");
    let dir = tmp.path().join("lonely");
    new_project("python", &dir, None);
    let empty_cache = tmp.path().join("empty-cache");
    std::fs::create_dir_all(&empty_cache).unwrap();
    let mut cmd = sluice();
    cmd.arg("build")
        .arg(&dir)
        .env("PATH", "")
        .env("SLUICE_CACHE", &empty_cache);
    let out = wait_output(cmd, Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "no path printed: {stdout}");
    assert!(stderr.contains("componentize-py not found"), "{stderr}");
    assert!(
        stderr.contains("pip install componentize-py==0.25.1"),
        "{stderr}"
    );
    assert!(stderr.contains(".ci/install-polyglot python"), "{stderr}");
    assert!(!dir.join("dist/lonely.wasm").exists());

    // A folder without a manifest: a usage error too.
    let out = sluice_out(
        &["build", tmp.path().join("empty-cache").to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("no plugin manifest"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn a_worker_and_plugin_check_accept_a_manifest_with_a_build_table() {
    let manifest = "version = \"2.0\"\n[build]\ncommand = \"true\"\noutput = \"x.wasm\"\n";
    let plugins = Plugins::new(&[("noop", manifest)]);
    let out = sluice_out(
        &[
            "plugin",
            "check",
            plugins.path().join("noop.wasm").to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("version     2.0"), "{stdout}");

    let redis = RedisServer::start();
    push(&redis, &[json!({"id": "t1", "task_type": "noop"})]);
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(result(&redis, "t1").unwrap()["status"], "succeeded");
}

#[test]
fn inspecting_commands_print_json_with_dash_o_json() {
    let plugins = Plugins::new(&[("noop", ""), ("misbehave", "")]);
    let out = sluice_out(
        &[
            "plugins",
            "--plugins",
            plugins.path().to_str().unwrap(),
            "-o",
            "json",
        ],
        Duration::from_secs(300),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["misbehave", "noop"]);
    assert_eq!(list[1]["task_types"], json!(["noop"]));
    assert_eq!(list[1]["limits"]["timeout_ms"], 30_000);

    // A file that is not a component: `ok: false` and exit 1.
    let junk = plugins.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = sluice_out(
        &[
            "plugin",
            "check",
            junk.to_str().unwrap(),
            "--output",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let check: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(check["ok"], false);
    assert!(check["error"].as_str().unwrap().len() > 3, "{check}");

    let redis = RedisServer::start();
    push(
        &redis,
        &[
            json!({"id": "ok1", "task_type": "noop"}),
            json!({"id": "bad1", "task_type": "fail_fatal"}),
        ],
    );
    let plugins_run = Plugins::new(&[("noop", ""), ("misbehave", "")]);
    assert_ok(&run_burst(&redis, &plugins_run, &[]));
    let url = redis.url();
    let q = ["--redis-url", url.as_str()];
    let json_of = |args: &[&str]| -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(q);
        let out = sluice_out(&all, Duration::from_secs(60));
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    };
    let r = json_of(&["result", "ok1", "-o", "json"]);
    assert_eq!(r["status"], "succeeded");
    let stats = json_of(&["stats", "-o", "json"]);
    assert_eq!(stats, json_of(&["stats", "--json"]), "--json is an alias");
    assert_eq!(stats["queue"], "task_queue");
    let dead = json_of(&["dead", "list", "-o", "json"]);
    assert!(dead.is_array(), "{dead}");
    let dead_ids: Vec<&str> = dead
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(dead_ids, ["bad1"], "{dead}");
    let one = json_of(&["dead", "-o", "json", "show", "bad1"]);
    assert_eq!(one["id"], "bad1");
    // The default (and `-o text`) keeps the record as pretty JSON.
    let out = sluice_out(
        &["result", "ok1", "-o", "text", "--redis-url", &url],
        Duration::from_secs(60),
    );
    let (stdout, _) = text(&out);
    assert!(stdout.lines().count() > 1, "{stdout}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["status"], "succeeded");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sluice_out(&["completions", shell], Duration::from_secs(30));
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{shell}: {stderr}");
        assert!(stdout.contains("sluice"), "{shell}: {stdout}");
        for sub in ["worker", "build", "new"] {
            assert!(stdout.contains(sub), "{shell}: no {sub}");
        }
    }
    let out = sluice_out(&["completions", "tcsh"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
}
