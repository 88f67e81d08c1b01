//! Follow-up tasks a plugin starts with the host's `enqueue`
//! (`sluice:plugin@0.2.0`): checked against the manifest's `may_enqueue`,
//! `max_enqueue` and `chain_depth` when the guest calls, **kept in the
//! store** until the task ends, and handed to the worker only with a
//! success, which pushes them in the acknowledgement's own atomic step (see
//! `queue::follow_ups`). A failed, retried, timed-out or killed attempt's
//! follow-ups are dropped with its store, so none is ever orphaned; a retry
//! enqueues afresh. After Celery's chains and BullMQ's flows, made atomic
//! with the parent's acknowledgement like the reply outbox.

/// Total bytes of follow-up params one task may enqueue: 4 MiB.
pub const MAX_FOLLOW_UP_BYTES: usize = 4 << 20;

/// One follow-up task, accepted by `enqueue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// The id `enqueue` returned (UUID v7 text).
    pub id: String,
    /// Its task type (one of the manifest's `may_enqueue`).
    pub task_type: String,
    /// Its params, a JSON object as text, as the guest gave it.
    pub params: String,
}

/// What one task may enqueue, and what it did.
#[derive(Debug, Default)]
pub(crate) struct FollowUps {
    /// The manifest's `may_enqueue`.
    pub(crate) allowed: Vec<String>,
    /// The manifest's `max_enqueue`.
    pub(crate) max: u32,
    /// The manifest's `chain_depth`: the deepest a follow-up may be.
    pub(crate) max_depth: u32,
    /// The running task's own depth (0 for a producer's task).
    pub(crate) depth: u32,
    /// Accepted so far, in call order.
    pub(crate) accepted: Vec<FollowUp>,
    /// Bytes of params accepted so far.
    pub(crate) bytes: usize,
}

impl FollowUps {
    /// Clears what a previous task of a reused instance enqueued, for a task
    /// at chain depth `depth`.
    pub(crate) fn reset(&mut self, depth: u32) {
        self.accepted.clear();
        self.bytes = 0;
        self.depth = depth;
    }

    /// The guest's `enqueue(task_type, params)`: the new id, or why not.
    pub(crate) fn enqueue(&mut self, task_type: String, params: String) -> Result<String, String> {
        if !self.allowed.contains(&task_type) {
            return Err(format!(
                "task type {task_type:?} is not in this plugin's may_enqueue {:?}",
                self.allowed
            ));
        }
        if self.depth >= self.max_depth {
            return Err(format!(
                "chain_depth limit of {} reached: this task is already {} follow-ups deep",
                self.max_depth, self.depth
            ));
        }
        if self.accepted.len() >= self.max as usize {
            return Err(format!(
                "max_enqueue reached: a task may enqueue at most {} follow-ups",
                self.max
            ));
        }
        if self.bytes + params.len() > MAX_FOLLOW_UP_BYTES {
            return Err(format!(
                "follow-up params over {MAX_FOLLOW_UP_BYTES} bytes in one task"
            ));
        }
        match serde_json::from_str::<serde_json::Value>(&params) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err("params must be a JSON object".into()),
            Err(e) => return Err(format!("params are not valid JSON: {e}")),
        }
        let id = crate::message::new_id();
        self.bytes += params.len();
        self.accepted.push(FollowUp {
            id: id.clone(),
            task_type,
            params,
        });
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow_ups(depth: u32) -> FollowUps {
        FollowUps {
            allowed: vec!["parse_log_file".into()],
            max: 2,
            max_depth: 3,
            depth,
            ..FollowUps::default()
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let mut f = follow_ups(0);
        let err = f.enqueue("other".into(), "{}".into()).unwrap_err();
        assert!(err.contains("may_enqueue"), "{err}");
        let err = f
            .enqueue("parse_log_file".into(), "[1]".into())
            .unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
        f.enqueue("parse_log_file".into(), "{}".into()).unwrap();
        f.enqueue("parse_log_file".into(), "{\"a\":1}".into())
            .unwrap();
        let err = f.enqueue("parse_log_file".into(), "{}".into()).unwrap_err();
        assert!(err.contains("max_enqueue"), "{err}");
        assert_eq!(f.accepted.len(), 2);
        let err = follow_ups(3)
            .enqueue("parse_log_file".into(), "{}".into())
            .unwrap_err();
        assert!(err.contains("chain_depth"), "{err}");
    }
}
