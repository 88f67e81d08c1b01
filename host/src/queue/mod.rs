//! The Redis side of the queue protocol: fetch, leases, acknowledgement,
//! retries, recovery. Every state change is one atomic Lua script that
//! touches the keys of one queue (one Cluster slot, see [`crate::keys`]).
//!
//! Delivery is **at-least-once**, after the Redis "reliable queue" pattern
//! (<https://redis.io/docs/latest/commands/lmove/#pattern-reliable-queue>):
//! - a worker moves messages atomically from the pending list into its own
//!   in-flight list (a batched `LMOVE` script; when idle, it waits with a
//!   `BLMOVE` of the pending list onto itself first);
//! - it holds a *lease* (`{Q}:workers`, expiry on the Redis server's clock)
//!   that it renews on a heartbeat;
//! - acknowledgement ([`Queue::finish`]) and retry scheduling
//!   ([`Queue::reschedule`]) are fenced: they only act if the worker still
//!   holds its lease and the message is still in its list;
//! - any worker's reaper ([`Queue::reap`]) puts the in-flight messages of a
//!   worker whose lease expired back at the head of the pending list.
//!
//! Replies to `reply_to` go through a transactional [`outbox`]: recorded by
//! the acknowledgement, delivered by [`Queue::deliver`] afterwards,
//! recovered by the reaper. Tasks sharing an `ordering_key` are admitted one
//! at a time by the same scripts (see [`ordering`]).

mod eval;
pub mod follow_ups;
pub mod ordering;
pub mod outbox;

use std::time::Duration;

use redis::Script;

use crate::connection::{ConnectError, Connector, RedisConfig, RedisConn};

use crate::keys::QueueKeys;
use eval::Eval;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A Redis command or connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A batched operation failed; the text is the Redis error, shared by
    /// every request of the batch.
    #[error("redis: {0}")]
    Batch(String),
    /// The connection could not be set up (options, files, TLS, timeout).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The queue cannot live in a Redis Cluster slot.
    #[error(transparent)]
    Slot(#[from] crate::keys::QueueNameError),
}

/// Result alias for queue operations.
pub type QueueResult<T> = Result<T, QueueError>;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($file:literal, follow_ups) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/common_follow_ups.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($file:literal, outbox) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/common_outbox.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($file:literal, order) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/common_order.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($file:literal, order, follow_ups) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/common_order.lua"),
            include_str!("lua/common_follow_ups.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($file:literal, outbox, order) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/common_outbox.lua"),
            include_str!("lua/common_order.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

struct Scripts {
    register: Script,
    renew: Script,
    fetch: Script,
    finish: Script,
    reschedule: Script,
    promote: Script,
    reap: Script,
    release: Script,
    claim: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            register: script!("register.lua"),
            renew: script!("renew.lua"),
            fetch: script!("fetch.lua", order),
            finish: script!("finish.lua", order, follow_ups),
            reschedule: script!("reschedule.lua", order),
            promote: script!("promote.lua"),
            reap: script!("reap.lua", outbox, order),
            release: script!("release.lua", outbox),
            claim: script!("claim.lua"),
        }
    }
}

/// Retention settings for what the queue writes.
#[derive(Debug, Clone)]
pub struct Retention {
    /// TTL of result records, seconds (default 24 h).
    pub result_ttl_secs: u64,
    /// Dead letters kept at most (oldest trimmed first; default 10 000).
    pub dead_cap: u64,
    /// Dead letters older than this are trimmed, ms (default 7 days).
    pub dead_ttl_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            result_ttl_secs: 24 * 3600,
            dead_cap: 10_000,
            dead_ttl_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// What [`Queue::finish`] writes.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    /// The message exactly as it was fetched.
    pub message: &'a [u8],
    /// The task id (result key).
    pub id: &'a str,
    /// The result record, JSON.
    pub record: &'a str,
    /// `succeeded` or `failed`: the stats counter to bump.
    pub status: &'a str,
    /// The dead letter (JSON) to keep, when the task failed for good.
    pub dead_letter: Option<&'a str>,
    /// The list to push the record onto (the message's `reply_to`): the
    /// acknowledgement records the reply in the worker's outbox hash, and
    /// [`Queue::deliver`] pushes it (see [`outbox`]).
    pub reply_to: Option<&'a str>,
    /// Follow-up task messages to push onto the pending list in the same
    /// atomic step, if the message is acknowledged (see [`follow_ups`]).
    pub follow_ups: &'a [String],
}

