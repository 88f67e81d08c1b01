//! The worker's configuration file (`sluice worker --config FILE`, env
//! `SLUICE_CONFIG`): TOML whose top-level keys are the worker flags in
//! snake_case, and one `[[tenant]]` table per tenant.
//!
//! ```toml
//! redis_url = "redis://127.0.0.1:6379"
//! concurrency = 16
//!
//! [[tenant]]
//! name = "acme"
//! plugins = "plugins/acme"      # relative to this file
//! weight = 3
//! cpu_ms_per_min = 60000
//!
//! [[tenant]]
//! name = "globex"
//! queue = "globex_tasks"
//! plugins = "plugins/globex"
//! rate_per_sec = 50
//! ```
//!
//! Every problem is a [`ConfigError`] naming the file, the line and the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// What is wrong with a configuration file: where, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending key (1 when the file cannot be read).
    pub line: usize,
    /// The offending key (`tenant[2].name`, `concurrency`, …).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Worker settings a configuration file may give: the `sluice worker` flags
/// in snake_case. A flag given on the command line (or its environment
/// variable) wins over the file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--redis-url` given several times: the seed nodes of a Redis Cluster
    /// (with `cluster = true`).
    pub redis_urls: Option<Vec<String>>,
    /// `--cluster`: the Redis URLs are seed nodes of a Redis Cluster.
    pub cluster: Option<bool>,
    /// `--tls-ca-cert`, relative to the file.
    pub tls_ca_cert: Option<PathBuf>,
    /// `--tls-cert`, relative to the file.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`, relative to the file.
    pub tls_key: Option<PathBuf>,
    /// `--redis-password-file`, relative to the file.
    pub redis_password_file: Option<PathBuf>,
    /// `--wait-replicas`.
    pub wait_replicas: Option<u64>,
    /// `--wait-timeout-ms`.
    pub wait_timeout_ms: Option<u64>,
    /// `--queue` (single-tenant mode: a file without `[[tenant]]`).
    pub queue: Option<String>,
    /// `--plugins` (single-tenant mode), relative to the file.
    pub plugins: Option<PathBuf>,
    /// `--concurrency`: slots shared by all tenants.
    pub concurrency: Option<u64>,
    /// `--burst`.
    pub burst: Option<bool>,
    /// `--grace-secs`.
    pub grace_secs: Option<u64>,
    /// `--lease-ms`.
    pub lease_ms: Option<u64>,
    /// `--heartbeat-ms`.
    pub heartbeat_ms: Option<u64>,
    /// `--max-retries`.
    pub max_retries: Option<u64>,
    /// `--backoff-base-ms`.
    pub backoff_base_ms: Option<u64>,
    /// `--backoff-cap-ms`.
    pub backoff_cap_ms: Option<u64>,
    /// `--max-crashes`.
    pub max_crashes: Option<u64>,
    /// `--unknown-type-grace-ms`.
    pub unknown_type_grace_ms: Option<u64>,
    /// `--no-watch`.
    pub no_watch: Option<bool>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<String>,
    /// `--result-ttl-secs`.
    pub result_ttl_secs: Option<u64>,
    /// `--max-message-bytes`: longest message a worker takes, bytes (a
    /// tenant's own `max_message_bytes` wins for its queue).
    pub max_message_bytes: Option<u64>,
    /// `--max-result-bytes`: longest result stored, bytes (a plugin
    /// manifest's `max_result_bytes` wins for its tasks).
    pub max_result_bytes: Option<u64>,
}

