//! Startup errors name the files at fault.

use std::time::Duration;

use crate::harness::*;

fn start_fails(plugins: &Plugins) -> String {
    let redis = RedisServer::start();
    let mut cmd = sluice();
    cmd.args(["worker", "--burst", "--redis-url", &redis.url(), "--plugins"]).arg(plugins.path());
    let out = wait_output(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "worker started despite bad plugins:\n{stderr}");
    stderr
}

#[test]
fn a_file_that_is_not_a_component_is_a_startup_error_naming_it() {
    let plugins = Plugins::new(&[("noop", "")]);
    std::fs::write(plugins.path().join("broken.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap();
    let stderr = start_fails(&plugins);
    assert!(stderr.contains("broken.wasm") && stderr.contains("not a valid WebAssembly component"), "{stderr}");
}

#[test]
fn two_plugins_claiming_one_task_type_is_a_startup_error_naming_both() {
    let plugins = Plugins::new(&[("noop", "")]);
    std::fs::copy(built_plugin("noop"), plugins.path().join("noop-copy.wasm")).unwrap();
    let stderr = start_fails(&plugins);
    assert!(stderr.contains("\"noop\"") && stderr.contains("noop.wasm") && stderr.contains("noop-copy.wasm"), "{stderr}");
}

#[test]
fn an_invalid_manifest_is_a_startup_error_naming_it() {
    let plugins = Plugins::new(&[("noop", "timeout_msec = 5\n")]);
    let stderr = start_fails(&plugins);
    assert!(stderr.contains("noop.toml") && stderr.contains("timeout_msec"), "{stderr}");
}
