//! Startup errors name the files at fault.

use std::time::Duration;

use crate::harness::*;

fn start_fails(plugins: &Plugins) -> String {
    let redis = RedisServer::start();
    let mut cmd = worker_command(&redis, plugins);
    cmd.arg("--burst");
    let out = wait_output(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "worker started despite bad plugins:\n{stderr}"
    );
    stderr
}

#[test]
fn a_file_that_is_not_a_component_is_a_startup_error_naming_it() {
    let plugins = Plugins::new(&[("noop", "")]);
    std::fs::write(
        plugins.path().join("broken.wasm"),
        b"\0asm\x0d\0\x01\0garbage",
    )
    .unwrap();
    let stderr = start_fails(&plugins);
    assert!(
        stderr.contains("broken.wasm") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn two_plugins_claiming_one_task_type_is_a_startup_error_naming_both() {
    let plugins = Plugins::new(&[("noop", "")]);
    std::fs::copy(built_plugin("noop"), plugins.path().join("noop-copy.wasm")).unwrap();
    let stderr = start_fails(&plugins);
    assert!(
        stderr.contains("\"noop\"")
            && stderr.contains("noop.wasm")
            && stderr.contains("noop-copy.wasm"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_manifest_is_a_startup_error_naming_it() {
    let plugins = Plugins::new(&[("noop", "timeout_msec = 5\n")]);
    let stderr = start_fails(&plugins);
    assert!(
        stderr.contains("noop.toml") && stderr.contains("timeout_msec"),
        "{stderr}"
    );
}

#[test]
fn plugin_check_prints_task_types_size_and_compile_time_or_explains_the_problem() {
    let mut cmd = sluice();
    cmd.args(["plugin", "check"]).arg(built_plugin("misbehave"));
    let out = wait_output(cmd, Duration::from_secs(60));
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "task types  echo, fail_retryable",
        "bytes)",
        "compile     ",
        "instances   a fresh instance per task",
        "fits the sluice:plugin@0.1.0 world",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }

    let dir = TempDir::new("check");
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let mut cmd = sluice();
    cmd.args(["plugin", "check"]).arg(&broken);
    let out = wait_output(cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.wasm is not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn plugins_lists_task_types_limits_and_grants() {
    let plugins = Plugins::new(&[
        ("noop", ""),
        ("misbehave", "version = \"2.1.0\"\ntimeout_ms = 1234\n"),
    ]);
    let mut cmd = sluice();
    cmd.args(["plugins", "--plugins"]).arg(plugins.path());
    let out = wait_output(cmd, Duration::from_secs(60));
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "plugin      misbehave",
        "version     2.1.0",
        "timeout 1234 ms",
        "plugin      noop",
        "task types  noop",
        "none (no filesystem, no environment, no network)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
}
