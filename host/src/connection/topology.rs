//! The shape of a Redis Cluster, printed once at start-up: its masters
//! (with their slot ranges), their replicas, and which master holds each
//! queue. Read from `CLUSTER NODES`
//! (<https://redis.io/docs/latest/commands/cluster-nodes/>).

use super::RedisConn;
use super::slot::key_slot;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node id (40 hex characters).
    pub id: String,
    /// `host:port` clients connect to.
    pub addr: String,
    /// A master (else a replica).
    pub master: bool,
    /// A replica's master id.
    pub master_id: Option<String>,
    /// Flagged `fail` or `fail?` by the node that answered.
    pub failing: bool,
    /// Slot ranges served (masters), inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// The nodes of a cluster, as one node sees them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// Masters first (in address order), then replicas.
    pub nodes: Vec<Node>,
}

impl Topology {
    /// Parses the reply of `CLUSTER NODES`. Lines it cannot read are skipped.
    pub fn parse(text: &str) -> Topology {
        let mut nodes: Vec<Node> = text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 8 {
                    return None;
                }
                let flags: Vec<&str> = fields[2].split(',').collect();
                let addr = fields[1].split('@').next()?.to_owned();
                let slots = fields[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|a| (a, a)),
                    })
                    .collect();
                Some(Node {
                    id: fields[0].to_owned(),
                    addr,
                    master: flags.contains(&"master"),
                    master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                    failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                    slots,
                })
            })
            .collect();
        nodes.sort_by(|a, b| (!a.master, &a.addr).cmp(&(!b.master, &b.addr)));
        Topology { nodes }
    }

    /// Reads the topology through `conn`; `None` on a single server.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn read(conn: &mut RedisConn) -> redis::RedisResult<Option<Topology>> {
        if !conn.is_cluster() {
            return Ok(None);
        }
        let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
        Ok(Some(Topology::parse(&text)))
    }

    /// The masters.
    pub fn masters(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.master)
    }

    /// The master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Option<&Node> {
        self.masters()
            .find(|n| n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
    }

    /// The lines printed at start-up: one per master (slots, replicas), one
    /// per queue (slot, master).
    pub fn describe(&self, queues: &[&str]) -> Vec<String> {
        let replicas = self.nodes.len() - self.masters().count();
        let mut lines = vec![format!(
            "redis cluster: {} masters, {replicas} replicas",
            self.masters().count()
        )];
        for m in self.masters() {
            let slots: Vec<String> = m
                .slots
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let reps: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(m.id.as_str()))
                .map(|n| n.addr.as_str())
                .collect();
            lines.push(format!(
                "  master {} slots {} replicas {}{}",
                m.addr,
                if slots.is_empty() {
                    "-".into()
                } else {
                    slots.join(",")
                },
                if reps.is_empty() {
                    "none".into()
                } else {
                    reps.join(",")
                },
                if m.failing { " (failing)" } else { "" }
            ));
        }
        for queue in queues {
            let slot = key_slot(queue.as_bytes());
            let master = self
                .master_of(slot)
                .map_or("no master (slot not served)", |m| m.addr.as_str());
            lines.push(format!("  queue {queue} slot {slot} on master {master}"));
        }
        lines
    }
}

/// Prints the cluster's topology and where each of `queues` lives (stderr,
/// through the log), once at start-up; nothing on a single server. A
/// failure to read it is only logged: the worker does not need it.
pub async fn log(conn: &RedisConn, queues: &[&str]) {
    match Topology::read(&mut conn.clone()).await {
        Ok(Some(topology)) => {
            for line in topology.describe(queues) {
                tracing::info!("{line}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the cluster topology"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn describes_masters_replicas_and_queues() {
        let t = Topology::parse(NODES);
        assert_eq!(t.masters().count(), 3);
        assert_eq!(t.master_of(9914).unwrap().addr, "127.0.0.1:30002");
        let lines = t.describe(&["task_queue"]);
        assert_eq!(lines[0], "redis cluster: 3 masters, 3 replicas");
        assert_eq!(
            lines[1],
            "  master 127.0.0.1:30001 slots 0-5460 replicas 127.0.0.1:30004"
        );
        assert_eq!(
            lines[4],
            "  queue task_queue slot 9914 on master 127.0.0.1:30002"
        );
    }
}
