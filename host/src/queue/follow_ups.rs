//! Follow-up task messages: what a succeeded task's `enqueue` calls
//! (`sluice:plugin@0.2.0`) become on the queue.
//!
//! The acknowledgement script (`finish.lua` with `common_follow_ups.lua`)
//! pushes them onto the parent's own queue in the same atomic step that
//! records the parent as succeeded and removes it from the in-flight list —
//! the reply outbox's pattern: nothing is pushed for an attempt that is not
//! acknowledged (failed, retried, timed out, fenced off, killed), and an
//! acknowledged parent's follow-ups cannot be lost between two steps. In
//! tenant mode the parent's queue is its tenant's, so a plugin can only
//! start work in its own tenant.
//!
//! A follow-up message is an ordinary task message with two more fields:
//! `{"id": "…", "task_type": "parse_log_file", "params": {…},
//! "parent_id": "<parent id>", "chain_depth": <parent's + 1>}`.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::message::Task;
use crate::sandbox::FollowUp;

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    task_type: &'a str,
    params: &'a RawValue,
    parent_id: &'a str,
    chain_depth: u32,
}

/// The queue messages of `parent`'s `follow_ups`, in the order it enqueued
/// them. A follow-up whose params are not JSON (the sandbox checked they
/// are) gets `{}`.
pub fn messages(parent: &Task, follow_ups: &[FollowUp]) -> Vec<String> {
    let empty: Box<RawValue> = RawValue::from_string("{}".into()).expect("valid JSON");
    follow_ups
        .iter()
        .map(|f| {
            let params: Box<RawValue> =
                serde_json::from_str(&f.params).unwrap_or_else(|_| empty.clone());
            serde_json::to_string(&Message {
                id: &f.id,
                task_type: &f.task_type,
                params: &params,
                parent_id: &parent.id,
                chain_depth: parent.chain_depth.saturating_add(1),
            })
            .expect("a follow-up message serializes")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_up_names_its_parent_and_depth() {
        let parent =
            Task::parse(br#"{"id": "p1", "task_type": "a", "chain_depth": 2}"#, 0).unwrap();
        let messages = messages(
            &parent,
            &[FollowUp {
                id: "c1".into(),
                task_type: "b".into(),
                params: r#"{"file": "x.log"}"#.into(),
            }],
        );
        assert_eq!(
            messages,
            [
                r#"{"id":"c1","task_type":"b","params":{"file": "x.log"},"parent_id":"p1","chain_depth":3}"#
            ]
        );
        let child = Task::parse(messages[0].as_bytes(), 0).unwrap();
        assert_eq!(
            (child.parent_id.as_deref(), child.chain_depth),
            (Some("p1"), 3)
        );
    }
}
