//! Plugins written in Python, JavaScript and C (built by `cargo xtask
//! plugins` with the toolchains of `.ci/install-polyglot`) run through the
//! real worker exactly like Rust ones: results, retryable and fatal errors,
//! host logging, and the filesystem sandbox.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Compiles `plugin` once (`sluice plugins` loads it through the worker's
/// compile cache), so that the burst workers of the tests below start from
/// the cache: these components are 0.2 to 20 MB, and Cranelift in a debug
/// build of the worker takes minutes for the largest. Fails like
/// `built_plugin` when the plugin was not built.
fn warm(plugin: &str) {
    static WARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warmed = WARMED.lock().unwrap_or_else(|e| e.into_inner());
    if warmed.iter().any(|p| p == plugin) {
        return;
    }
    let plugins = Plugins::new(&[(plugin, "")]);
    let mut cmd = sluice();
    cmd.args(["plugins", "--plugins"]).arg(plugins.path());
    assert_ok(&wait_output(cmd, Duration::from_secs(20 * 60)));
    warmed.push(plugin.to_owned());
}

/// A manifest granting `dir` read-only as `/data`.
fn grant_data(dir: &TempDir) -> String {
    format!(
        "[[dir]]\nhost = \"{}\"\nguest = \"/data\"\n",
        dir.path().display()
    )
}

/// Asserts that a log line of the worker carries both the task id and `text`.
fn assert_logged(stderr: &str, id: &str, text: &str) {
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("id={id} ")) && l.contains(text)),
        "no log line with task {id} and {text:?}:\n{stderr}"
    );
}

fn assert_fatal(redis: &RedisServer, id: &str, message_part: &str) -> Value {
    let r = result(redis, id).unwrap_or_else(|| panic!("no result for {id}"));
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "fatal", "{r}");
    assert_eq!(r["attempts"], 1, "fatal errors are not retried: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains(message_part),
        "{r}"
    );
    let dead = dead_letter(redis, id).unwrap_or_else(|| panic!("{id} not dead-lettered"));
    assert_eq!(dead["error"]["kind"], "fatal", "{dead}");
    r
}

/// Runs `{"fail": "retryable"}` of `task_type` under a long-running worker
/// with one retry and a short backoff: the task is retried once, then
/// dead-lettered with kind `retryable`, and the plugin saw attempt 2.
fn assert_retried(plugin: &str, task_type: &str) {
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[(plugin, "")]);
    push(
        &redis,
        &[
            json!({"id": "flaky", "task_type": task_type, "max_retries": 1,
                 "backoff_base_ms": 20, "params": {"fail": "retryable"}}),
        ],
    );
    let worker = WorkerProcess::spawn(&redis, &plugins, &[]);
    let r = wait_result(&redis, "flaky", Duration::from_secs(60));
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["attempts"], 2, "the first attempt and one retry: {r}");
    assert_eq!(r["error"]["kind"], "retryable", "{r}");
    assert_eq!(r["error"]["message"], "asked to fail (attempt 2)", "{r}");
    let dead = dead_letter(&redis, "flaky").expect("dead-lettered after its retries");
    assert_eq!(dead["error"]["kind"], "retryable");
    assert_eq!(stat(&redis, "retried"), 1);
    assert_logged(&worker.log(), "flaky", "asked to fail (attempt 1)");
}

// ---------------------------------------------------------------- Python

#[test]
fn python_summarize_json_succeeds_logs_and_fails_fatally() {
    warm("summarize-py");
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("summarize-py", "")]);
    push(
        &redis,
        &[
            json!({"id": "py-ok", "task_type": "summarize_json", "params": {"values": [1, 2, 3.5, -4]}}),
            json!({"id": "py-empty", "task_type": "summarize_json", "params": {"values": []}}),
            json!({"id": "py-nan", "task_type": "summarize_json", "params": {"values": [1, "2"]}}),
            json!({"id": "py-bool", "task_type": "summarize_json", "params": {"values": [true]}}),
            json!({"id": "py-missing", "task_type": "summarize_json", "params": {"numbers": [1]}}),
        ],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    let ok = result(&redis, "py-ok").unwrap();
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["plugin"], "summarize-py");
    assert_eq!(
        ok["result"],
        json!({"count": 4, "sum": 2.5, "min": -4, "max": 3.5, "mean": 0.625})
    );
    assert_eq!(
        result(&redis, "py-empty").unwrap()["result"],
        json!({"count": 0, "sum": 0, "min": null, "max": null, "mean": null})
    );
    assert_fatal(&redis, "py-nan", "values[1] is not a number: \"2\"");
    assert_fatal(&redis, "py-bool", "values[0] is not a number: true");
    assert_fatal(&redis, "py-missing", "\"values\"");
    assert_logged(
        &stderr,
        "py-ok",
        "summarize-py: summarized 4 values for task py-ok",
    );
}

#[test]
fn python_retryable_errors_are_retried() {
    warm("summarize-py");
    assert_retried("summarize-py", "summarize_json");
}

