//! Outbound HTTP (`wasi:http/outgoing-handler`) behind the manifest's
//! `allowed_outbound_hosts`, with the `fetch-url` example plugin against a
//! tiny HTTP server on a free loopback port.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

/// Bytes of the `/big` response body.
const BIG: usize = 64 * 1024;

/// A one-file HTTP/1.1 server: `/` answers `hello world` (text/plain),
/// `/big` [`BIG`] bytes, `/slow` waits 5 s first, `/redirect` a 302 to
/// `Location: http://localhost:<port>/`. Counts the connections it accepts.
struct TinyServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl TinyServer {
    fn start() -> TinyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream, port));
            }
        });
        TinyServer { port, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, port: u16) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, extra, body) = match path {
        "/big" => ("200 OK", String::new(), vec![b'x'; BIG]),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(5));
            ("200 OK", String::new(), b"late".to_vec())
        }
        "/redirect" => (
            "302 Found",
            format!("Location: http://localhost:{port}/\r\n"),
            Vec::new(),
        ),
        _ => ("200 OK", String::new(), b"hello world".to_vec()),
    };
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

fn fetch(id: &str, url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut params = json!({"url": url, "method": "GET"});
    if let serde_json::Value::Object(more) = extra {
        params.as_object_mut().unwrap().extend(more);
    }
    json!({"id": id, "task_type": "fetch_url", "params": params, "max_retries": 0})
}

const LOOPBACK_ANY_PORT: &str = "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n";

#[test]
fn an_allowed_request_succeeds_with_status_bytes_and_usage() {
    let redis = RedisServer::start();
    let server = TinyServer::start();
    let plugins = Plugins::new(&[("fetch-url", LOOPBACK_ANY_PORT)]);
    push(
        &redis,
        &[
            fetch("ok", &server.url("/"), json!({})),
            fetch("redirect", &server.url("/redirect"), json!({})),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "ok").unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        r["result"],
        json!({"status": 200, "bytes": 11, "content_type": "text/plain"})
    );
    assert_eq!(r["usage"]["outbound_requests"], 1, "{r}");
    assert_eq!(r["usage"]["outbound_bytes"], 11, "{r}");
    // A redirect is handed to the guest, never followed by the host (to
    // localhost, which the list does not allow).
    let r = result(&redis, "redirect").unwrap();
    assert_eq!(r["result"]["status"], 302, "{r}");
    assert_eq!(r["usage"]["outbound_requests"], 1, "{r}");
    assert_eq!(server.connections(), 2);
}

#[test]
fn a_host_or_port_off_the_list_is_refused_before_any_connection() {
    let redis = RedisServer::start();
    let server = TinyServer::start();
    let other_port = server.port.wrapping_add(1).max(1024);
    let manifest = format!("allowed_outbound_hosts = [\"http://127.0.0.1:{other_port}\"]\n");
    let plugins = Plugins::new(&[("fetch-url", &manifest)]);
    let by_name = format!("http://localhost:{}/", server.port);
    push(
        &redis,
        &[
            fetch("wrong-port", &server.url("/"), json!({})),
            fetch("wrong-host", &by_name, json!({})),
            fetch(
                "wrong-scheme",
                &format!("https://127.0.0.1:{other_port}/"),
                json!({}),
            ),
        ],
    );
    let output = run_burst(&redis, &plugins, &[]);
    let log = assert_ok(&output);
    for id in ["wrong-port", "wrong-host", "wrong-scheme"] {
        let r = result(&redis, id).unwrap();
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["error"]["kind"], "outbound_denied", "{r}");
        assert_eq!(r["usage"]["outbound_requests"], 1, "{r}");
        assert_eq!(r["usage"]["outbound_bytes"], 0, "{r}");
        assert!(
            log.contains("outbound HTTP request refused") && log.contains(id),
            "the refusal of {id} is logged with its task id:\n{log}"
        );
    }
    assert_eq!(server.connections(), 0, "a refused request never connects");
}

#[test]
fn no_manifest_grant_means_no_network() {
    let redis = RedisServer::start();
    let server = TinyServer::start();
    let plugins = Plugins::new(&[("fetch-url", "timeout_ms = 5000\n")]);
    push(&redis, &[fetch("denied", &server.url("/"), json!({}))]);
    assert_ok(&run_burst(&redis, &plugins, &[]));
    let r = result(&redis, "denied").unwrap();
    assert_eq!(r["error"]["kind"], "outbound_denied", "{r}");
    assert_eq!(server.connections(), 0);
}

#[test]
fn request_and_response_caps_end_the_task_as_outbound_limit() {
    let redis = RedisServer::start();
    let server = TinyServer::start();
    let manifest = format!(
        "{LOOPBACK_ANY_PORT}max_outbound_requests = 2\nmax_outbound_response_bytes = {}\n",
        BIG / 2
    );
    let plugins = Plugins::new(&[("fetch-url", &manifest)]);
    push(
        &redis,
        &[
            fetch("two", &server.url("/"), json!({"repeat": 2})),
            fetch("three", &server.url("/"), json!({"repeat": 3})),
            fetch("big", &server.url("/big"), json!({})),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "1"]));
    let r = result(&redis, "two").unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["usage"]["outbound_bytes"], 22, "{r}");
    let r = result(&redis, "three").unwrap();
    assert_eq!(r["error"]["kind"], "outbound_limit", "{r}");
    assert_eq!(r["usage"]["outbound_requests"], 3, "{r}");
    let r = result(&redis, "big").unwrap();
    assert_eq!(r["error"]["kind"], "outbound_limit", "{r}");
    // two + two of three's requests + big: the third of three never left.
    assert_eq!(server.connections(), 5);
}

#[test]
fn a_slow_server_runs_into_the_task_timeout() {
    let redis = RedisServer::start();
    let server = TinyServer::start();
    let manifest = format!("{LOOPBACK_ANY_PORT}timeout_ms = 2000\n");
    let plugins = Plugins::new(&[("fetch-url", &manifest)]);
    push(
        &redis,
        &[
            fetch("slow", &server.url("/slow"), json!({})),
            fetch("after", &server.url("/"), json!({})),
        ],
    );
    assert_ok(&run_burst(&redis, &plugins, &["--concurrency", "1"]));
    let r = result(&redis, "slow").unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    let r = result(&redis, "after").unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
}

#[test]
fn a_tenant_list_is_a_ceiling_over_its_plugins() {
    let redis = RedisServer::start();
    let server = TinyServer::start();
    let plugins = Plugins::new(&[("fetch-url", LOOPBACK_ANY_PORT)]);
    let dir = TempDir::new("tenant-http");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenant]]\nname = \"acme\"\nqueue = \"task_queue\"\nplugins = \"{}\"\nallowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n",
            plugins.path().display(),
            server.port.wrapping_add(1).max(1024)
        ),
    )
    .unwrap();
    push(&redis, &[fetch("ceiling", &server.url("/"), json!({}))]);
    let mut cmd = sluice();
    cmd.args(["worker", "--burst", "--redis-url", &redis.url(), "--config"])
        .arg(&config);
    assert_ok(&wait_output(cmd, Duration::from_secs(120)));
    let r = result(&redis, "ceiling").unwrap();
    assert_eq!(r["error"]["kind"], "outbound_denied", "{r}");
    assert_eq!(server.connections(), 0);
}
