//! One Redis connection type for every deployment: a single node, a Redis
//! Cluster, with or without TLS and authentication. The rest of Sluice sees
//! only [`RedisConn`] (a [`redis::aio::ConnectionLike`], so scripts,
//! commands and pipelines run on it unchanged) and [`Connector`], which
//! opens the connections a worker needs:
//!
//! - the **shared** connection ([`Connector::shared`]): every script and
//!   command; it reconnects by itself. On a Cluster it routes each script by
//!   `KEYS[1]` (the queue's slot) and follows `MOVED`/`ASK`, retrying
//!   `TRYAGAIN`/`CLUSTERDOWN` with a short backoff.
//! - the **fetch** connection ([`Connector::fetching`], Cluster only): the
//!   fetch scripts with *no* hidden retry. The cluster client re-sends a
//!   request after a dropped connection; a fetch whose reply was lost would
//!   then run twice and the first batch would sit unseen in a live worker's
//!   in-flight list. Surfacing the error instead lets the worker rotate its
//!   lease, as on any Redis outage (see `worker::lease`).
//! - a **blocking** connection ([`Connector::blocking`]) for the idle
//!   `BLMOVE`, which would stall every request queued behind it on the node
//!   owning the queue's slot; also without hidden retries (`MOVED` on a
//!   reshard and `UNBLOCKED` on a failover end the wait with an error).
//!
//! Options come from [`RedisConfig`] (built from the `--redis-url`,
//! `--cluster`, `--tls-*` and `--redis-password-file` flags, see [`args`]).
//! Connecting is bounded ([`CONNECT_TIMEOUT`]); a TLS failure names the CA
//! or certificate file involved ([`ConnectError`]).
//!
//! Sources: redis-rs 1.8 `cluster_async` docs; the measurements in the
//! project's notes on Redis Cluster (blocking commands, hidden retries,
//! cross-slot pipelines, `TIME` routed to a random node).

pub mod args;
pub mod slot;
pub mod topology;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionInfo, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, TlsCertificates, Value,
};

pub use args::RedisArgs;

/// Longest time one connection attempt may take at start-up (TCP, TLS
/// handshake, `AUTH`, and on a Cluster the slot map). A wrong CA or an
/// unreachable seed ends in an error, never a hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Redis is and how to reach it. [`RedisConfig::single`] is the
/// classic `--redis-url URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URLs (with `user:password@` for ACL
    /// authentication). Without `cluster`: exactly one. With it: seed nodes.
    pub urls: Vec<String>,
    /// The URLs are seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// PEM file of the CA that signed the server certificates (instead of
    /// the system's roots).
    pub tls_ca_cert: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// File whose first line is the password (so that it is not in `ps`).
    /// Wins over a password in the URL; the URL's user name is kept.
    pub password_file: Option<PathBuf>,
    /// Replicas that must confirm each acknowledgement batch (Redis `WAIT`);
    /// 0: do not wait.
    pub wait_replicas: u32,
    /// How long one `WAIT` may block, ms.
    pub wait_timeout_ms: u64,
}

impl RedisConfig {
    /// One plain Redis server at `url`.
    pub fn single(url: &str) -> RedisConfig {
        RedisConfig {
            urls: vec![url.to_owned()],
            cluster: false,
            tls_ca_cert: None,
            tls_cert: None,
            tls_key: None,
            password_file: None,
            wait_replicas: 0,
            wait_timeout_ms: 1000,
        }
    }

    /// The URLs for messages, with passwords hidden.
    pub fn display_urls(&self) -> String {
        self.urls
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://{auth}@{host}"),
    }
}

/// Why Sluice could not set up its Redis connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A file named by an option cannot be read.
    #[error("cannot read {option} {}: {source}", path.display())]
    File {
        /// The option naming the file (`--tls-ca-cert`, …).
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The options do not fit together, or a URL is invalid.
    #[error("{0}")]
    Config(String),
    /// Redis refused or failed the connection.
    #[error("cannot connect to redis at {urls}: {source}{hint}")]
    Redis {
        /// The URLs tried (passwords hidden).
        urls: String,
        /// The Redis error.
        source: RedisError,
        /// What to check (names the TLS file involved), or empty.
        hint: String,
    },
    /// No answer within [`CONNECT_TIMEOUT`].
    #[error("cannot connect to redis at {urls}: no answer within {}s{hint}", CONNECT_TIMEOUT.as_secs())]
    Timeout {
        /// The URLs tried (passwords hidden).
        urls: String,
        /// What to check, or empty.
        hint: String,
    },
}

