//! Test harness for Redis Cluster and TLS: a private cluster of
//! `redis-server` processes on free loopback ports (masters, replicas,
//! `--cluster-node-timeout 2000`, `--repl-diskless-sync-delay 0`), created
//! with `redis-cli --cluster create`, and test certificates made with
//! rcgen. Only the processes a test started are ever stopped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TempDir;

/// A free loopback port (for a server or a cluster bus).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node of a [`RedisCluster`].
pub struct ClusterNode {
    pub port: u16,
    bus_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ClusterNode {
    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--cluster-config-file")
            .arg(self.dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain (non-cluster) connection to this node.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url())
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    }

    pub fn id(&self) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.conn())
            .unwrap()
    }

    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private Redis Cluster, stopped (and its files removed) on drop.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and waits
    /// until every node reports `cluster_state:ok` and every replica is in
    /// sync with its master.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = TempDir::new("cluster");
        let mut nodes: Vec<ClusterNode> = (0..masters * (1 + replicas))
            .map(|i| ClusterNode {
                port: free_port(),
                bus_port: free_port(),
                dir: dir.path().join(i.to_string()),
                child: None,
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            wait_for(Duration::from_secs(10), "redis-server to start", || {
                node.try_conn().is_some()
            });
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy(masters);
        // `--cluster create` returns before every replica has attached (a
        // node still shows as a slot-less master for a moment): a test that
        // kills a master before its replica syncs would lose its slots.
        let want = masters * replicas;
        wait_for(Duration::from_secs(60), "every replica attached", || {
            cluster.nodes.iter().all(|n| {
                let Some(mut c) = n.try_conn() else {
                    return false;
                };
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut c)
                    .unwrap_or_default();
                let repl: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut c)
                    .unwrap_or_default();
                nodes.lines().filter(|l| l.contains("slave")).count() == want
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            })
        });
        cluster
    }

    /// Waits until every live node says `cluster_state:ok` and sees
    /// `masters` masters with slots, and every live replica's link is up.
    pub fn wait_healthy(&self, masters: usize) {
        wait_for(Duration::from_secs(60), "a healthy cluster", || {
            self.nodes.iter().filter(|n| n.alive()).all(|n| {
                let Some(mut c) = n.try_conn() else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .unwrap_or_default();
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut c)
                    .unwrap_or_default();
                let with_slots = nodes
                    .lines()
                    .filter(|l| {
                        l.contains("master") && !l.contains("fail") && l.split(' ').count() > 8
                    })
                    .count();
                let repl: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut c)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && with_slots == masters
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            })
        });
    }

    /// The seed URLs (every node).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ClusterNode::url).collect()
    }

    /// `--cluster --redis-url …` for every live node.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--cluster".to_owned()];
        for n in self.nodes.iter().filter(|n| n.alive()) {
            args.push("--redis-url".into());
            args.push(n.url());
        }
        args
    }

    /// A cluster connection (for the test's own reads and writes).
    pub fn conn(&self) -> redis::cluster::ClusterConnection {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.alive())
            .map(ClusterNode::url)
            .collect();
        redis::cluster::ClusterClient::builder(urls)
            .retries(30)
            .min_retry_wait(50)
            .max_retry_wait(500)
            .build()
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The index of the live node that is master of `slot`, asked of a live node.
    pub fn master_of_slot(&self, slot: u16) -> usize {
        let live = self.nodes.iter().find(|n| n.alive()).unwrap();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut live.conn())
            .unwrap();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| match r.split_once('-') {
                Some((a, b)) => {
                    (a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()).contains(&slot)
                }
                None => r.parse::<u16>().ok() == Some(slot),
            });
            if serves {
                let port: u16 = f[1]
                    .split('@')
                    .next()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// Index of a live replica of node `master`.
    pub fn replica_of(&self, master: usize) -> usize {
        let port = self.nodes[master].port;
        self.nodes
            .iter()
            .position(|n| {
                n.alive() && {
                    let info: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut n.conn())
                        .unwrap();
                    info.contains("role:slave") && info.contains(&format!("master_port:{port}\r"))
                }
            })
            .expect("a replica")
    }

    /// Index of the master owning `key`.
    pub fn master_of(&self, key: &str) -> usize {
        self.master_of_slot(sluice::connection::slot::key_slot(key.as_bytes()))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// Waits until `cond` holds, polling every 50 ms; panics after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` queue names whose slots are served by different masters of a
/// cluster made by `redis-cli --cluster create` with three masters (slot
/// ranges 0-5460, 5461-10922, 10923-16383), one per range, in that order.
pub fn queues_on_three_masters(prefix: &str) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let name = format!("{prefix}{i}");
        let slot = sluice::connection::slot::key_slot(name.as_bytes());
        let third = match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        if found[third].is_none() {
            found[third] = Some(name);
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}

/// A test CA and certificates signed by it, as PEM files in a directory.
pub struct Certs {
    pub dir: TempDir,
}

impl Certs {
    /// A CA, a server certificate for `localhost`/127.0.0.1, and a client
    /// certificate, all signed by the CA.
    pub fn new() -> Certs {
        let dir = TempDir::new("certs");
        let ca = new_ca("Sluice test CA");
        write(dir.path(), "ca.pem", &ca.cert.pem());
        let server = leaf(&ca, "localhost", true);
        write(dir.path(), "server.pem", &server.0);
        write(dir.path(), "server.key", &server.1);
        let client = leaf(&ca, "sluice-worker", false);
        write(dir.path(), "client.pem", &client.0);
        write(dir.path(), "client.key", &client.1);
        // A CA that signed nothing here: the wrong one.
        let other = new_ca("Some other CA");
        write(dir.path(), "other-ca.pem", &other.cert.pem());
        Certs { dir }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn path(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }
}

struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert,
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// (certificate PEM, key PEM) for `name`, signed by `ca`.
fn leaf(ca: &Ca, name: &str, server: bool) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    if server {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    }
    params.extended_key_usages = vec![if server {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A TLS-only redis-server (`--port 0 --tls-port P`) using `certs`,
/// stopped on drop.
pub struct TlsRedis {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl TlsRedis {
    /// `auth_clients`: require client certificates; `password`: `requirepass`.
    pub fn start(certs: &Certs, auth_clients: bool, password: Option<&str>) -> TlsRedis {
        let port = free_port();
        let dir = TempDir::new("tls-redis");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &certs.path("server.pem")])
            .args(["--tls-key-file", &certs.path("server.key")])
            .args(["--tls-ca-cert-file", &certs.path("ca.pem")])
            .args([
                "--tls-auth-clients",
                if auth_clients { "yes" } else { "no" },
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd.spawn().expect("cannot start redis-server");
        let server = TlsRedis {
            port,
            child,
            _dir: dir,
        };
        wait_for(Duration::from_secs(10), "the TLS redis-server", || {
            server.try_conn(certs, password).is_some()
        });
        server
    }

    /// `rediss://[:password@]127.0.0.1:P/`.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("rediss://:{p}@127.0.0.1:{}/", self.port),
            None => format!("rediss://127.0.0.1:{}/", self.port),
        }
    }

    fn try_conn(&self, certs: &Certs, password: Option<&str>) -> Option<redis::Connection> {
        let client = redis::Client::build_with_tls(
            self.url(password),
            redis::TlsCertificates {
                client_tls: Some(redis::ClientTlsConfig {
                    client_cert: std::fs::read(certs.file("client.pem")).unwrap(),
                    client_key: std::fs::read(certs.file("client.key")).unwrap(),
                }),
                root_cert: Some(std::fs::read(certs.file("ca.pem")).unwrap()),
            },
        )
        .ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    /// A connection for the test itself (with the client certificate).
    pub fn conn(&self, certs: &Certs, password: Option<&str>) -> redis::Connection {
        self.try_conn(certs, password).expect("TLS connection")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
