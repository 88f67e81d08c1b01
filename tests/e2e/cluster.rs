//! Redis Cluster: every command against a real cluster, a master killed
//! (`kill -9`) mid-run, and a busy queue's slot migrated while tasks flow.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::json;

use crate::cluster_harness::{RedisCluster, queues_on_three_masters, wait_for};
use crate::harness::*;

/// A long-running worker on `queue` of `cluster` (killed on drop).
struct ClusterWorker {
    child: Child,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl ClusterWorker {
    fn spawn(cluster: &RedisCluster, queue: &str, plugins: &Plugins, extra: &[&str]) -> Self {
        let dir = TempDir::new("cluster-worker");
        let log = dir.path().join("worker.log");
        let child = sluice()
            .args(["worker", "--queue", queue, "--plugins"])
            .arg(plugins.path())
            .args(cluster.args())
            .args(["--lease-ms", "4000", "--heartbeat-ms", "1000"])
            .args(["--concurrency", "4", "--no-watch"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        ClusterWorker {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "worker exited; log:\n{}",
            self.log()
        );
    }
}

impl Drop for ClusterWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes `n` noop tasks `<queue>-<i>` onto `queue`.
fn push_noops(conn: &mut redis::cluster::ClusterConnection, queue: &str, n: usize) {
    push_tasks(conn, queue, n, &json!({"task_type": "noop", "params": {}}));
}

/// Pushes `n` copies of `task` with ids `<queue>-<i>` onto `queue`.
fn push_tasks(
    conn: &mut redis::cluster::ClusterConnection,
    queue: &str,
    n: usize,
    task: &serde_json::Value,
) {
    let tasks: Vec<String> = (0..n)
        .map(|i| {
            let mut t = task.clone();
            t["id"] = json!(format!("{queue}-{i}"));
            t.to_string()
        })
        .collect();
    for chunk in tasks.chunks(500) {
        let _: i64 = conn.rpush(queue, chunk).unwrap();
    }
}

/// How many of `queue`'s `n` tasks have a final result or a dead letter.
fn finished(conn: &mut redis::cluster::ClusterConnection, queue: &str, n: usize) -> usize {
    let keys: Vec<String> = (0..n)
        .map(|i| format!("{{{queue}}}:result:{queue}-{i}"))
        .collect();
    let mut done = 0;
    for chunk in keys.chunks(500) {
        let records: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(conn).unwrap();
        done += records
            .iter()
            .flatten()
            .filter(|r| r.contains("\"succeeded\"") || r.contains("\"failed\""))
            .count();
    }
    done
}

/// `{queue}:stats` counters.
fn counters(conn: &mut redis::cluster::ClusterConnection, queue: &str) -> HashMap<String, i64> {
    conn.hgetall(format!("{{{queue}}}:stats")).unwrap()
}

#[test]
fn every_command_works_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let queues = queues_on_three_masters("jobs");
    let masters: Vec<usize> = queues.iter().map(|q| cluster.master_of(q)).collect();
    assert_eq!(
        masters
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "queues on three masters"
    );
    let mut conn = cluster.conn();
    for q in &queues {
        for i in 0..20 {
            // Replies go to lists in every slot (the producers' keys).
            let task = json!({"id": format!("{q}-{i}"), "task_type": "noop", "params": {}, "reply_to": format!("reply:{q}:{i}")});
            let _: i64 = conn.rpush(q, task.to_string()).unwrap();
        }
        let fatal = json!({"id": format!("{q}-fatal"), "task_type": "fail_fatal", "params": {}});
        let _: i64 = conn.rpush(q, fatal.to_string()).unwrap();
    }
    let plugins = Plugins::new(&[("noop", ""), ("misbehave", "")]);
    for (i, q) in queues.iter().enumerate() {
        let mut cmd = sluice();
        cmd.args(["worker", "--burst", "--queue", q, "--plugins"])
            .arg(plugins.path())
            .args(cluster.args());
        if i == 0 {
            // No replica can confirm: warned about, tasks still done.
            cmd.args(["--wait-replicas", "1", "--wait-timeout-ms", "20"]);
        }
        let stderr = assert_ok(&wait_output(cmd, Duration::from_secs(60)));
        assert_eq!(i == 0, stderr.contains("fewer replicas"), "{stderr}");
        assert!(
            stderr.contains("redis cluster: 3 masters, 0 replicas"),
            "{stderr}"
        );
        let slot = sluice::connection::slot::key_slot(q.as_bytes());
        let master = format!("127.0.0.1:{}", cluster.nodes[cluster.master_of(q)].port);
        assert!(
            stderr.contains(&format!("queue {q} slot {slot} on master {master}")),
            "{stderr}"
        );
        for i in 0..20 {
            let reply: Vec<String> = conn.lrange(format!("reply:{q}:{i}"), 0, -1).unwrap();
            assert_eq!(reply.len(), 1, "reply {q} {i}");
        }
    }
    for q in &queues {
        let run = |args: &[&str]| {
            let mut cmd = sluice();
            cmd.args(args).args(["--queue", q]).args(cluster.args());
            let out = wait_output(cmd, Duration::from_secs(30));
            assert_ok(&out);
            String::from_utf8(out.stdout).unwrap()
        };
        let stats: serde_json::Value = serde_json::from_str(&run(&["stats", "--json"])).unwrap();
        assert_eq!(stats["counters"]["succeeded"], 20, "{stats}");
        assert_eq!(stats["dead"], 1, "{stats}");
        assert_eq!(stats["pending"], 0, "{stats}");
        let record: serde_json::Value =
            serde_json::from_str(&run(&["result", &format!("{q}-3")])).unwrap();
        assert_eq!(record["status"], "succeeded");
        assert!(run(&["dead", "list"]).contains(&format!("{q}-fatal")));
        assert!(run(&["dead", "show", &format!("{q}-fatal")]).contains("fail_fatal"));
        assert!(run(&["dead", "requeue", &format!("{q}-fatal")]).contains("requeued"));
        let pending: i64 = conn.llen(q).unwrap();
        assert_eq!(pending, 1);
        assert!(run(&["dead", "purge"]).contains("purged"));
    }
    // The tenant configuration file: `cluster = true`, `redis_urls = [...]`.
    let dir = TempDir::new("cluster-config");
    std::fs::create_dir(dir.path().join("p")).unwrap();
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            "cluster = true\nredis_urls = [{}]\n\n[[tenant]]\nname = \"a\"\nqueue = \"{}\"\nplugins = \"p\"\n\n[[tenant]]\nname = \"b\"\nqueue = \"{}\"\nplugins = \"p\"\n",
            urls.join(", "),
            queues[0],
            queues[1]
        ),
    )
    .unwrap();
    let mut cmd = sluice();
    cmd.args(["stats", "--json", "--config"]).arg(&file);
    let out = wait_output(cmd, Duration::from_secs(30));
    assert_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(&format!("\"queue\":\"{}\"", queues[1])),
        "{text}"
    );
    // A queue name whose keys would not share a slot is refused.
    let mut cmd = sluice();
    cmd.args(["stats", "--queue", "{bad}"]).args(cluster.args());
    let out = wait_output(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("slot"));
}