/// Log texts whose summaries must not differ between the Python and Rust
/// implementations: level words and word boundaries, every line break of
/// `str.splitlines()`, Unicode whitespace around messages, and ties in
/// `most_common`.
const LOG_TEXTS: &[&str] = &[
    "",
    "2026-11-24T03:47:12.345Z WARN [db] slow\n\
     2026-11-24T03:47:12.346Z TRACE [db] x\n\
     2026-11-24T03:47:12.347Z ERROR [db] connection refused: pool exhausted (host=db-3)\n\
     2026-11-24T03:47:12.348Z WARN [db] slow\n",
    "INFO: started\nINFORMATION only\nxINFO no\nINFO_x no\n[INFO] yes\nWARNING disk\n\
     WARNINGS no\n(DEBUG)\néINFO no\n—INFO yes\nINFO retrying after ERROR x\n",
    "ERROR a\nERROR b\nERROR c\nERROR e\nERROR c\nERROR f\nERROR a\n\
     ERROR d\nERROR b\nERROR c\nERROR g\nERROR d\nFATAL  boom  \n",
    "a\r\nb\rc\n\rd\x0be\x0cf\x1cg\x1dh\x1ei\u{85}j\u{2028}k\u{2029}ERROR\t x \x1f\u{3000}\n",
];

#[test]
fn python_parse_log_file_py_matches_the_rust_parse_log_file() {
    warm("summarize-py");
    warm("parse-log-file");
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("summarize-py", ""), ("parse-log-file", "")]);
    let mut messages = Vec::new();
    for (i, text) in LOG_TEXTS.iter().enumerate() {
        messages.push(json!({"id": format!("py-{i}"), "task_type": "parse_log_file_py", "params": {"text": text}}));
        messages.push(json!({"id": format!("rs-{i}"), "task_type": "parse_log_file", "params": {"text": text}}));
    }
    push(&redis, &messages);
    assert_ok(&run_burst(&redis, &plugins, &[]));
    for (i, text) in LOG_TEXTS.iter().enumerate() {
        let py = result(&redis, &format!("py-{i}")).unwrap();
        let rs = result(&redis, &format!("rs-{i}")).unwrap();
        assert_eq!(py["status"], "succeeded", "{py}");
        assert_eq!(rs["status"], "succeeded", "{rs}");
        // The same JSON, key order included.
        assert_eq!(
            py["result"].to_string(),
            rs["result"].to_string(),
            "text {i}: {text:?}"
        );
    }
    assert_eq!(
        result(&redis, "py-1").unwrap()["result"],
        json!({"lines": 4, "levels": {"WARN": 2, "TRACE": 1, "ERROR": 1},
               "top_errors": [["[db] connection refused: pool exhausted (host=db-3)", 1]]})
    );
}