impl WorkerSettings {
    /// The settings as command-line flags (`("--concurrency", Some("16"))`;
    /// a switch that is on has no value), in a fixed order.
    pub fn as_flags(&self) -> Vec<(&'static str, Option<String>)> {
        let mut flags = Vec::new();
        let mut value = |flag, v: Option<String>| {
            if let Some(v) = v {
                flags.push((flag, Some(v)));
            }
        };
        value("--redis-url", self.redis_url.clone());
        for url in self.redis_urls.iter().flatten() {
            value("--redis-url", Some(url.clone()));
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        value("--tls-ca-cert", path(&self.tls_ca_cert));
        value("--tls-cert", path(&self.tls_cert));
        value("--tls-key", path(&self.tls_key));
        value("--redis-password-file", path(&self.redis_password_file));
        value("--wait-replicas", self.wait_replicas.map(|v| v.to_string()));
        value(
            "--wait-timeout-ms",
            self.wait_timeout_ms.map(|v| v.to_string()),
        );
        value("--queue", self.queue.clone());
        value(
            "--plugins",
            self.plugins.as_ref().map(|p| p.display().to_string()),
        );
        value("--concurrency", self.concurrency.map(|v| v.to_string()));
        value("--grace-secs", self.grace_secs.map(|v| v.to_string()));
        value("--lease-ms", self.lease_ms.map(|v| v.to_string()));
        value("--heartbeat-ms", self.heartbeat_ms.map(|v| v.to_string()));
        value("--max-retries", self.max_retries.map(|v| v.to_string()));
        value(
            "--backoff-base-ms",
            self.backoff_base_ms.map(|v| v.to_string()),
        );
        value(
            "--backoff-cap-ms",
            self.backoff_cap_ms.map(|v| v.to_string()),
        );
        value("--max-crashes", self.max_crashes.map(|v| v.to_string()));
        value(
            "--unknown-type-grace-ms",
            self.unknown_type_grace_ms.map(|v| v.to_string()),
        );
        value("--metrics-addr", self.metrics_addr.clone());
        value(
            "--result-ttl-secs",
            self.result_ttl_secs.map(|v| v.to_string()),
        );
        value(
            "--max-message-bytes",
            self.max_message_bytes.map(|v| v.to_string()),
        );
        value(
            "--max-result-bytes",
            self.max_result_bytes.map(|v| v.to_string()),
        );
        if self.burst == Some(true) {
            flags.push(("--burst", None));
        }
        if self.no_watch == Some(true) {
            flags.push(("--no-watch", None));
        }
        if self.cluster == Some(true) {
            flags.push(("--cluster", None));
        }
        flags
    }
}

/// One `[[tenant]]` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpec {
    /// Tenant id, `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// The Redis list its producers push to (default: `name`).
    pub queue: String,
    /// Its plugins directory (resolved against the file's folder).
    pub plugins: PathBuf,
    /// Its share of a worker when tenants compete (default 1, > 0).
    pub weight: f64,
    /// Most of its tasks running at once on one worker (`None`: no cap).
    pub max_concurrency: Option<usize>,
    /// Most task starts per second across all workers (token bucket in Redis).
    pub rate_per_sec: Option<f64>,
    /// CPU budget, ms per rolling minute across all workers.
    pub cpu_ms_per_min: Option<u64>,
    /// Fuel per task (`fuel_exhausted` past it).
    pub fuel_per_task: Option<u64>,
    /// Ceiling over its manifests' `memory_bytes`.
    pub memory_bytes: Option<u64>,
    /// Ceiling over its manifests' `timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// Ceiling over its manifests' `allowed_outbound_hosts` (`None`: the
    /// manifests decide): a plugin's request goes out only when both its
    /// manifest and this list allow it.
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// What `reply_to` must start with (default `"<name>:"`).
    pub reply_to_prefix: String,
    /// Longest message taken from its queue, bytes (default: the worker's
    /// `--max-message-bytes`); a longer one is dead-lettered as `too_large`.
    pub max_message_bytes: Option<u64>,
}

/// A parsed configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The top-level worker settings (`plugins` resolved against the file's folder).
    pub worker: WorkerSettings,
    /// The tenants, in file order (none: single-tenant mode).
    pub tenants: Vec<TenantSpec>,
}

