//! The command-line options of the Redis connection, in one `clap::Args`
//! struct that every subcommand flattens (via its queue options), each with
//! its environment variable and its configuration-file key (top-level
//! `redis_url`, `redis_urls = [...]`, `cluster = true`, `tls_ca_cert`,
//! `tls_cert`, `tls_key`, `redis_password_file`, `wait_replicas`,
//! `wait_timeout_ms`; see [`crate::tenant::config`]).

use std::path::PathBuf;

use super::RedisConfig;

/// How to reach Redis.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisArgs {
    /// Redis URL: `redis://[user:password@]host:port[/db]`, or `rediss://…`
    /// for TLS. Give it several times with --cluster: the seed nodes.
    #[arg(
        long = "redis-url",
        env = "SLUICE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true,
        action = clap::ArgAction::Append
    )]
    pub redis_url: Vec<String>,
    /// The Redis URL(s) are seed nodes of a Redis Cluster: each queue's
    /// scripts run on the master owning its slot.
    #[arg(long, env = "SLUICE_CLUSTER", global = true)]
    pub cluster: bool,
    /// PEM file of the CA that signed the Redis server's certificate
    /// (rediss://), instead of the system's roots.
    #[arg(long, env = "SLUICE_TLS_CA_CERT", global = true)]
    pub tls_ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --tls-key).
    #[arg(long, env = "SLUICE_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// File whose first line is the Redis password (keeps it out of `ps`;
    /// wins over a password in the URL, the URL's user name is kept).
    #[arg(long, env = "SLUICE_REDIS_PASSWORD_FILE", global = true)]
    pub redis_password_file: Option<PathBuf>,
    /// After each acknowledgement batch, wait (Redis `WAIT`) until this many
    /// replicas of the queue's master have it, so that acknowledged results
    /// survive a failover. 0: do not wait.
    #[arg(long, env = "SLUICE_WAIT_REPLICAS", default_value_t = 0, global = true)]
    pub wait_replicas: u32,
    /// Longest `WAIT` for --wait-replicas, ms; past it the worker logs a
    /// warning and goes on (the acknowledgement itself is done).
    #[arg(
        long,
        env = "SLUICE_WAIT_TIMEOUT_MS",
        default_value_t = 1000,
        global = true
    )]
    pub wait_timeout_ms: u64,
}

impl RedisArgs {
    /// The connection settings these options describe.
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            urls: self.redis_url.clone(),
            cluster: self.cluster,
            tls_ca_cert: self.tls_ca_cert.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            password_file: self.redis_password_file.clone(),
            wait_replicas: self.wait_replicas,
            wait_timeout_ms: self.wait_timeout_ms,
        }
    }
}

/// The flags [`RedisArgs`] defines, as a configuration file writes them
/// (`--redis-url` …): the file's settings that apply to every subcommand,
/// not only `worker`.
pub const FLAGS: &[&str] = &[
    "--redis-url",
    "--cluster",
    "--tls-ca-cert",
    "--tls-cert",
    "--tls-key",
    "--redis-password-file",
    "--wait-replicas",
    "--wait-timeout-ms",
];
