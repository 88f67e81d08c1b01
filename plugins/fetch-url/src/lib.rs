//! Sluice plugin `fetch-url`: task type `fetch_url`.
//!
//! Params: `{"url": "http://127.0.0.1:8080/x", "method": "GET", "repeat": 1}`
//! (`method` defaults to `GET`; `repeat`, default 1, sends the same request
//! that many times, to exercise the host's `max_outbound_requests`). Sends
//! the request through `wasi:http/outgoing-handler` — the host lets it out
//! only when the manifest's `allowed_outbound_hosts` allows the URL — and
//! reads the whole body.
//!
//! Result: `{"status": 200, "bytes": 1234, "content_type": "text/plain"}`
//! (`content_type` null when absent; `bytes` of the last response).
//!
//! Errors: bad params are fatal; an HTTP error of the host (a refused
//! request, a connect timeout, a body over the limit) is retryable (the host
//! turns a refusal or a limit into the permanent `outbound_denied` /
//! `outbound_limit`); a non-2xx status is a success with that status.

use serde::{Deserialize, Serialize};
use sluice_guest::{Plugin, Task, TaskError};

/// Most times one task may repeat its request.
pub const MAX_REPEAT: u32 = 100;

/// The task's params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// HTTP method, e.g. `GET`, `HEAD`, `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// How many times to send the request (default 1).
    #[serde(default = "default_repeat")]
    pub repeat: u32,
}

fn default_method() -> String {
    "GET".into()
}

fn default_repeat() -> u32 {
    1
}

/// The task's result.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Fetched {
    /// The response's status code.
    pub status: u16,
    /// Bytes of the response body.
    pub bytes: u64,
    /// The response's `content-type`, if any.
    pub content_type: Option<String>,
}

/// The plugin.
pub struct FetchUrl;

impl Plugin for FetchUrl {
    fn task_types() -> Vec<String> {
        vec!["fetch_url".into()]
    }

    fn handle(task: Task) -> Result<impl Serialize, TaskError> {
        let params: Params = task.params()?;
        if !(1..=MAX_REPEAT).contains(&params.repeat) {
            return Err(TaskError::fatal(format_args!(
                "repeat must be between 1 and {MAX_REPEAT}"
            )));
        }
        if !(params.url.starts_with("http://") || params.url.starts_with("https://")) {
            return Err(TaskError::fatal(format_args!(
                "url {:?} must be an absolute http:// or https:// URL",
                params.url
            )));
        }
        let mut last = None;
        for _ in 0..params.repeat {
            last = Some(fetch(&params)?);
        }
        Ok(last.expect("repeat is at least 1"))
    }
}

#[cfg(target_arch = "wasm32")]
fn fetch(params: &Params) -> Result<Fetched, TaskError> {
    use wstd::http::{Body, Client, Method, Request};

    let method = Method::from_bytes(params.method.to_ascii_uppercase().as_bytes())
        .map_err(|e| TaskError::fatal(format_args!("bad method {:?}: {e}", params.method)))?;
    let request = Request::builder()
        .method(method)
        .uri(&params.url)
        .body(Body::empty())
        .map_err(|e| TaskError::fatal(format_args!("bad request for {:?}: {e}", params.url)))?;
    wstd::runtime::block_on(async {
        let response = Client::new().send(request).await.map_err(|e| {
            TaskError::retryable(format_args!("request to {} failed: {e:?}", params.url))
        })?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let body = body.bytes_contents().await.map_err(|e| {
            TaskError::retryable(format_args!(
                "reading the body of {} failed: {e:?}",
                params.url
            ))
        })?;
        Ok(Fetched {
            status,
            bytes: body.len() as u64,
            content_type,
        })
    })
}

/// Natively there is no `wasi:http`: the plugin runs only as a component.
#[cfg(not(target_arch = "wasm32"))]
fn fetch(params: &Params) -> Result<Fetched, TaskError> {
    Err(TaskError::fatal(format_args!(
        "fetch_url needs wasi:http: run it as a component (url {:?})",
        params.url
    )))
}

sluice_guest::export_plugin!(FetchUrl);

#[cfg(test)]
mod tests {
    use super::*;

    fn task(params: &str) -> Task {
        Task {
            id: "t".into(),
            task_type: "fetch_url".into(),
            params: params.into(),
            attempt: 1,
        }
    }

    #[test]
    fn bad_params_are_fatal() {
        for params in [
            "{}",
            r#"{"url": "ftp://x"}"#,
            r#"{"url": "http://x", "repeat": 0}"#,
            r#"{"url": "http://x", "extra": 1}"#,
        ] {
            let err = sluice_guest::handle_to_json::<FetchUrl>(task(params)).unwrap_err();
            assert!(!err.is_retryable(), "{params}: {err}");
        }
    }
}