/// A connection to Redis, whatever the deployment. Cheap to clone: clones
/// share the underlying multiplexed connection(s).
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting by itself.
    Single(ConnectionManager),
    /// One server, one plain connection (the blocking fetch).
    Plain(MultiplexedConnection),
    /// A Redis Cluster: one multiplexed connection per node, routed by slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Plain(_) => "RedisConn::Plain",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// Runs `cmd` on the master that owns `key`'s slot (on a single server:
    /// on that server). For commands without keys whose answer depends on
    /// the node — `TIME` (lease expiry is on the queue's master's clock),
    /// `WAIT` (counts replicas of that master) — which the cluster client
    /// would otherwise send to a random node.
    ///
    /// # Errors
    /// The Redis error, or the reply's conversion error.
    pub async fn query_on_node_of<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match self {
            RedisConn::Cluster(conn) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let value = conn
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(T::from_redis_value(value)?)
            }
            _ => cmd.query_async(self).await,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Plain(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Plain(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Opens connections as [`RedisConfig`] says. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    /// Parsed URLs, with the password file applied.
    nodes: Vec<ConnectionInfo>,
    certs: Option<TlsCertificates>,
    /// Single node: its client.
    client: Option<Client>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("urls", &self.inner.config.display_urls())
            .field("cluster", &self.inner.config.cluster)
            .finish_non_exhaustive()
    }
}

/// Reads a file an option names.
fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::File {
        option,
        path: path.to_owned(),
        source,
    })
}