impl ConfigFile {
    /// The tenant called `name`.
    pub fn tenant(&self, name: &str) -> Option<&TenantSpec> {
        self.tenants.iter().find(|t| t.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<String>,
    queue: Option<Spanned<String>>,
    plugins: Spanned<PathBuf>,
    weight: Option<Spanned<f64>>,
    max_concurrency: Option<Spanned<u64>>,
    rate_per_sec: Option<Spanned<f64>>,
    cpu_ms_per_min: Option<Spanned<u64>>,
    fuel_per_task: Option<Spanned<u64>>,
    memory_bytes: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    allowed_outbound_hosts: Option<Spanned<Vec<String>>>,
    reply_to_prefix: Option<Spanned<String>>,
    max_message_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    tenant: Vec<RawTenant>,
    #[serde(flatten)]
    worker: toml::Table,
}

/// Reads and validates the configuration file at `path`.
///
/// # Errors
/// A [`ConfigError`] naming the file, line and key: unreadable file, bad
/// TOML, unknown key, a value of the wrong type, a bad tenant name,
/// duplicate tenant names or queues, a missing plugins directory, a weight
/// or rate that is not positive.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: 1,
        key: "-".into(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse(path, &text)
}

/// [`load`] for text already read from `path`.
///
/// # Errors
/// As [`load`].
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let err = |span: Option<std::ops::Range<usize>>, key: &str, message: String| ConfigError {
        file: path.to_owned(),
        line: span.map_or(1, |s| line_of(text, s.start)),
        key: key.to_owned(),
        message,
    };
    let toml_err = |e: toml::de::Error, key: Option<&str>| {
        let span = e.span();
        let key = key.map(str::to_owned).unwrap_or_else(|| {
            span.clone()
                .and_then(|s| text.get(s))
                .filter(|k| !k.contains('\n') && k.len() <= 64)
                .unwrap_or("-")
                .to_owned()
        });
        err(span, &key, e.message().to_owned())
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_err(e, None))?;
    // The top level: known worker flags only. (Re-parsed from its own table
    // so that an unknown key is reported by name; serde's flatten would
    // swallow it.)
    let worker: WorkerSettings =
        toml::Value::Table(raw.worker.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                let key = unknown_key(&e.to_string(), &raw.worker);
                let span = key.as_deref().and_then(|k| find_key(text, k));
                err(span, key.as_deref().unwrap_or("-"), e.message().to_owned())
            })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut worker = worker;
    worker.plugins = worker.plugins.map(|p| base.join(p));
    for file in [
        &mut worker.tls_ca_cert,
        &mut worker.tls_cert,
        &mut worker.tls_key,
        &mut worker.redis_password_file,
    ] {
        *file = file.take().map(|p| base.join(p));
    }
    let mut tenants = Vec::new();
    let mut names: HashMap<String, ()> = HashMap::new();
    let mut queues: HashMap<String, String> = HashMap::new();
    for (i, t) in raw.tenant.into_iter().enumerate() {
        let key = |k: &str| format!("tenant[{}].{k}", i + 1);
        let name = t.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(err(
                Some(t.name.span()),
                &key("name"),
                format!("{name:?} is not a valid tenant name ([a-z0-9_-]{{1,64}})"),
            ));
        }
        if names.insert(name.clone(), ()).is_some() {
            return Err(err(
                Some(t.name.span()),
                &key("name"),
                format!("duplicate tenant name {name:?}"),
            ));
        }
        let (queue, queue_span) = match &t.queue {
            Some(q) => (q.get_ref().clone(), q.span()),
            None => (name.clone(), t.name.span()),
        };
        if let Err(e) = crate::keys::check_queue_name(&queue) {
            return Err(err(Some(queue_span), &key("queue"), e.to_string()));
        }
        if let Some(other) = queues.insert(queue.clone(), name.clone()) {
            return Err(err(
                Some(queue_span),
                &key("queue"),
                format!("queue {queue:?} is already tenant {other:?}'s"),
            ));
        }
        let plugins = base.join(t.plugins.get_ref());
        if !plugins.is_dir() {
            return Err(err(
                Some(t.plugins.span()),
                &key("plugins"),
                format!("{} is not a directory", plugins.display()),
            ));
        }
        let weight = t.weight.as_ref().map_or(1.0, |w| *w.get_ref());
        if !(weight > 0.0 && weight.is_finite()) {
            let span = t.weight.as_ref().map(Spanned::span);
            return Err(err(
                span,
                &key("weight"),
                "must be a positive number".into(),
            ));
        }
        if let Some(rate) = &t.rate_per_sec
            && !(*rate.get_ref() > 0.0 && rate.get_ref().is_finite())
        {
            return Err(err(
                Some(rate.span()),
                &key("rate_per_sec"),
                "must be a positive number".into(),
            ));
        }
        for (k, v) in [
            ("max_concurrency", &t.max_concurrency),
            ("cpu_ms_per_min", &t.cpu_ms_per_min),
            ("fuel_per_task", &t.fuel_per_task),
            ("memory_bytes", &t.memory_bytes),
            ("timeout_ms", &t.timeout_ms),
            ("max_message_bytes", &t.max_message_bytes),
        ] {
            if let Some(v) = v
                && *v.get_ref() == 0
            {
                return Err(err(Some(v.span()), &key(k), "must be at least 1".into()));
            }
        }
        if let Some(hosts) = &t.allowed_outbound_hosts
            && let Err(e) = crate::sandbox::AllowList::parse(hosts.get_ref())
        {
            return Err(err(Some(hosts.span()), &key("allowed_outbound_hosts"), e));
        }
        let reply_to_prefix = t
            .reply_to_prefix
            .map_or_else(|| format!("{name}:"), Spanned::into_inner);
        tenants.push(TenantSpec {
            name,
            queue,
            plugins,
            weight,
            max_concurrency: t
                .max_concurrency
                .map(|v| usize::try_from(v.into_inner()).unwrap_or(usize::MAX)),
            rate_per_sec: t.rate_per_sec.map(Spanned::into_inner),
            cpu_ms_per_min: t.cpu_ms_per_min.map(Spanned::into_inner),
            fuel_per_task: t.fuel_per_task.map(Spanned::into_inner),
            memory_bytes: t.memory_bytes.map(Spanned::into_inner),
            timeout_ms: t.timeout_ms.map(Spanned::into_inner),
            allowed_outbound_hosts: t.allowed_outbound_hosts.map(Spanned::into_inner),
            reply_to_prefix,
            max_message_bytes: t.max_message_bytes.map(Spanned::into_inner),
        });
    }
    Ok(ConfigFile {
        path: path.to_owned(),
        worker,
        tenants,
    })
}

