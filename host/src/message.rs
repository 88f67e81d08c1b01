//! The wire format: the JSON message a producer pushes onto the queue.
//!
//! Sluice accepts the seed article's message as-is —
//! `{"task_type": "parse_log_file", "params": {...}}` pushed with `RPUSH` —
//! and a few optional fields:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `task_type` | string, required | routes the task to the plugin claiming it |
//! | `params` | any JSON, default `{}` | handed to the plugin as JSON text, byte for byte |
//! | `id` | string or integer | task id; assigned (UUID v7) when absent |
//! | `reply_to` | string | a list key: the result record is `RPUSH`ed there |
//! | `max_retries` | integer | retries allowed after the first attempt |
//! | `delay_ms` | integer | do not run before enqueue time + this many ms |
//! | `run_at` | integer | do not run before this Unix time, ms |
//! | `backoff_base_ms`, `backoff_cap_ms` | integer | per-task retry backoff, ms |
//! | `attempts` | integer | attempts already made (written by Sluice on retry) |
//! | `unroutable_since` | integer | Unix ms when Sluice first found no plugin for the type (written by Sluice) |
//!
//! Unknown fields are kept untouched (they travel with retries and dead letters).

use serde::Deserialize;
use serde_json::value::RawValue;

/// A task parsed from a queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Task id: the producer's, or a fresh UUID v7.
    pub id: String,
    /// Whether `id` was assigned by Sluice (the producer gave none).
    pub id_assigned: bool,
    /// The `task_type` field.
    pub task_type: String,
    /// `params` as JSON text exactly as the producer wrote it; `{}` if absent or null.
    pub params: String,
    /// The `reply_to` list key, if any.
    pub reply_to: Option<String>,
    /// Attempts already made before this one (0 for a fresh task).
    pub attempts: u32,
    /// Per-task override of the retry limit.
    pub max_retries: Option<u32>,
    /// Per-task override of the first retry delay, ms.
    pub backoff_base_ms: Option<u64>,
    /// Per-task override of the largest retry delay, ms.
    pub backoff_cap_ms: Option<u64>,
    /// Unix time in ms before which the task must not run, from `run_at` or `delay_ms`.
    pub not_before_ms: Option<u64>,
    /// Unix ms when a worker first found no plugin for `task_type`.
    pub unroutable_since: Option<u64>,
    /// Whether `delay_ms` was given (it is relative, so it is resolved once, on first sight).
    pub has_delay_ms: bool,
}

/// Why a message could not become a task. The raw message is dead-lettered
/// with this reason; nothing is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    /// The bytes are not a JSON object (or not UTF-8).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The object has no `task_type` field.
    #[error("message has no \"task_type\" field")]
    MissingTaskType,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Deserialize)]
struct Wire<'a> {
    task_type: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    id: Option<Id>,
    reply_to: Option<String>,
    attempts: Option<u32>,
    max_retries: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_cap_ms: Option<u64>,
    delay_ms: Option<u64>,
    run_at: Option<u64>,
    unroutable_since: Option<u64>,
}

impl Task {
    /// Parses one queue message. `now_ms` (Unix ms) resolves `delay_ms`.
    ///
    /// # Errors
    /// [`BadMessage::Malformed`] for bytes that are not a JSON object or have
    /// a field of the wrong type; [`BadMessage::MissingTaskType`] when
    /// `task_type` is absent or null.
    pub fn parse(raw: &[u8], now_ms: u64) -> Result<Task, BadMessage> {
        let wire: Wire<'_> =
            serde_json::from_slice(raw).map_err(|e| BadMessage::Malformed(e.to_string()))?;
        let task_type = wire.task_type.ok_or(BadMessage::MissingTaskType)?;
        let params = match wire.params {
            Some(p) if p.get() != "null" => p.get().to_owned(),
            _ => "{}".to_owned(),
        };
        let (id, id_assigned) = match wire.id {
            Some(Id::Text(s)) if !s.is_empty() => (s, false),
            Some(Id::Number(n)) => (n.to_string(), false),
            _ => (new_id(), true),
        };
        let not_before_ms = match (wire.run_at, wire.delay_ms) {
            (Some(at), _) => Some(at),
            (None, Some(d)) => Some(now_ms.saturating_add(d)),
            (None, None) => None,
        };
        Ok(Task {
            id,
            id_assigned,
            task_type,
            params,
            reply_to: wire.reply_to.filter(|r| !r.is_empty()),
            attempts: wire.attempts.unwrap_or(0),
            max_retries: wire.max_retries,
            backoff_base_ms: wire.backoff_base_ms,
            backoff_cap_ms: wire.backoff_cap_ms,
            not_before_ms,
            unroutable_since: wire.unroutable_since,
            has_delay_ms: wire.delay_ms.is_some() && wire.run_at.is_none(),
        })
    }
}