#[test]
fn python_file_reads_need_a_grant() {
    warm("summarize-py");
    let data = TempDir::new("py-data");
    std::fs::write(
        data.path().join("app.log"),
        "INFO up\nERROR disk full\r\nERROR disk full\n",
    )
    .unwrap();

    // No manifest: no filesystem at all, so the open fails.
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("summarize-py", "")]);
    push(
        &redis,
        &[json!({"id": "denied", "task_type": "parse_log_file_py", "params": {"path": "app.log"}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_fatal(&redis, "denied", "cannot read /data/app.log");

    // Granted: the same task reads the file; paths out of /data are refused.
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("summarize-py", &grant_data(&data))]);
    push(
        &redis,
        &[
            json!({"id": "granted", "task_type": "parse_log_file_py", "params": {"path": "app.log"}}),
            json!({"id": "escape", "task_type": "parse_log_file_py", "params": {"path": "../etc/passwd"}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(
        result(&redis, "granted").unwrap()["result"],
        json!({"lines": 3, "levels": {"INFO": 1, "ERROR": 2}, "top_errors": [["disk full", 2]]})
    );
    assert_fatal(&redis, "escape", "must not contain `..`");
}

// ---------------------------------------------------------------- JavaScript

#[test]
fn javascript_render_template_succeeds_logs_and_fails_fatally() {
    warm("render-template-js");
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("render-template-js", "")]);
    push(
        &redis,
        &[
            json!({"id": "js-ok", "task_type": "render_template",
                   "params": {"template": "Hello {{name}}, you have {{ count }} new {{what}}. {{name}}!",
                              "values": {"name": "Zoë", "count": 3, "what": ["mail"]}}}),
            json!({"id": "js-missing", "task_type": "render_template",
                   "params": {"template": "Hello {{name}} from {{city}}", "values": {"name": "x"}}}),
            json!({"id": "js-no-template", "task_type": "render_template", "params": {}}),
        ],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    let ok = result(&redis, "js-ok").unwrap();
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(
        ok["result"],
        json!({"text": "Hello Zoë, you have 3 new [\"mail\"]. Zoë!"})
    );
    let missing = assert_fatal(&redis, "js-missing", "missing value for {{city}}");
    assert_eq!(missing["plugin"], "render-template-js");
    assert_fatal(&redis, "js-no-template", "\"template\"");
    assert_logged(&stderr, "js-ok", "render-template-js: rendered");
}

#[test]
fn javascript_retryable_errors_are_retried() {
    warm("render-template-js");
    assert_retried("render-template-js", "render_template");
}

#[test]
fn javascript_file_reads_need_a_grant() {
    warm("render-template-js");
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("render-template-js", "")]);
    push(
        &redis,
        &[
            json!({"id": "passwd", "task_type": "render_template", "params": {"read": "/etc/passwd"}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_fatal(
        &redis,
        "passwd",
        "cannot read /etc/passwd: no granted directory contains it (granted: none)",
    );

    let data = TempDir::new("js-data");
    std::fs::write(data.path().join("ok.txt"), "hello").unwrap();
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("render-template-js", &grant_data(&data))]);
    push(
        &redis,
        &[
            json!({"id": "granted", "task_type": "render_template", "params": {"read": "/data/ok.txt"}}),
            json!({"id": "absent", "task_type": "render_template", "params": {"read": "/data/nope.txt"}}),
            json!({"id": "passwd", "task_type": "render_template", "params": {"read": "/etc/passwd"}}),
            json!({"id": "escape", "task_type": "render_template", "params": {"read": "/data/../../etc/passwd"}}),
        ],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(
        result(&redis, "granted").unwrap()["result"],
        json!({"path": "/data/ok.txt", "bytes": 5})
    );
    assert_logged(&stderr, "granted", "read 5 bytes from /data/ok.txt");
    assert_fatal(&redis, "absent", "cannot read /data/nope.txt");
    assert_fatal(&redis, "passwd", "(granted: /data)");
    assert_fatal(&redis, "escape", "cannot read /data/../../etc/passwd");
}

// ---------------------------------------------------------------- C

#[test]
fn c_checksum_succeeds_logs_and_fails_fatally() {
    warm("checksum-c");
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("checksum-c", "")]);
    push(
        &redis,
        &[
            json!({"id": "c-ok", "task_type": "checksum", "params": {"text": "hello world"}}),
            // Escapes decoded before hashing, other members skipped.
            json!({"id": "c-unicode", "task_type": "checksum",
                   "params": {"n": {"text": 1, "a": [1, "}"]}, "t\\u0065xt": "x", "text": "héllo ☃ 😀"}}),
            json!({"id": "c-empty", "task_type": "checksum", "params": {"text": ""}}),
            json!({"id": "c-missing", "task_type": "checksum", "params": {"txt": "hello"}}),
            json!({"id": "c-number", "task_type": "checksum", "params": {"text": 42}}),
        ],
    );
    let stderr = assert_ok(&run_burst(&redis, &plugins, &[]));
    let ok = result(&redis, "c-ok").unwrap();
    assert_eq!(ok["status"], "succeeded", "{ok}");
    // zlib.crc32(b"hello world")
    assert_eq!(
        ok["result"],
        json!({"crc32": 222957957u32, "hex": "0d4a1185"})
    );
    assert_eq!(
        result(&redis, "c-unicode").unwrap()["result"],
        json!({"crc32": 3321565700u32, "hex": "c5fb1204"})
    );
    assert_eq!(
        result(&redis, "c-empty").unwrap()["result"],
        json!({"crc32": 0, "hex": "00000000"})
    );
    assert_fatal(&redis, "c-missing", "params must have \"text\"");
    assert_fatal(&redis, "c-number", "\"text\" must be a string");
    assert_logged(
        &stderr,
        "c-ok",
        "checksum-c: crc32 of 11 bytes for task c-ok",
    );
}

#[test]
fn c_retryable_errors_are_retried() {
    warm("checksum-c");
    assert_retried("checksum-c", "checksum");
}

#[test]
fn c_file_reads_need_a_grant() {
    warm("checksum-c");
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("checksum-c", "")]);
    push(
        &redis,
        &[json!({"id": "passwd", "task_type": "checksum", "params": {"read": "/etc/passwd"}})],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_fatal(&redis, "passwd", "cannot open /etc/passwd");

    let data = TempDir::new("c-data");
    std::fs::write(data.path().join("ok.txt"), "hello world").unwrap();
    let redis = RedisServer::start();
    let plugins = Plugins::new(&[("checksum-c", &grant_data(&data))]);
    push(
        &redis,
        &[
            json!({"id": "granted", "task_type": "checksum", "params": {"read": "/data/ok.txt"}}),
            json!({"id": "passwd", "task_type": "checksum", "params": {"read": "/etc/passwd"}}),
            json!({"id": "escape", "task_type": "checksum", "params": {"read": "/data/../../etc/passwd"}}),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    assert_eq!(
        result(&redis, "granted").unwrap()["result"],
        json!({"crc32": 222957957u32, "hex": "0d4a1185"})
    );
    assert_fatal(&redis, "passwd", "cannot open /etc/passwd");
    assert_fatal(&redis, "escape", "cannot open /data/../../etc/passwd");
}
