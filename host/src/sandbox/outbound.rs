//! Outbound HTTP (`wasi:http/outgoing-handler`, WASI 0.2) behind an
//! allow-list, the way Spin gates it with `allowed_outbound_hosts`.
//!
//! Every request a guest sends passes through [`OutboundHooks::send_request`]
//! (wasmtime-wasi-http's `WasiHttpHooks` hook) **before** any DNS lookup or
//! connection: a request whose scheme, host and port no pattern of the
//! plugin's manifest (and, in tenant mode, of its tenant's ceiling) allows
//! fails inside the guest with `error-code::HTTP-request-denied`, and the
//! worker logs it once per task with the task id. Past the manifest's
//! `max_outbound_requests` a request fails with
//! `error-code::internal-error("max_outbound_requests … reached")`; a
//! response body that takes the task past `max_outbound_response_bytes`
//! fails with `error-code::HTTP-response-body-size`. The connect timeout is
//! the smaller of the guest's own and the manifest's
//! `outbound_connect_timeout_ms`. wasi-http never follows redirects (a 3xx is
//! handed to the guest, whose next request is checked again), DNS names are
//! resolved by the host, and `wasi:sockets` grants nothing.
//!
//! Pattern grammar (Spin's, see
//! <https://spinframework.dev/v3/http-outbound#granting-http-permissions-to-components>):
//! `SCHEME://HOST[:PORT]` where
//! - `SCHEME` is `http`, `https` or `*`;
//! - `HOST` is a name or IP address (`[::1]` for IPv6), `*` (any host) or
//!   `*.example.com` (any subdomain of example.com, not example.com itself);
//! - `PORT` is a number, `*` (any port) or a range `8000..8090` (end
//!   excluded, as in Spin); absent, it is the scheme's default (80, 443).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One `allowed_outbound_hosts` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// `None`: any scheme (`*`).
    scheme: Option<String>,
    host: HostMatch,
    port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// `*.example.com`: stored as `.example.com`.
    Suffix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortMatch {
    Any,
    /// Start included, end excluded.
    Range(u16, u16),
    Exact(u16),
    /// No port given: the request's scheme's default port.
    SchemeDefault,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostPattern {
    /// Parses one pattern, e.g. `"https://*.example.com"` or `"http://127.0.0.1:*"`.
    ///
    /// # Errors
    /// A sentence naming what is wrong: no `://`, an unknown scheme, an
    /// empty or malformed host, a bad port, a path.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| {
            format!(
                "{text:?}: {why} (expected e.g. \"https://api.example.com\", \"http://127.0.0.1:8080\", \"https://*.example.com\" or \"http://localhost:*\")"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => None,
            s @ ("http" | "https") => Some(s.to_owned()),
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(bad("a pattern names a scheme, a host and a port, no path"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("malformed host"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(bad("a wildcard host is \"*\" or \"*.domain\""));
            }
            HostMatch::Suffix(format!(".{domain}"))
        } else if host.contains('*') {
            return Err(bad("a wildcard host is \"*\" or \"*.domain\""));
        } else {
            HostMatch::Exact(host)
        };
        let port = match port {
            None => {
                if scheme.is_none() {
                    return Err(bad("a pattern with scheme * must give a port (or *)"));
                }
                PortMatch::SchemeDefault
            }
            Some("*") => PortMatch::Any,
            Some(p) => match p.split_once("..") {
                Some((a, b)) => {
                    let (a, b) = (
                        a.parse().map_err(|_| bad("bad port range"))?,
                        b.parse().map_err(|_| bad("bad port range"))?,
                    );
                    if a >= b {
                        return Err(bad("an empty port range"));
                    }
                    PortMatch::Range(a, b)
                }
                None => PortMatch::Exact(p.parse().map_err(|_| bad("bad port"))?),
            },
        };
        Ok(HostPattern { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` matches (`host` lowercase,
    /// IPv6 without brackets).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostMatch::Exact(h) => h.trim_start_matches('[').trim_end_matches(']') == host,
        };
        let port_ok = match self.port {
            PortMatch::Any => true,
            PortMatch::Range(a, b) => (a..b).contains(&port),
            PortMatch::Exact(p) => p == port,
            PortMatch::SchemeDefault => default_port(scheme) == Some(port),
        };
        scheme_ok && host_ok && port_ok
    }
}

/// `host[:port]`, with `[v6]` brackets kept on the host.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((text, None)),
    }
}

/// A list of [`HostPattern`]s: a request is allowed when any matches.
/// Empty (the default) allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<HostPattern>,
}

impl AllowList {
    /// Parses every entry.
    ///
    /// # Errors
    /// The first bad entry's explanation (see [`HostPattern::parse`]).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let patterns = entries
            .iter()
            .map(|e| HostPattern::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { patterns })
    }

    /// Whether no request at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern allows `scheme://host:port`.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.patterns.iter().any(|p| p.allows(scheme, host, port))
    }
}

/// The outbound limits of one task, from its manifest and its tenant.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutboundPolicy {
    /// The manifest's `allowed_outbound_hosts`.
    pub(crate) allowed: Arc<AllowList>,
    /// The tenant's `allowed_outbound_hosts` (a ceiling: both must allow).
    pub(crate) ceiling: Option<Arc<AllowList>>,
    /// The manifest's `max_outbound_requests`.
    pub(crate) max_requests: u32,
    /// The manifest's `max_outbound_response_bytes`.
    pub(crate) max_response_bytes: u64,
    /// The manifest's `outbound_connect_timeout_ms`.
    pub(crate) connect_timeout: Duration,
}

/// What one task sent and received; shared with the response bodies, which
/// are read after the hook returned.
#[derive(Debug, Default)]
pub(crate) struct OutboundMeter {
    /// Requests the guest sent (allowed or not).
    pub(crate) requests: AtomicU64,
    /// Response body bytes the guest received.
    pub(crate) bytes: AtomicU64,
    /// A request was refused by the allow-list.
    pub(crate) denied: AtomicBool,
    /// The request or response-size cap was hit.
    pub(crate) limited: AtomicBool,
}

/// Why the task's outbound traffic was cut short, if it was: the message
/// of the task's failure when the guest then failed.
pub(crate) enum OutboundBreach {
    /// A request was refused by the allow-list.
    Denied,
    /// A request or response-size cap was reached.
    Limited,
}

/// The `WasiHttpHooks` of one task: checks each request, counts, caps.
#[derive(Debug, Default)]
pub(crate) struct OutboundHooks {
    pub(crate) policy: OutboundPolicy,
    pub(crate) meter: Arc<OutboundMeter>,
    /// The running task's id, for the refusal's log line.
    pub(crate) task_id: String,
}

impl OutboundHooks {
    /// Clears the meter for a new task `task_id` (a reused instance).
    pub(crate) fn reset(&mut self, task_id: &str) {
        self.meter = Arc::default();
        task_id.clone_into(&mut self.task_id);
    }

    /// What was cut short, if anything.
    pub(crate) fn breach(&self) -> Option<OutboundBreach> {
        if self.meter.denied.load(Ordering::Relaxed) {
            Some(OutboundBreach::Denied)
        } else if self.meter.limited.load(Ordering::Relaxed) {
            Some(OutboundBreach::Limited)
        } else {
            None
        }
    }

    /// `Ok` when the request may go out.
    fn check(&self, uri: &http::Uri) -> Result<(), HttpError> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(authority) = uri.authority() else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = authority.port_u16().or_else(|| default_port(&scheme));
        let allowed = port.is_some_and(|port| {
            self.policy.allowed.allows(&scheme, &host, port)
                && self
                    .policy
                    .ceiling
                    .as_ref()
                    .is_none_or(|c| c.allows(&scheme, &host, port))
        });
        if allowed {
            return Ok(());
        }
        // Logged once per task; the guest sees every refusal.
        if !self.meter.denied.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "sluice::plugin",
                task_id = %self.task_id,
                url = %uri,
                "outbound HTTP request refused: {scheme}://{host}:{} is not in allowed_outbound_hosts{}",
                port.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                if self.policy.ceiling.is_some() { " (of the plugin and its tenant)" } else { "" },
            );
        }
        Err(HttpError::HttpRequestDenied)
    }
}