#[test]
fn a_killed_master_loses_no_task_and_workers_keep_going() {
    const PER_QUEUE: usize = 1000;
    let mut cluster = RedisCluster::start(3, 1);
    let queues = queues_on_three_masters("fo");
    let mut conn = cluster.conn();
    for q in &queues {
        push_noops(&mut conn, q, PER_QUEUE);
    }
    // The tasks reached the replicas before anything can fail.
    for q in &queues {
        let master = &cluster.nodes[cluster.master_of(q)];
        wait_for(Duration::from_secs(20), "replicas in sync", || {
            let n: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(1000)
                .query(&mut master.conn())
                .unwrap();
            n >= 1
        });
    }
    let plugins = Plugins::new(&[("noop", "")]);
    // The workers of the second queue wait for a replica after each
    // acknowledgement batch (--wait-replicas).
    let mut workers: Vec<ClusterWorker> = queues
        .iter()
        .enumerate()
        .flat_map(|(i, q)| {
            let extra: &[&str] = if i == 1 {
                &["--wait-replicas", "1"]
            } else {
                &[]
            };
            [
                ClusterWorker::spawn(&cluster, q, &plugins, extra),
                ClusterWorker::spawn(&cluster, q, &plugins, extra),
            ]
        })
        .collect();
    let victim = cluster.master_of(&queues[0]);
    wait_for(Duration::from_secs(60), "a tenth of the tasks done", || {
        finished(&mut conn, &queues[0], PER_QUEUE) >= PER_QUEUE / 10
    });
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    eprintln!(
        "killed master 127.0.0.1:{} holding {}",
        cluster.nodes[victim].port, queues[0]
    );
    cluster.wait_healthy(3);
    eprintln!("replica promoted after {:?}", killed.elapsed());
    let mut conn = cluster.conn();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: Vec<usize> = queues
            .iter()
            .map(|q| finished(&mut conn, q, PER_QUEUE))
            .collect();
        if done.iter().all(|&d| d == PER_QUEUE) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every task finished: {done:?} of {PER_QUEUE} each; logs:\n{}",
            workers[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for w in &mut workers {
        w.assert_running();
    }
    let waited = workers[2].log() + &workers[3].log();
    assert!(!waited.contains("fewer replicas"), "{waited}");
    let mut duplicates = 0;
    for q in &queues {
        let c = counters(&mut conn, q);
        let processed = c.get("processed").copied().unwrap_or(0);
        let failed = c.get("failed").copied().unwrap_or(0);
        eprintln!("{q}: processed {processed}, failed {failed}, counters {c:?}");
        duplicates += (processed - PER_QUEUE as i64).max(0);
    }
    // Allowed (at least once), and reported.
    eprintln!("duplicates after the failover: {duplicates}");
}

#[test]
fn a_busy_queues_slot_migrates_while_tasks_flow() {
    const TASKS: usize = 1500;
    let cluster = RedisCluster::start(3, 0);
    let queue = "migrating";
    let slot = sluice::connection::slot::key_slot(queue.as_bytes());
    let mut conn = cluster.conn();
    // Tasks of 20 ms: the queue stays busy for the whole migration.
    push_tasks(
        &mut conn,
        queue,
        TASKS,
        &json!({"task_type": "spin", "params": {"ms": 20}}),
    );
    let plugins = Plugins::new(&[("misbehave", "")]);
    let mut workers = [
        ClusterWorker::spawn(&cluster, queue, &plugins, &[]),
        ClusterWorker::spawn(&cluster, queue, &plugins, &[]),
    ];
    wait_for(Duration::from_secs(60), "some tasks done", || {
        finished(&mut conn, queue, TASKS) >= TASKS / 10
    });
    let src = cluster.master_of(queue);
    let dst = (src + 1) % 3;
    let (src_node, dst_node) = (&cluster.nodes[src], &cluster.nodes[dst]);
    let (src_id, dst_id) = (src_node.id(), dst_node.id());
    let mut s = src_node.conn();
    let mut d = dst_node.conn();
    let setslot = |c: &mut redis::Connection, state: &str, id: &str| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(id)
            .query(c)
            .unwrap();
    };
    setslot(&mut d, "IMPORTING", &src_id);
    setslot(&mut s, "MIGRATING", &dst_id);
    let mut moved = 0;
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(10)
            .query(&mut s)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        for key in keys {
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(dst_node.port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&key)
                .query(&mut s)
                .unwrap();
            moved += 1;
            // Half-migrated: scripts touching both sides get TRYAGAIN (a
            // long window after the first key, short ones after the others).
            std::thread::sleep(Duration::from_millis(if moved == 1 { 500 } else { 5 }));
        }
    }
    for node in &cluster.nodes {
        setslot(&mut node.conn(), "NODE", &dst_id);
    }
    let done_at_migration = finished(&mut conn, queue, TASKS);
    eprintln!(
        "migrated slot {slot} ({moved} keys) to 127.0.0.1:{}; {done_at_migration} of {TASKS} tasks done by then",
        dst_node.port
    );
    assert!(
        done_at_migration < TASKS,
        "the queue was busy during the migration"
    );
    assert_eq!(cluster.master_of(queue), dst);
    let deadline = Instant::now() + Duration::from_secs(90);
    while finished(&mut conn, queue, TASKS) < TASKS {
        assert!(
            Instant::now() < deadline,
            "tasks stuck after the migration: {} of {TASKS}; log:\n{}",
            finished(&mut conn, queue, TASKS),
            workers[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pending: i64 = conn.llen(queue).unwrap();
    assert_eq!(pending, 0);
    for w in &mut workers {
        w.assert_running();
    }
    let c = counters(&mut conn, queue);
    eprintln!("counters after the migration: {c:?}");
}

#[test]
fn an_idle_worker_follows_a_manual_failover() {
    let cluster = RedisCluster::start(3, 1);
    let queue = "idle";
    let mut conn = cluster.conn();
    let plugins = Plugins::new(&[("noop", "")]);
    let mut worker = ClusterWorker::spawn(&cluster, queue, &plugins, &[]);
    wait_for(Duration::from_secs(30), "the worker's lease", || {
        conn.hlen::<_, usize>(format!("{{{queue}}}:workers"))
            .unwrap()
            >= 1
    });
    // Blocked in BLMOVE on the master when its replica takes over: the
    // server answers UNBLOCKED (or MOVED).
    std::thread::sleep(Duration::from_millis(500));
    let master = cluster.master_of(queue);
    let replica = cluster.replica_of(master);
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut cluster.nodes[replica].conn())
        .unwrap();
    wait_for(Duration::from_secs(30), "the replica to take over", || {
        cluster.master_of(queue) == replica
    });
    push_noops(&mut conn, queue, 50);
    wait_for(
        Duration::from_secs(60),
        "the tasks after the failover",
        || finished(&mut conn, queue, 50) == 50,
    );
    worker.assert_running();
}