/// What [`Queue::acknowledge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// Per message, whether it was acknowledged (false: fenced off).
    pub acked: Vec<bool>,
    /// The call's token prefix ([`outbox::token_prefix`]).
    pub token: String,
}

impl Acknowledged {
    /// The outbox hash field of the reply of message `index` (0-based in the
    /// batch) to `reply_to`, if that message was acknowledged.
    pub fn field(&self, index: usize, reply_to: &str) -> Option<String> {
        self.acked
            .get(index)
            .copied()
            .unwrap_or(false)
            .then(|| outbox::field(&self.token, index + 1, reply_to))
    }
}

/// What one [`Queue::reap_counts`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// In-flight messages of dead workers put back at the head of the queue.
    pub recovered: u64,
    /// Messages dead-lettered as poison (in flight on too many dead workers).
    pub poisoned: u64,
    /// Undelivered replies of dead workers returned to `{Q}:outbox`.
    pub replies: u64,
}

/// One queue on one Redis server (or Cluster slot).
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    /// Cluster only: the fetch scripts' connection, without hidden retries
    /// (see [`crate::connection`]); replaced after an error.
    fetch: std::sync::Arc<tokio::sync::Mutex<Option<RedisConn>>>,
    connector: Connector,
    keys: QueueKeys,
    retention: Retention,
    scripts: std::sync::Arc<Scripts>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to `redis_url` for queue `queue`. The connection reconnects
    /// by itself, with exponential backoff, whenever Redis goes away.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when the URL is invalid or the first connection fails.
    pub async fn connect(redis_url: &str, queue: &str, retention: Retention) -> QueueResult<Queue> {
        Queue::connect_with(&RedisConfig::single(redis_url), queue, retention).await
    }

    /// Connects as `redis` says (single node or Cluster, TLS, password) for
    /// queue `queue`.
    ///
    /// # Errors
    /// [`QueueError::Connect`] when the options are wrong or the first
    /// connection fails; [`QueueError::Slot`] when the queue's keys would
    /// not share one Cluster slot.
    pub async fn connect_with(
        redis: &RedisConfig,
        queue: &str,
        retention: Retention,
    ) -> QueueResult<Queue> {
        let keys = QueueKeys::new(queue);
        keys.check_one_slot()?;
        let connector = Connector::new(redis)?;
        let conn = connector.shared().await?;
        Ok(Queue {
            conn,
            fetch: Default::default(),
            connector,
            keys,
            retention,
            scripts: std::sync::Arc::new(Scripts::new()),
        })
    }

    /// The queue's key layout.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// The retention settings.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// A fresh connection for blocking commands (`BLMOVE`), which would
    /// stall every other request sharing a multiplexed connection.
    ///
    /// # Errors
    /// When the connection cannot be made.
    pub async fn blocking_connection(&self, block: Duration) -> QueueResult<RedisConn> {
        Ok(self.connector.blocking(block).await?)
    }

    /// The shared multiplexed connection, for commands of the CLI.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// How this queue reaches Redis.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The connection of the fetch scripts: the shared one on a single
    /// server; on a Cluster a connection without hidden retries, so that a
    /// fetch whose reply was lost surfaces as an error (and the worker
    /// rotates its lease) instead of running twice.
    async fn fetch_conn(&self) -> QueueResult<RedisConn> {
        if !self.conn.is_cluster() {
            return Ok(self.conn.clone());
        }
        let mut slot = self.fetch.lock().await;
        if let Some(conn) = &*slot {
            return Ok(conn.clone());
        }
        let conn = self.connector.fetching().await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the fetch connection after an error (Cluster): the next fetch
    /// connects again and reads the slot map afresh (after a failover).
    async fn fetch_failed(&self) {
        if self.conn.is_cluster() {
            *self.fetch.lock().await = None;
        }
    }

    /// Registers (or re-registers) `worker_id` with a lease of `lease`.
    /// Returns the expiry, Unix ms on the Redis server's clock.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn register(&self, worker_id: &str, lease: Duration) -> QueueResult<u64> {
        Ok(Eval::new(&self.scripts.register, 1)
            .arg(&self.keys.workers)
            .arg(worker_id)
            .arg(lease.as_millis() as u64)
            .invoke(&mut self.conn.clone())
            .await?)
    }

    /// Renews the lease of `worker_id`. Returns false when the lease was
    /// already lost (expired, or reaped): the worker must stop its tasks.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn renew(&self, worker_id: &str, lease: Duration) -> QueueResult<bool> {
        let renewed: i64 = Eval::new(&self.scripts.renew, 1)
            .arg(&self.keys.workers)
            .arg(worker_id)
            .arg(lease.as_millis() as u64)
            .invoke(&mut self.conn.clone())
            .await?;
        Ok(renewed == 1)
    }

    /// Moves up to `max` pending messages into the in-flight list of
    /// `worker_id` without blocking. `None` means the lease was lost. Like
    /// [`Queue::fetch_batch_within`] with the default `--max-message-bytes`.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn fetch_batch(
        &self,
        worker_id: &str,
        max: usize,
    ) -> QueueResult<Option<Vec<Vec<u8>>>> {
        self.fetch_batch_within(worker_id, max, crate::worker::DEFAULT_MAX_MESSAGE_BYTES)
            .await
    }

    /// Moves up to `max` pending messages into the in-flight list of
    /// `worker_id` without blocking. `None` means the lease was lost.
    ///
    /// A message with an `ordering_key` (and at most `max_message_bytes`
    /// long) whose key another task holds is parked behind it instead of
    /// returned, and another message is taken in its place (see [`ordering`]).
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn fetch_batch_within(
        &self,
        worker_id: &str,
        max: usize,
        max_message_bytes: usize,
    ) -> QueueResult<Option<Vec<Vec<u8>>>> {
        let mut conn = self.fetch_conn().await?;
        let fetched = Eval::new(&self.scripts.fetch, 4)
            .arg(&self.keys.pending)
            .arg(self.keys.inflight(worker_id))
            .arg(&self.keys.workers)
            .arg(&self.keys.order)
            .arg(worker_id)
            .arg(max)
            .arg(max_message_bytes)
            .invoke(&mut conn)
            .await;
        if fetched.is_err() {
            self.fetch_failed().await;
        }
        Ok(fetched?)
    }

    /// Waits up to `block` for a pending message, on a blocking connection,
    /// then moves one into the in-flight list of `worker_id` like
    /// [`Queue::fetch_batch_within`] does.
    ///
    /// The wait is a `BLMOVE` of the pending list onto itself (`LEFT LEFT`,
    /// which leaves the list as it was): every message then leaves the list
    /// through the fetch script, which keeps tasks of one `ordering_key` in
    /// push order (a message moved by `BLMOVE` straight into an in-flight
    /// list would skip its key's turn). `None` when the wait timed out,
    /// another worker took the message first, or it was parked behind its key.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn fetch_blocking(
        &self,
        conn: &mut RedisConn,
        worker_id: &str,
        block: Duration,
        max_message_bytes: usize,
    ) -> QueueResult<Option<Vec<u8>>> {
        let woken: Option<redis::Value> = redis::cmd("BLMOVE")
            .arg(&self.keys.pending)
            .arg(&self.keys.pending)
            .arg("LEFT")
            .arg("LEFT")
            .arg(block.as_secs_f64())
            .query_async(conn)
            .await?;
        if woken.is_none() {
            return Ok(None);
        }
        let fetched = self
            .fetch_batch_within(worker_id, 1, max_message_bytes)
            .await?;
        Ok(fetched.and_then(|mut messages| messages.pop()))
    }

    /// Acknowledges a message for good (see [`Finish`]). Returns false when
    /// fenced off: the lease was lost or the message is no longer ours.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn finish(&self, worker_id: &str, finish: &Finish<'_>) -> QueueResult<bool> {
        let acked = self
            .finish_batch(worker_id, std::slice::from_ref(finish))
            .await?;
        Ok(acked[0])
    }

    /// Acknowledges several messages of `worker_id` in one round trip (one
    /// Lua script). Returns, per message, whether it was acknowledged
    /// (false: fenced off). See [`Queue::acknowledge`] for the replies.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn finish_batch(
        &self,
        worker_id: &str,
        batch: &[Finish<'_>],
    ) -> QueueResult<Vec<bool>> {
        Ok(self.acknowledge(worker_id, batch).await?.acked)
    }

    /// Acknowledges several messages of `worker_id` in one round trip (one
    /// Lua script). The reply of each acknowledged message that names a
    /// `reply_to` is then in `worker_id`'s outbox hash under
    /// [`Acknowledged::field`], for [`Queue::deliver`].
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn acknowledge(
        &self,
        worker_id: &str,
        batch: &[Finish<'_>],
    ) -> QueueResult<Acknowledged> {
        let token = outbox::token_prefix();
        if batch.is_empty() {
            return Ok(Acknowledged {
                acked: Vec::new(),
                token,
            });
        }
        // Per message: its result key, six values, and ~64 bytes of key
        // prefix, status and the like besides the message and the record.
        let bytes = batch
            .iter()
            .map(|f| {
                f.message.len()
                    + f.record.len()
                    + f.dead_letter.map_or(0, str::len)
                    + f.reply_to.map_or(0, str::len)
                    + f.follow_ups.iter().map(|m| m.len() + 8).sum::<usize>()
                    + 64
            })
            .sum::<usize>();
        let follow_ups: usize = batch.iter().map(|f| f.follow_ups.len()).sum();
        let mut call = Eval::with_capacity(
            &self.scripts.finish,
            9 + batch.len(),
            12 + 7 * batch.len() + 2 * follow_ups,
            256 + bytes,
        );
        call.arg(&self.keys.workers)
            .arg(self.keys.inflight(worker_id))
            .arg(&self.keys.stats)
            .arg(&self.keys.dead)
            .arg(&self.keys.dead_index)
            .arg(&self.keys.crashes)
            .arg(self.keys.outbox_inflight(worker_id));
        for f in batch {
            call.arg(self.keys.result(f.id));
        }
        call.arg(&self.keys.pending).arg(&self.keys.order);
        call.arg(worker_id)
            .arg(self.retention.result_ttl_secs)
            .arg(self.retention.dead_cap)
            .arg(&token);
        for f in batch {
            call.arg(f.message)
                .arg(f.record)
                .arg(f.status)
                .arg(if f.dead_letter.is_some() { f.id } else { "" })
                .arg(f.dead_letter.unwrap_or(""))
                .arg(f.reply_to.unwrap_or(""));
        }
        for (i, f) in batch.iter().enumerate() {
            for message in f.follow_ups {
                call.arg(i + 1).arg(message.as_str());
            }
        }
        let mut conn = self.conn.clone();
        let acked: Vec<i64> = call.invoke(&mut conn).await?;
        self.wait_replicas(&mut conn).await;
        Ok(Acknowledged {
            acked: acked.into_iter().map(|a| a == 1).collect(),
            token,
        })
    }

    /// With `--wait-replicas N`: blocks until N replicas of the queue's
    /// master have every write this connection made (Redis `WAIT`), or the
    /// timeout passes. A shortfall or an error is logged and counted
    /// (`sluice_wait_replicas_short_total`), not returned: the
    /// acknowledgement itself is done, and a replica that lags is the
    /// operator's to fix.
    async fn wait_replicas(&self, conn: &mut RedisConn) {
        let config = self.connector.config();
        if config.wait_replicas == 0 {
            return;
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(config.wait_replicas).arg(config.wait_timeout_ms);
        let reached: redis::RedisResult<u32> =
            conn.query_on_node_of(&self.keys.workers, &wait).await;
        match reached {
            Ok(n) if n >= config.wait_replicas => {}
            Ok(n) => {
                metrics::counter!("sluice_wait_replicas_short_total").increment(1);
                tracing::warn!(
                    wanted = config.wait_replicas,
                    reached = n,
                    timeout_ms = config.wait_timeout_ms,
                    "acknowledgements reached fewer replicas than --wait-replicas asks; a failover now could lose them"
                );
            }
            Err(e) => {
                metrics::counter!("sluice_wait_replicas_short_total").increment(1);
                tracing::warn!(error = %e, "WAIT for replicas failed");
            }
        }
    }

    /// Moves a message from the in-flight list into the delayed set, to be
    /// pending again at `due_ms` (Unix ms). `stored` is the message to keep
    /// (rewritten with its id and attempts); `stat` a counter to bump
    /// (`retried`) or none; `record` an intermediate result record to store.
    /// Returns false when fenced off.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn reschedule(
        &self,
        worker_id: &str,
        popped: &[u8],
        stored: &str,
        due_ms: u64,
        stat: Option<&str>,
        record: Option<(&str, &str)>,
    ) -> QueueResult<bool> {
        let (id, record) = record.unwrap_or(("", ""));
        let done: i64 = Eval::new(&self.scripts.reschedule, 7)
            .arg(&self.keys.workers)
            .arg(self.keys.inflight(worker_id))
            .arg(&self.keys.delayed)
            .arg(&self.keys.stats)
            .arg(self.keys.result(id))
            .arg(&self.keys.crashes)
            .arg(&self.keys.order)
            .arg(worker_id)
            .arg(popped)
            .arg(stored)
            .arg(due_ms)
            .arg(stat.unwrap_or(""))
            .arg(record)
            .arg(self.retention.result_ttl_secs)
            .invoke(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }

    /// Moves due delayed messages to the tail of the pending list. Returns
    /// how many moved and how long until the next one is due (`None`: none).
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn promote_due(&self) -> QueueResult<(u64, Option<Duration>)> {
        let (moved, wait): (u64, i64) = Eval::new(&self.scripts.promote, 2)
            .arg(&self.keys.delayed)
            .arg(&self.keys.pending)
            .arg(1000)
            .invoke(&mut self.conn.clone())
            .await?;
        Ok((moved, u64::try_from(wait).ok().map(Duration::from_millis)))
    }

    /// Recovers the in-flight messages of workers whose lease expired, and
    /// trims old dead letters. Returns (recovered, dead-lettered as poison);
    /// see [`Queue::reap_counts`].
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn reap(
        &self,
        reaper_id: &str,
        max_crashes: u32,
        tombstone: Duration,
    ) -> QueueResult<(u64, u64)> {
        let reaped = self.reap_counts(reaper_id, max_crashes, tombstone).await?;
        Ok((reaped.recovered, reaped.poisoned))
    }

    /// Recovers the in-flight messages of workers whose lease expired (a
    /// message in flight on `max_crashes` dead workers is dead-lettered as
    /// poison, with a failed result record that goes to `{Q}:outbox` when it
    /// names a `reply_to`), returns their undelivered replies to
    /// `{Q}:outbox`, forgets leases expired for longer than `tombstone`, and
    /// trims old dead letters.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn reap_counts(
        &self,
        reaper_id: &str,
        max_crashes: u32,
        tombstone: Duration,
    ) -> QueueResult<Reaped> {
        let (recovered, poisoned, replies) = Eval::new(&self.scripts.reap, 11)
            .arg(&self.keys.workers)
            .arg(&self.keys.pending)
            .arg(&self.keys.crashes)
            .arg(&self.keys.dead)
            .arg(&self.keys.dead_index)
            .arg(&self.keys.stats)
            .arg(self.keys.inflight(""))
            .arg(&self.keys.outbox)
            .arg(self.keys.outbox_inflight(""))
            .arg(self.keys.result(""))
            .arg(&self.keys.order)
            .arg(max_crashes)
            .arg(tombstone.as_millis() as u64)
            .arg(self.retention.dead_ttl_ms)
            .arg(reaper_id)
            .arg(self.retention.result_ttl_secs)
            .invoke(&mut self.conn.clone())
            .await?;
        Ok(Reaped {
            recovered,
            poisoned,
            replies,
        })
    }

    /// Puts the worker's remaining in-flight messages back at the head of the
    /// pending list, hands its undelivered replies to `{Q}:outbox`, and drops
    /// its lease (graceful shutdown). Returns how many messages went back.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn release(&self, worker_id: &str) -> QueueResult<u64> {
        Ok(Eval::new(&self.scripts.release, 5)
            .arg(&self.keys.workers)
            .arg(self.keys.inflight(worker_id))
            .arg(&self.keys.pending)
            .arg(self.keys.outbox_inflight(worker_id))
            .arg(&self.keys.outbox)
            .arg(worker_id)
            .invoke(&mut self.conn.clone())
            .await?)
    }

    /// Moves up to `max` replies from `{Q}:outbox` (left there by dead or
    /// stopped workers) into `worker_id`'s outbox hash, atomically, if the
    /// worker holds its lease, and returns them as (field, record) pairs for
    /// [`Queue::deliver`] (see [`outbox::Reply::new`]). `None` means the
    /// lease was lost.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn claim_outbox(
        &self,
        worker_id: &str,
        max: usize,
    ) -> QueueResult<Option<Vec<(Vec<u8>, Vec<u8>)>>> {
        let flat: Option<Vec<Vec<u8>>> = Eval::new(&self.scripts.claim, 3)
            .arg(&self.keys.outbox)
            .arg(self.keys.outbox_inflight(worker_id))
            .arg(&self.keys.workers)
            .arg(worker_id)
            .arg(max)
            .arg(outbox::token_prefix())
            .invoke(&mut self.conn.clone())
            .await?;
        Ok(flat.map(|flat| {
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut items = flat.into_iter();
            while let (Some(field), Some(record)) = (items.next(), items.next()) {
                pairs.push((field, record));
            }
            pairs
        }))
    }

    /// Delivers replies that sit in `worker_id`'s outbox hash: per reply,
    /// `RPUSH reply_to record`, then one `HDEL` of all their fields, in one
    /// pipeline (not a script: `reply_to` may live in another Cluster slot).
    /// Returns what became of each reply. Should the worker die before the
    /// `HDEL` ran, the reaper returns the replies to `{Q}:outbox` and
    /// another worker delivers them again: at least once.
    ///
    /// # Errors
    /// On connection errors (the pipeline may or may not have run; the
    /// replies are still in the worker's hash if the `HDEL` did not run).
    pub async fn deliver(
        &self,
        worker_id: &str,
        replies: &[outbox::Reply<'_>],
    ) -> QueueResult<Vec<outbox::Delivery>> {
        use outbox::Delivery;
        if replies.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<&[u8]> = replies.iter().map(|r| r.field).collect();
        let results = if self.conn.is_cluster() {
            self.push_by_slot(replies, &fields, worker_id).await?
        } else {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for reply in replies.iter().filter(|r| !r.reply_to.is_empty()) {
                pipe.rpush(reply.reply_to, reply.record);
            }
            pipe.hdel(self.keys.outbox_inflight(worker_id), fields);
            let results: Vec<redis::RedisResult<redis::Value>> =
                pipe.query_async(&mut self.conn.clone()).await?;
            results
        };
        let mut results = results.into_iter();
        let out: Vec<Delivery> = replies
            .iter()
            .map(|reply| {
                if reply.reply_to.is_empty() {
                    return Delivery::Malformed;
                }
                match results.next() {
                    Some(Ok(_)) => Delivery::Delivered,
                    Some(Err(e)) => Delivery::Refused(e.to_string()),
                    None => Delivery::Refused("no reply from redis".into()),
                }
            })
            .collect();
        if let Some(Err(e)) = results.next() {
            // The replies were pushed; they stay in the hash and are pushed
            // again once this lease ends (at least once).
            tracing::warn!(error = %e, "cannot remove delivered replies from the outbox");
        }
        let refused = out
            .iter()
            .filter(|d| matches!(d, Delivery::Refused(_)))
            .count();
        if refused > 0 {
            // Best effort: an error here must not make the caller deliver again.
            let counted: redis::RedisResult<i64> = redis::cmd("HINCRBY")
                .arg(&self.keys.stats)
                .arg("replies_refused")
                .arg(refused)
                .query_async(&mut self.conn.clone())
                .await;
            if let Err(e) = counted {
                tracing::debug!(error = %e, "cannot count refused replies");
            }
        }
        Ok(out)
    }

    /// [`Queue::deliver`] on a Cluster: the `reply_to` lists are the
    /// producers' keys, in any slot, and a cluster pipeline must stay in one
    /// slot; so one pipeline per slot, then the `HDEL` (the queue's slot).
    /// Returns the results in the order of the single-node pipeline.
    async fn push_by_slot(
        &self,
        replies: &[outbox::Reply<'_>],
        fields: &[&[u8]],
        worker_id: &str,
    ) -> QueueResult<Vec<redis::RedisResult<redis::Value>>> {
        use crate::connection::slot::key_slot;
        let pushed: Vec<&outbox::Reply<'_>> =
            replies.iter().filter(|r| !r.reply_to.is_empty()).collect();
        let mut by_slot: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, reply) in pushed.iter().enumerate() {
            by_slot.entry(key_slot(reply.reply_to)).or_default().push(i);
        }
        let mut results: Vec<Option<redis::RedisResult<redis::Value>>> =
            (0..pushed.len()).map(|_| None).collect();
        let mut conn = self.conn.clone();
        for indices in by_slot.values() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in indices {
                pipe.rpush(pushed[i].reply_to, pushed[i].record);
            }
            let answers: Vec<redis::RedisResult<redis::Value>> =
                pipe.query_async(&mut conn).await?;
            for (&i, answer) in indices.iter().zip(answers) {
                results[i] = Some(answer);
            }
        }
        let removed: redis::RedisResult<redis::Value> = redis::cmd("HDEL")
            .arg(self.keys.outbox_inflight(worker_id))
            .arg(fields)
            .query_async(&mut conn)
            .await;
        let mut out: Vec<redis::RedisResult<redis::Value>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Ok(redis::Value::Nil)))
            .collect();
        out.push(removed);
        Ok(out)
    }

    /// `worker_id`'s outbox hash: (field, record) pairs. Only for the rare
    /// case of an acknowledgement whose answer was lost (see the
    /// acknowledger); the hash holds at most a few batches.
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn outbox_of(&self, worker_id: &str) -> QueueResult<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(redis::cmd("HGETALL")
            .arg(self.keys.outbox_inflight(worker_id))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Lengths of the outbox: (`{Q}:outbox`, the sum of the
    /// `{Q}:outbox:inflight:<worker>` hashes of the given workers).
    ///
    /// # Errors
    /// On Redis errors.
    pub async fn outbox_len(&self, workers: &[String]) -> QueueResult<(u64, u64)> {
        let mut pipe = redis::pipe();
        pipe.llen(&self.keys.outbox);
        for worker in workers {
            pipe.hlen(self.keys.outbox_inflight(worker));
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok((lens[0], lens[1..].iter().sum()))
    }
}