/// What `send_request` resolves to: the response and its connection's
/// driver, or the error the guest sees.
type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

type SendFuture = Box<dyn Future<Output = Sent> + Send>;

/// A request that fails at once with `error`, before any connection.
fn refused(error: HttpError) -> SendFuture {
    Box::new(std::future::ready::<Sent>(Err(error)))
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let sent = self.meter.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(e) = self.check(request.uri()) {
            return refused(e);
        }
        if sent > u64::from(self.policy.max_requests) {
            self.meter.limited.store(true, Ordering::Relaxed);
            return refused(HttpError::InternalError(Some(format!(
                "max_outbound_requests ({}) reached for this task",
                self.policy.max_requests
            ))));
        }
        let mut options = options.unwrap_or_default();
        options.connect_timeout = Some(
            options
                .connect_timeout
                .map_or(self.policy.connect_timeout, |t| {
                    t.min(self.policy.connect_timeout)
                }),
        );
        let meter = self.meter.clone();
        let limit = self.policy.max_response_bytes;
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            if let Some(length) = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                && meter.bytes.load(Ordering::Relaxed).saturating_add(length) > limit
            {
                meter.limited.store(true, Ordering::Relaxed);
                return Err(HttpError::HttpResponseBodySize(Some(length)));
            }
            let response = response.map(|body| {
                Metered {
                    body: body.boxed_unsync(),
                    meter,
                    limit,
                }
                .boxed_unsync()
            });
            let sent: Sent = Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>));
            sent
        })
    }
}