impl Connector {
    /// Checks `config` and reads its files (no network yet).
    ///
    /// # Errors
    /// [`ConnectError::File`] for an unreadable file; [`ConnectError::Config`]
    /// for an invalid URL, several URLs without `cluster`, or a client
    /// certificate without its key.
    pub fn new(config: &RedisConfig) -> Result<Connector, ConnectError> {
        if config.urls.is_empty() {
            return Err(ConnectError::Config("no --redis-url given".into()));
        }
        if config.urls.len() > 1 && !config.cluster {
            return Err(ConnectError::Config(format!(
                "{} Redis URLs given ({}) but not --cluster (SLUICE_CLUSTER): several URLs are the seed nodes of a Redis Cluster",
                config.urls.len(),
                config.display_urls()
            )));
        }
        let password = match &config.password_file {
            Some(path) => {
                let text = read("--redis-password-file", path)?;
                let text = String::from_utf8(text).map_err(|_| {
                    ConnectError::Config(format!(
                        "--redis-password-file {}: not UTF-8 text",
                        path.display()
                    ))
                })?;
                let password = text.lines().next().unwrap_or("").to_owned();
                if password.is_empty() {
                    return Err(ConnectError::Config(format!(
                        "--redis-password-file {}: the first line (the password) is empty",
                        path.display()
                    )));
                }
                Some(password)
            }
            None => None,
        };
        let client_tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("--tls-cert", cert)?,
                client_key: read("--tls-key", key)?,
            }),
            (None, None) => None,
            _ => {
                return Err(ConnectError::Config(
                    "--tls-cert and --tls-key (SLUICE_TLS_CERT, SLUICE_TLS_KEY) go together: give both for mutual TLS".into(),
                ));
            }
        };
        let root_cert = config
            .tls_ca_cert
            .as_deref()
            .map(|p| read("--tls-ca-cert", p))
            .transpose()?;
        let tls = config.urls.iter().any(|u| is_tls_url(u));
        let certs = (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        });
        if certs.is_some() && !tls {
            return Err(ConnectError::Config(format!(
                "--tls-ca-cert/--tls-cert need a rediss:// URL (got {})",
                config.display_urls()
            )));
        }
        let mut nodes = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let info = url.as_str().into_connection_info().map_err(|e| {
                ConnectError::Config(format!("invalid Redis URL {}: {e}", redact(url)))
            })?;
            let info = match &password {
                Some(p) => {
                    let settings = info.redis_settings().clone().set_password(p);
                    info.set_redis_settings(settings)
                }
                None => info,
            };
            nodes.push(info);
        }
        let client = if config.cluster {
            None
        } else {
            let info = nodes[0].clone();
            let client = match &certs {
                Some(certs) => Client::build_with_tls(info, certs.clone()),
                None => Client::open(info),
            };
            Some(client.map_err(|e| ConnectError::Config(format!("{e}")))?)
        };
        Ok(Connector {
            inner: Arc::new(Inner {
                config: config.clone(),
                nodes,
                certs,
                client,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether Redis is a Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.config.cluster
    }

    /// A cluster client: `retries` hidden retries (MOVED/ASK/TRYAGAIN/
    /// reconnects), `response` timeout per request.
    fn cluster_client(&self, retries: u32, response: Duration) -> RedisResult<ClusterClient> {
        let mut builder = ClusterClientBuilder::new(self.inner.nodes.clone())
            .retries(retries)
            // TRYAGAIN during a slot migration lasts as long as the
            // migration; redis-rs's default first wait is 1.28 s.
            .min_retry_wait(50)
            .max_retry_wait(1000)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(response)
            .overall_response_timeout(Some(response * 3));
        if let Some(certs) = &self.inner.certs {
            builder = builder.certs(certs.clone());
        }
        builder.build()
    }

    /// Runs `connect` with [`CONNECT_TIMEOUT`], describing failures.
    async fn bounded<T>(
        &self,
        connect: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, ConnectError> {
        let urls = self.inner.config.display_urls();
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => {
                let hint = self.hint(&source.to_string());
                Err(ConnectError::Redis { urls, source, hint })
            }
            Err(_) => Err(ConnectError::Timeout {
                urls,
                hint: self.hint(""),
            }),
        }
    }

    /// What to check after a failed connection: the TLS files involved.
    fn hint(&self, error: &str) -> String {
        let config = &self.inner.config;
        let lower = error.to_ascii_lowercase();
        let tls = config.urls.iter().any(|u| is_tls_url(u));
        let cert_problem = lower.contains("certificate")
            || lower.contains("unknownissuer")
            || lower.contains("tls")
            || lower.contains("handshake");
        if tls && (cert_problem || error.is_empty()) {
            let ca = match &config.tls_ca_cert {
                Some(ca) => format!(
                    "is the server's certificate signed by the CA in --tls-ca-cert {}?",
                    ca.display()
                ),
                None => "the server's certificate is checked against the system's CA roots; give --tls-ca-cert FILE for a private CA".into(),
            };
            let client = match &config.tls_cert {
                Some(cert) => format!(
                    " Does the server accept the client certificate --tls-cert {}?",
                    cert.display()
                ),
                None => String::new(),
            };
            format!(" (TLS: {ca}{client})")
        } else if !tls && (lower.contains("reset") || lower.contains("broken pipe")) {
            " (does the server want TLS? use a rediss:// URL)".into()
        } else {
            String::new()
        }
    }

    /// The shared connection: scripts and commands, reconnecting by itself.
    ///
    /// # Errors
    /// [`ConnectError`] when the first connection fails or takes longer than
    /// [`CONNECT_TIMEOUT`].
    pub async fn shared(&self) -> Result<RedisConn, ConnectError> {
        match &self.inner.client {
            Some(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(3)
                    .set_max_delay(Duration::from_secs(2))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                let conn = self
                    .bounded(ConnectionManager::new_with_config(client.clone(), config))
                    .await?;
                Ok(RedisConn::Single(conn))
            }
            None => {
                let client = self
                    .cluster_client(6, Duration::from_secs(5))
                    .map_err(|e| ConnectError::Config(e.to_string()))?;
                let conn = self.bounded(client.get_async_connection()).await?;
                Ok(RedisConn::Cluster(conn))
            }
        }
    }

    /// The fetch connection of a Cluster: no hidden retries (see the module
    /// docs). On a single server, a new shared connection.
    ///
    /// # Errors
    /// As [`Connector::shared`].
    pub async fn fetching(&self) -> Result<RedisConn, ConnectError> {
        if self.inner.client.is_some() {
            return self.shared().await;
        }
        let client = self
            .cluster_client(0, Duration::from_secs(5))
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        Ok(RedisConn::Cluster(
            self.bounded(client.get_async_connection()).await?,
        ))
    }

    /// A dedicated connection for blocking commands that wait up to `block`
    /// (`BLMOVE`): on a Cluster it only ever talks to the node owning the
    /// queue's slot, and has no hidden retries.
    ///
    /// # Errors
    /// As [`Connector::shared`].
    pub async fn blocking(&self, block: Duration) -> Result<RedisConn, ConnectError> {
        let response = block + Duration::from_secs(5);
        match &self.inner.client {
            Some(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(response))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                Ok(RedisConn::Plain(
                    self.bounded(client.get_multiplexed_async_connection_with_config(&config))
                        .await?,
                ))
            }
            None => {
                let client = self
                    .cluster_client(0, response)
                    .map_err(|e| ConnectError::Config(e.to_string()))?;
                Ok(RedisConn::Cluster(
                    self.bounded(client.get_async_connection()).await?,
                ))
            }
        }
    }
}

/// Whether `url` asks for TLS.
fn is_tls_url(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("redis://u:secret@h:1/"), "redis://u:***@h:1/");
        assert_eq!(redact("rediss://:secret@h"), "rediss://:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn several_urls_need_cluster() {
        let mut config = RedisConfig::single("redis://127.0.0.1:1");
        config.urls.push("redis://127.0.0.1:2".into());
        let err = Connector::new(&config).unwrap_err().to_string();
        assert!(err.contains("--cluster"), "{err}");
        config.cluster = true;
        assert!(Connector::new(&config).is_ok());
    }

    #[test]
    fn tls_files_are_named() {
        let mut config = RedisConfig::single("rediss://127.0.0.1:1");
        config.tls_ca_cert = Some("/nonexistent/ca.pem".into());
        let err = Connector::new(&config).unwrap_err().to_string();
        assert!(
            err.contains("--tls-ca-cert") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        config.tls_ca_cert = None;
        config.tls_cert = Some("/nonexistent/c.pem".into());
        let err = Connector::new(&config).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
    }

    #[test]
    fn empty_password_file_is_refused() {
        let path = std::env::temp_dir().join(format!("sluice-pw-{}", std::process::id()));
        std::fs::write(&path, "\n").unwrap();
        let mut config = RedisConfig::single("redis://127.0.0.1:1");
        config.password_file = Some(path.clone());
        let err = Connector::new(&config).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("empty"), "{err}");
    }
}
