//! The Redis key layout of one queue.
//!
//! Producers push onto the list named after the queue (`task_queue`). Every
//! key Sluice derives from it starts with the queue name in braces, a Redis
//! Cluster *hash tag*: `{task_queue}:…` hashes to the same slot as
//! `task_queue` itself, so every Lua script touches a single slot
//! (<https://redis.io/docs/reference/cluster-spec/#hash-tags>).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `Q` | list | pending messages; producers `RPUSH`, workers take from the left |
//! | `{Q}:inflight:<worker>` | list | messages a worker has taken and not yet acknowledged |
//! | `{Q}:workers` | hash | worker id → lease expiry (Unix ms, Redis server clock) |
//! | `{Q}:delayed` | sorted set | messages waiting for a retry or a `delay_ms`/`run_at`, scored by due time (ms) |
//! | `{Q}:crashes` | hash | SHA-1 of a message → times it was in flight on a worker that died |
//! | `{Q}:dead` | hash | task id → dead letter (JSON) |
//! | `{Q}:dead:index` | sorted set | task id → time it was dead-lettered (ms), for listing and trimming |
//! | `{Q}:result:<id>` | string | the task's result record (JSON), with a TTL |
//! | `{Q}:stats` | hash | counters: processed, succeeded, failed, retried, dead, recovered, … |
//! | `{Q}:outbox` | list | replies (`<len>:<reply_to><record>`) no live worker is delivering: left by dead or stopped workers |
//! | `{Q}:outbox:inflight:<worker>` | hash | `<token>:<reply_to>` → record: replies a worker acknowledged (or claimed from the outbox) and is pushing to `reply_to` |
//! | `{Q}:order:owner` | hash | `ordering_key` → the task holding the key: SHA-1 of its message, `:<worker>` appended while that worker runs it (see [`crate::queue::ordering`]) |
//! | `{Q}:order:held:<key>` | list | the key's later tasks, parked in push order until the holder ends |
//! | `{Q}:order:retrying` | set | keys whose holder waits for a retry (`ordering_blocked` in `sluice stats`) |
//! | `{Q}:order:parked` | string | tasks parked in all `{Q}:order:held:<key>` lists (`ordering_parked`) |
//!
//! **Queue names.** The hash tag only works when the name itself has no
//! braces: Redis Cluster hashes the text between the *first* `{` and the
//! next `}`, so a queue named `{jobs}` would hash `jobs` for the pending
//! list but `{jobs` for `{{jobs}}:workers` (slots 9631 and 5350), and every
//! script would fail in a Cluster. Rather than deriving a second, different
//! tag (which would hide the problem from operators reading keys),
//! [`check_queue_name`] rejects an empty name and names containing `{` or
//! `}` at start-up, with an error that says why.

/// Why a queue name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueNameError {
    /// The name is empty.
    #[error("the queue name is empty; give --queue a name such as task_queue")]
    Empty,
    /// The name contains `{` or `}`.
    #[error(
        "queue name {0:?} contains '{{' or '}}': Sluice derives its keys as {{QUEUE}}:…, a Redis Cluster hash tag, and braces inside the name would put them in another slot than the queue; choose a name without braces"
    )]
    Braces(String),
    /// The queue's keys would not all hash to one Redis Cluster slot.
    #[error(
        "queue {queue:?}: its keys would live in different Redis Cluster slots ({pending} for the list, {derived} for {{{queue}}}:…), so its scripts could not run; choose a name without braces"
    )]
    CrossSlot {
        /// The queue name.
        queue: String,
        /// Slot of the pending list.
        pending: u16,
        /// Slot of the derived keys.
        derived: u16,
    },
}

/// Checks that `queue` can name a queue: not empty, no `{` or `}` (see the
/// module docs for why).
///
/// # Errors
/// [`QueueNameError`] naming the problem.
pub fn check_queue_name(queue: &str) -> Result<(), QueueNameError> {
    if queue.is_empty() {
        return Err(QueueNameError::Empty);
    }
    if queue.contains(['{', '}']) {
        return Err(QueueNameError::Braces(queue.to_owned()));
    }
    Ok(())
}