/// A response body that adds what it yields to the task's meter and fails
/// once the task's response bytes pass the limit.
struct Metered {
    body: WasiBody,
    meter: Arc<OutboundMeter>,
    limit: u64,
}

impl Body for Metered {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let total = self
                .meter
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed)
                + data.len() as u64;
            if total > self.limit {
                self.meter.limited.store(true, Ordering::Relaxed);
                return std::task::Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                    total,
                )))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, scheme: &str, host: &str, port: u16) -> bool {
        HostPattern::parse(pattern)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn spin_patterns_match_as_documented() {
        assert!(allows("http://127.0.0.1:8080", "http", "127.0.0.1", 8080));
        assert!(!allows("http://127.0.0.1:8080", "http", "127.0.0.1", 8081));
        assert!(!allows("http://127.0.0.1:8080", "https", "127.0.0.1", 8080));
        assert!(allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            443
        ));
        assert!(!allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            8443
        ));
        assert!(allows(
            "https://*.example.com",
            "https",
            "a.b.example.com",
            443
        ));
        assert!(!allows(
            "https://*.example.com",
            "https",
            "example.com",
            443
        ));
        assert!(!allows(
            "https://*.example.com",
            "https",
            "badexample.com",
            443
        ));
        assert!(allows("http://127.0.0.1:*", "http", "127.0.0.1", 1));
        assert!(allows(
            "http://localhost:8000..8002",
            "http",
            "localhost",
            8001
        ));
        assert!(!allows(
            "http://localhost:8000..8002",
            "http",
            "localhost",
            8002
        ));
        assert!(allows("*://*:*", "https", "anything", 9));
        assert!(allows("http://[::1]:*", "http", "::1", 80));
        assert!(allows(
            "HTTP://API.Example.com/",
            "http",
            "api.example.com",
            80
        ));
    }

    #[test]
    fn bad_patterns_are_explained() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://",
            "http://a:b",
            "http://x/path",
            "http://a*b.com",
            "*://host",
            "http://x:9..3",
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let list = AllowList::parse::<&str>(&[]).unwrap();
        assert!(list.is_empty() && !list.allows("http", "127.0.0.1", 80));
    }
}