/// Whether `name` is a valid tenant name: `[a-z0-9_-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key serde complains about: an unknown one named in the message, or
/// the first key of the table whose value it could not take.
fn unknown_key(message: &str, table: &toml::Table) -> Option<String> {
    if let Some(rest) = message.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    table
        .keys()
        .find(|k| message.contains(&format!("`{k}`")) || message.contains(k.as_str()))
        .cloned()
}

/// Span of the top-level key `key` (a line starting with it, before any table header).
fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            return None;
        }
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let start = offset + (line.len() - trimmed.len());
            return Some(start..start + key.len());
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_dirs(text: &str) -> (PathBuf, Result<ConfigFile, ConfigError>) {
        let dir = std::env::temp_dir().join(format!("sluice-config-{}", fastrand::u64(..)));
        std::fs::create_dir_all(dir.join("a")).expect("mkdir");
        std::fs::create_dir_all(dir.join("b")).expect("mkdir");
        let path = dir.join("sluice.toml");
        let parsed = parse(&path, text);
        let _ = std::fs::remove_dir_all(&dir);
        (path, parsed)
    }

    #[test]
    fn a_full_file_parses_with_defaults() {
        let (path, parsed) = with_dirs(
            "concurrency = 16\nburst = true\n\n[[tenant]]\nname = \"acme\"\nplugins = \"a\"\nweight = 3\nrate_per_sec = 2.5\n\n[[tenant]]\nname = \"globex\"\nqueue = \"gq\"\nplugins = \"b\"\nfuel_per_task = 1000\n",
        );
        let config = parsed.expect("valid");
        assert_eq!(config.worker.concurrency, Some(16));
        assert_eq!(
            config.worker.as_flags(),
            vec![("--concurrency", Some("16".into())), ("--burst", None)]
        );
        let acme = config.tenant("acme").expect("acme");
        assert_eq!(acme.queue, "acme");
        assert_eq!(acme.weight, 3.0);
        assert_eq!(acme.reply_to_prefix, "acme:");
        assert_eq!(acme.plugins, path.parent().unwrap().join("a"));
        let globex = config.tenant("globex").expect("globex");
        assert_eq!(globex.queue, "gq");
        assert_eq!(globex.fuel_per_task, Some(1000));
    }

    #[test]
    fn an_unknown_tenant_key_names_line_and_key() {
        let (_, parsed) = with_dirs("[[tenant]]\nname = \"acme\"\nplugins = \"a\"\ncolour = 3\n");
        let e = parsed.expect_err("unknown key");
        assert_eq!((e.line, e.key.as_str()), (4, "colour"), "{e}");
        assert!(e.to_string().contains("sluice.toml:4: colour"), "{e}");
    }

    #[test]
    fn message_and_result_bounds_are_settings_and_a_tenant_key() {
        let (_, parsed) = with_dirs(
            "max_message_bytes = 2048\nmax_result_bytes = 4096\n\n[[tenant]]\nname = \"x\"\nplugins = \"a\"\nmax_message_bytes = 512\n",
        );
        let config = parsed.expect("valid");
        assert_eq!(
            config.worker.as_flags(),
            vec![
                ("--max-message-bytes", Some("2048".into())),
                ("--max-result-bytes", Some("4096".into()))
            ]
        );
        assert_eq!(config.tenant("x").unwrap().max_message_bytes, Some(512));
        let (_, e) =
            with_dirs("[[tenant]]\nname = \"x\"\nplugins = \"a\"\nmax_message_bytes = 0\n");
        assert_eq!(e.expect_err("zero").key, "tenant[1].max_message_bytes");
    }

    #[test]
    fn connection_keys_become_connection_flags() {
        let (path, parsed) = with_dirs(
            "cluster = true\nredis_urls = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\ntls_ca_cert = \"ca.pem\"\nredis_password_file = \"/run/secret\"\nwait_replicas = 1\n",
        );
        let config = parsed.expect("valid");
        let ca = path.parent().unwrap().join("ca.pem").display().to_string();
        assert_eq!(
            config.worker.as_flags(),
            vec![
                ("--redis-url", Some("redis://10.0.0.1:7000".into())),
                ("--redis-url", Some("redis://10.0.0.2:7000".into())),
                ("--tls-ca-cert", Some(ca)),
                ("--redis-password-file", Some("/run/secret".into())),
                ("--wait-replicas", Some("1".into())),
                ("--cluster", None),
            ]
        );
    }

    #[test]
    fn a_queue_name_that_breaks_the_hash_tag_is_refused() {
        let (_, e) = with_dirs("[[tenant]]\nname = \"x\"\nqueue = \"{jobs}\"\nplugins = \"a\"\n");
        let e = e.expect_err("braces");
        assert_eq!((e.line, e.key.as_str()), (3, "tenant[1].queue"), "{e}");
        assert!(e.message.contains("hash tag"), "{e}");
    }

    #[test]
    fn an_unknown_top_level_key_names_line_and_key() {
        let (_, parsed) = with_dirs("concurrency = 4\nspeed = 9\n");
        let e = parsed.expect_err("unknown key");
        assert_eq!((e.line, e.key.as_str()), (2, "speed"), "{e}");
    }

    #[test]
    fn duplicates_bad_names_and_missing_dirs_are_refused() {
        let two = |a: &str, b: &str| {
            format!("[[tenant]]\n{a}\nplugins = \"a\"\n\n[[tenant]]\n{b}\nplugins = \"b\"\n")
        };
        let (_, e) = with_dirs(&two("name = \"x\"", "name = \"x\""));
        let e = e.expect_err("duplicate");
        assert_eq!((e.line, e.key.as_str()), (6, "tenant[2].name"), "{e}");
        let (_, e) = with_dirs(&two("name = \"x\"", "name = \"y\"\nqueue = \"x\""));
        let e = e.expect_err("duplicate queue");
        assert_eq!((e.line, e.key.as_str()), (7, "tenant[2].queue"), "{e}");
        let (_, e) = with_dirs("[[tenant]]\nname = \"Bad Name\"\nplugins = \"a\"\n");
        assert_eq!(e.expect_err("bad name").key, "tenant[1].name");
        let (_, e) = with_dirs("[[tenant]]\nname = \"x\"\nplugins = \"nope\"\n");
        let e = e.expect_err("missing dir");
        assert_eq!((e.line, e.key.as_str()), (3, "tenant[1].plugins"), "{e}");
    }

    #[test]
    fn names() {
        assert!(valid_name("acme_1-x"));
        assert!(!valid_name(""));
        assert!(!valid_name("Acme"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