/// The keys of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The pending list, named exactly as producers name it.
    pub pending: String,
    /// Hash of worker leases.
    pub workers: String,
    /// Sorted set of delayed messages.
    pub delayed: String,
    /// Crash counters per message.
    pub crashes: String,
    /// Dead letters by id.
    pub dead: String,
    /// Dead-letter ids by time.
    pub dead_index: String,
    /// Counters.
    pub stats: String,
    /// Replies awaiting a mover: the transactional outbox (see
    /// [`crate::queue::outbox`]).
    pub outbox: String,
    /// Prefix of the per-key order keys, `{Q}:order:` (see
    /// [`crate::queue::ordering`]).
    pub order: String,
    prefix: String,
}

impl QueueKeys {
    /// The layout for the queue whose pending list is `queue` (which
    /// [`check_queue_name`] should have accepted; the `sluice` commands check).
    pub fn new(queue: &str) -> QueueKeys {
        let prefix = format!("{{{queue}}}");
        QueueKeys {
            pending: queue.to_owned(),
            workers: format!("{prefix}:workers"),
            delayed: format!("{prefix}:delayed"),
            crashes: format!("{prefix}:crashes"),
            dead: format!("{prefix}:dead"),
            dead_index: format!("{prefix}:dead:index"),
            stats: format!("{prefix}:stats"),
            outbox: format!("{prefix}:outbox"),
            order: format!("{prefix}:order:"),
            prefix,
        }
    }

    /// Checks that every key of the queue hashes to one Redis Cluster slot
    /// (the pending list, and the `{Q}:…` keys), as its scripts need.
    ///
    /// # Errors
    /// [`QueueNameError::CrossSlot`] with both slots.
    pub fn check_one_slot(&self) -> Result<(), QueueNameError> {
        use crate::connection::slot::key_slot;
        let pending = key_slot(self.pending.as_bytes());
        let derived = [
            &self.workers,
            &self.delayed,
            &self.crashes,
            &self.dead,
            &self.dead_index,
            &self.stats,
            &self.outbox,
            &self.inflight("w"),
            &self.outbox_inflight("w"),
            &self.result("1"),
        ]
        .map(|k| key_slot(k.as_bytes()));
        match derived.iter().find(|&&d| d != pending) {
            None => Ok(()),
            Some(&derived) => Err(QueueNameError::CrossSlot {
                queue: self.pending.clone(),
                pending,
                derived,
            }),
        }
    }

    /// The in-flight list of worker `worker_id`.
    pub fn inflight(&self, worker_id: &str) -> String {
        format!("{}:inflight:{worker_id}", self.prefix)
    }

    /// The outbox hash of worker `worker_id`: replies it is delivering, acknowledged with a
    /// `reply_to`, or claimed from [`QueueKeys::outbox`].
    pub fn outbox_inflight(&self, worker_id: &str) -> String {
        format!("{}:outbox:inflight:{worker_id}", self.prefix)
    }

    /// The result record key of task `id`.
    pub fn result(&self, id: &str) -> String {
        format!("{}:result:{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_share_the_queue_hash_tag() {
        let k = QueueKeys::new("task_queue");
        assert_eq!(k.pending, "task_queue");
        assert_eq!(k.inflight("w1"), "{task_queue}:inflight:w1");
        assert_eq!(k.result("42"), "{task_queue}:result:42");
        assert_eq!(k.dead_index, "{task_queue}:dead:index");
        assert_eq!(k.outbox, "{task_queue}:outbox");
        assert_eq!(k.outbox_inflight("w1"), "{task_queue}:outbox:inflight:w1");
        assert_eq!(k.order, "{task_queue}:order:");
    }

    #[test]
    fn names_that_would_break_the_hash_tag_are_rejected() {
        assert_eq!(check_queue_name(""), Err(QueueNameError::Empty));
        for bad in ["{jobs}", "jobs{", "a}b", "{"] {
            let err = check_queue_name(bad).unwrap_err();
            assert_eq!(err, QueueNameError::Braces(bad.into()));
            assert!(err.to_string().contains("hash tag"), "{err}");
        }
        for good in ["task_queue", "jobs:high", "q.1", "日本"] {
            assert_eq!(check_queue_name(good), Ok(()));
            assert_eq!(QueueKeys::new(good).check_one_slot(), Ok(()));
        }
    }

    #[test]
    fn braces_split_the_slot() {
        for bad in ["{jobs}", "a{b}c", "jobs}x", ""] {
            let err = QueueKeys::new(bad).check_one_slot().unwrap_err();
            assert!(
                matches!(err, QueueNameError::CrossSlot { .. }),
                "{bad}: {err}"
            );
        }
    }
}