/// A fresh task id: a UUID v7 (time-ordered) in its hyphenated text form.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Re-encodes `raw` (a JSON object) with the given fields set (a `null`
/// value removes the field), keeping every other field and their order. Used to write retries and delayed tasks back
/// to Redis with their `id` and `attempts`, so they survive the round trip.
///
/// # Errors
/// [`BadMessage::Malformed`] when `raw` is not a JSON object.
pub fn rewrite(raw: &[u8], fields: &[(&str, serde_json::Value)]) -> Result<String, BadMessage> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).map_err(|e| BadMessage::Malformed(e.to_string()))?;
    for (name, value) in fields {
        if value.is_null() {
            object.shift_remove(*name);
        } else {
            object.insert((*name).to_owned(), value.clone());
        }
    }
    Ok(serde_json::Value::Object(object).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_message_parses_with_params_verbatim() {
        let raw = br#"{"task_type": "parse_log_file", "params": {"text": "a\nb",  "n": 1.50}}"#;
        let t = Task::parse(raw, 0).unwrap();
        assert_eq!(t.task_type, "parse_log_file");
        assert_eq!(t.params, r#"{"text": "a\nb",  "n": 1.50}"#);
        assert!(t.id_assigned);
        assert_eq!(t.attempts, 0);
        assert_eq!(t.reply_to, None);
    }

    #[test]
    fn params_optional_and_ids_of_both_kinds() {
        let t = Task::parse(br#"{"task_type":"noop","id":42}"#, 0).unwrap();
        assert_eq!(
            (t.params.as_str(), t.id.as_str(), t.id_assigned),
            ("{}", "42", false)
        );
        let t = Task::parse(br#"{"task_type":"noop","id":"job-1","params":null}"#, 0).unwrap();
        assert_eq!((t.params.as_str(), t.id.as_str()), ("{}", "job-1"));
    }

    #[test]
    fn delays_resolve_against_now() {
        let t = Task::parse(br#"{"task_type":"x","delay_ms":500}"#, 1000).unwrap();
        assert_eq!(t.not_before_ms, Some(1500));
        assert!(t.has_delay_ms);
        let t = Task::parse(br#"{"task_type":"x","run_at":7,"delay_ms":500}"#, 1000).unwrap();
        assert_eq!(t.not_before_ms, Some(7));
        assert!(!t.has_delay_ms);
    }

    #[test]
    fn bad_messages_are_named() {
        assert!(matches!(
            Task::parse(b"not json", 0),
            Err(BadMessage::Malformed(_))
        ));
        assert!(matches!(
            Task::parse(b"[1,2]", 0),
            Err(BadMessage::Malformed(_))
        ));
        assert_eq!(
            Task::parse(br#"{"params":{}}"#, 0),
            Err(BadMessage::MissingTaskType)
        );
        assert!(matches!(
            Task::parse(br#"{"task_type":5}"#, 0),
            Err(BadMessage::Malformed(_))
        ));
    }

    #[test]
    fn rewrite_keeps_unknown_fields_in_order() {
        let out = rewrite(
            br#"{"task_type":"x","custom":[],"params":{}}"#,
            &[("attempts", 2.into())],
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"task_type":"x","custom":[],"params":{},"attempts":2}"#
        );
    }
}
