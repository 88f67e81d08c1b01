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
//! | `id` | string or number | task id; assigned (UUID v7) when absent; a number keeps its text exactly (`123456789012345678901234567890` stays so) |
//! | `reply_to` | string | a list key: the result record is `RPUSH`ed there |
//! | `ordering_key` | string, ≤ 256 bytes | tasks of the queue with the same key run one at a time, in push order (see [`crate::queue::ordering`]); longer or not a string: `malformed` |
//! | `max_retries` | integer | retries allowed after the first attempt |
//! | `delay_ms` | integer | do not run before enqueue time + this many ms |
//! | `run_at` | integer | do not run before this Unix time, ms |
//! | `backoff_base_ms`, `backoff_cap_ms` | integer | per-task retry backoff, ms |
//! | `attempts` | integer | attempts already made (written by Sluice on retry) |
//! | `unroutable_since` | integer | Unix ms when Sluice first found no plugin for the type (written by Sluice) |
//!
//! Unknown fields are kept untouched (they travel with retries and dead letters).
//!
//! A message longer than the worker's `--max-message-bytes` is never parsed
//! in full: [`check_size`] rejects it and [`Envelope::peek`] reads only its
//! `id`, `task_type` and `reply_to` (skipping `params` without copying it),
//! so that its dead letter and result record carry the producer's id.

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
    /// The `ordering_key`, if any (1 to [`MAX_ORDERING_KEY_BYTES`] bytes;
    /// an empty string counts as none).
    pub ordering_key: Option<String>,
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
    /// The task that enqueued this one as a follow-up, if any.
    pub parent_id: Option<String>,
    /// How many follow-up steps separate it from a producer's task (0 for
    /// a producer's task, whose message has no `chain_depth`).
    pub chain_depth: u32,
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
    /// The message is longer than the worker's `--max-message-bytes`.
    #[error("message of {bytes} bytes is larger than --max-message-bytes = {limit}")]
    TooLarge {
        /// Length of the message, bytes.
        bytes: usize,
        /// The limit it broke, bytes.
        limit: usize,
    },
}

impl BadMessage {
    /// The error kind written to the result record and the dead letter:
    /// `malformed`, `missing_task_type` or `too_large`.
    pub fn kind(&self) -> &'static str {
        match self {
            BadMessage::Malformed(_) => "malformed",
            BadMessage::MissingTaskType => "missing_task_type",
            BadMessage::TooLarge { .. } => "too_large",
        }
    }
}

/// Longest `ordering_key`, bytes. A longer one makes the message
/// [`BadMessage::Malformed`] (dead-lettered without running, and without
/// taking any key).
pub const MAX_ORDERING_KEY_BYTES: usize = 256;

/// Rejects a message longer than `limit` bytes before anything parses or
/// copies it.
///
/// # Errors
/// [`BadMessage::TooLarge`] when `raw.len() > limit`.
pub fn check_size(raw: &[u8], limit: usize) -> Result<(), BadMessage> {
    if raw.len() > limit {
        return Err(BadMessage::TooLarge {
            bytes: raw.len(),
            limit,
        });
    }
    Ok(())
}

/// A task id as the producer wrote it: a JSON string, or a JSON number kept
/// as its exact text (no `u64`/`f64` round trip, so
/// `123456789012345678901234567890` is not turned into `1.2345678901234568e29`).
struct Id(Option<String>);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        id_from_raw(raw.get())
            .map(Id)
            .map_err(serde::de::Error::custom)
    }
}

/// The id text of a raw JSON `id` value: a string's contents, a number's
/// text; `None` for `null`.
fn id_from_raw(raw: &str) -> Result<Option<String>, String> {
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(b'-' | b'0'..=b'9') => Ok(Some(raw.to_owned())),
        _ if raw == "null" => Ok(None),
        _ => Err(format!("\"id\" must be a string or a number, not {raw}")),
    }
}

/// The field of the stand-in Sluice leaves in place of a message longer
/// than `--max-message-bytes` (see `worker::oversized`):
/// `{"bytes": n, "limit": n, "excerpt": "…"}`. A message carrying it is
/// [`BadMessage::TooLarge`].
pub const TOO_LARGE_MARK: &str = "sluice_too_large";

#[derive(Deserialize)]
struct TooLargeMark {
    bytes: usize,
    limit: usize,
}

#[derive(Deserialize)]
struct Wire<'a> {
    task_type: Option<String>,
    sluice_too_large: Option<TooLargeMark>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    id: Option<Id>,
    reply_to: Option<String>,
    #[serde(borrow)]
    ordering_key: Option<&'a RawValue>,
    attempts: Option<u32>,
    max_retries: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_cap_ms: Option<u64>,
    delay_ms: Option<u64>,
    run_at: Option<u64>,
    unroutable_since: Option<u64>,
    parent_id: Option<String>,
    chain_depth: Option<u32>,
}

impl Task {
    /// Parses one queue message. `now_ms` (Unix ms) resolves `delay_ms`.
    ///
    /// # Errors
    /// [`BadMessage::Malformed`] for bytes that are not a JSON object or have
    /// a field of the wrong type; [`BadMessage::MissingTaskType`] when
    /// `task_type` is absent or null; [`BadMessage::TooLarge`] for the
    /// stand-in of an oversized message (field [`TOO_LARGE_MARK`]).
    pub fn parse(raw: &[u8], now_ms: u64) -> Result<Task, BadMessage> {
        if !is_object(raw) {
            return Err(BadMessage::Malformed(
                "the message is not a JSON object".into(),
            ));
        }
        let wire: Wire<'_> =
            serde_json::from_slice(raw).map_err(|e| BadMessage::Malformed(e.to_string()))?;
        if let Some(TooLargeMark { bytes, limit }) = wire.sluice_too_large {
            return Err(BadMessage::TooLarge { bytes, limit });
        }
        let task_type = wire.task_type.ok_or(BadMessage::MissingTaskType)?;
        let params = match wire.params {
            Some(p) if p.get() != "null" => p.get().to_owned(),
            _ => "{}".to_owned(),
        };
        let (id, id_assigned) = match wire.id {
            Some(Id(Some(s))) if !s.is_empty() => (s, false),
            _ => (new_id(), true),
        };
        let ordering_key = wire.ordering_key.map(ordering_key).transpose()?.flatten();
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
            ordering_key,
            attempts: wire.attempts.unwrap_or(0),
            max_retries: wire.max_retries,
            backoff_base_ms: wire.backoff_base_ms,
            backoff_cap_ms: wire.backoff_cap_ms,
            not_before_ms,
            unroutable_since: wire.unroutable_since,
            has_delay_ms: wire.delay_ms.is_some() && wire.run_at.is_none(),
            parent_id: wire.parent_id.filter(|p| !p.is_empty()),
            chain_depth: wire.chain_depth.unwrap_or(0),
        })
    }
}

/// The `ordering_key` of a message from its raw JSON value: `None` for
/// `null` or `""`.
///
/// # Errors
/// [`BadMessage::Malformed`] naming the problem, for a value that is not a
/// string or is longer than [`MAX_ORDERING_KEY_BYTES`].
fn ordering_key(raw: &RawValue) -> Result<Option<String>, BadMessage> {
    if raw.get() == "null" {
        return Ok(None);
    }
    let key: String = serde_json::from_str(raw.get()).map_err(|_| {
        BadMessage::Malformed(format!(
            "\"ordering_key\" must be a string of at most {MAX_ORDERING_KEY_BYTES} bytes, not {}",
            excerpt_of(raw.get())
        ))
    })?;
    if key.len() > MAX_ORDERING_KEY_BYTES {
        return Err(BadMessage::Malformed(format!(
            "\"ordering_key\" is {} bytes long; at most {MAX_ORDERING_KEY_BYTES} are allowed",
            key.len()
        )));
    }
    Ok((!key.is_empty()).then_some(key))
}

/// At most the first 64 characters of `text`, for error messages.
fn excerpt_of(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The routing fields of a message, read without `params`: what a message
/// too large to process still tells about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The producer's `id`, when it gave a usable one.
    pub id: Option<String>,
    /// The `task_type`, when present and a string.
    pub task_type: Option<String>,
    /// The `reply_to` list, when present, a string and not empty.
    pub reply_to: Option<String>,
}

#[derive(Deserialize)]
struct WireEnvelope {
    #[serde(default)]
    id: Option<Id>,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
}

impl Envelope {
    /// Reads `id`, `task_type` and `reply_to` of `raw`, skipping every other
    /// field (`params` included) without copying it; all `None` when `raw`
    /// is not a JSON object with fields of the right types.
    pub fn peek(raw: &[u8]) -> Envelope {
        if !is_object(raw) {
            return Envelope::default();
        }
        match serde_json::from_slice::<WireEnvelope>(raw) {
            Ok(w) => Envelope {
                id: w.id.and_then(|Id(id)| id).filter(|id| !id.is_empty()),
                task_type: w.task_type,
                reply_to: w.reply_to.filter(|r| !r.is_empty()),
            },
            Err(_) => Envelope::default(),
        }
    }
}

/// Whether `raw` starts like a JSON object. serde reads a struct from a JSON
/// array too (by position), which a message must not be.
fn is_object(raw: &[u8]) -> bool {
    raw.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&b| b == b'{')
}

/// A fresh task id: a UUID v7 (time-ordered) in its hyphenated text form.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Re-encodes `raw` (a JSON object) with the given fields set (a `null`
/// value removes the field), keeping every other field and their order.
/// Used to write retries and delayed tasks back to Redis with their `id` and
/// `attempts`, so they survive the round trip.
///
/// Every kept field's value is copied as the producer wrote it (its JSON
/// text, not a parsed and re-printed value), so `params` stays byte for byte
/// and a large numeric `id` keeps its digits; only the whitespace between
/// top-level fields is dropped. A field given twice keeps its first position
/// and its last value (as `serde_json` reads it).
///
/// # Errors
/// [`BadMessage::Malformed`] when `raw` is not a JSON object.
pub fn rewrite(raw: &[u8], fields: &[(&str, serde_json::Value)]) -> Result<String, BadMessage> {
    let mut object: indexmap::IndexMap<String, &RawValue> =
        serde_json::from_slice(raw).map_err(|e| BadMessage::Malformed(e.to_string()))?;
    let set: Vec<(&str, String)> = fields
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| (*name, value.to_string()))
        .collect();
    for (name, value) in fields {
        if value.is_null() {
            object.shift_remove(*name);
        }
    }
    let mut out = String::with_capacity(raw.len() + 64);
    out.push('{');
    let mut push = |name: &str, value: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).expect("a string serializes"));
        out.push(':');
        out.push_str(value);
    };
    for (name, value) in &object {
        match set.iter().find(|(n, _)| n == name) {
            Some((_, new)) => push(name, new),
            None => push(name, value.get()),
        }
    }
    for (name, value) in &set {
        if !object.contains_key(*name) {
            push(name, value);
        }
    }
    out.push('}');
    Ok(out)
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
    fn ordering_keys_up_to_256_bytes_and_strings_only() {
        let t = Task::parse(br#"{"task_type":"x","ordering_key":"acct-7"}"#, 0).unwrap();
        assert_eq!(t.ordering_key.as_deref(), Some("acct-7"));
        for none in [r#""""#, "null"] {
            let raw = format!(r#"{{"task_type":"x","ordering_key":{none}}}"#);
            assert_eq!(Task::parse(raw.as_bytes(), 0).unwrap().ordering_key, None);
        }
        let longest = "k".repeat(MAX_ORDERING_KEY_BYTES);
        let raw = format!(r#"{{"task_type":"x","ordering_key":"{longest}"}}"#);
        assert_eq!(
            Task::parse(raw.as_bytes(), 0).unwrap().ordering_key,
            Some(longest)
        );
        let raw = format!(
            r#"{{"task_type":"x","ordering_key":"{}"}}"#,
            "é".repeat(129)
        );
        let err = Task::parse(raw.as_bytes(), 0).unwrap_err();
        assert_eq!(err.kind(), "malformed");
        assert!(
            err.to_string().contains("258 bytes long; at most 256"),
            "{err}"
        );
        let err = Task::parse(br#"{"task_type":"x","ordering_key":17}"#, 0).unwrap_err();
        assert_eq!(err.kind(), "malformed");
        let text = err.to_string();
        assert!(text.contains("\"ordering_key\" must be a string"), "{text}");
        assert!(text.contains("not 17"), "{text}");
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
    fn numeric_ids_keep_their_text_and_other_types_are_malformed() {
        let raw = br#"{"task_type":"x","id":123456789012345678901234567890}"#;
        let t = Task::parse(raw, 0).unwrap();
        assert_eq!(t.id, "123456789012345678901234567890");
        let t = Task::parse(br#"{"task_type":"x","id":1.50}"#, 0).unwrap();
        assert_eq!(t.id, "1.50");
        for bad in [r#"true"#, r#"[1]"#, r#"{"a":1}"#] {
            let raw = format!(r#"{{"task_type":"x","id":{bad}}}"#);
            assert!(
                matches!(Task::parse(raw.as_bytes(), 0), Err(BadMessage::Malformed(ref m)) if m.contains("\"id\" must be")),
                "{bad}"
            );
        }
        // The retry rewrite keeps the digits (and params) as written.
        let out = rewrite(
            br#"{"id":123456789012345678901234567890, "params":{"n": 1.50}}"#,
            &[("attempts", 1.into())],
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"id":123456789012345678901234567890,"params":{"n": 1.50},"attempts":1}"#
        );
    }

    #[test]
    fn size_check_and_envelope() {
        assert_eq!(check_size(b"12345", 5), Ok(()));
        let err = check_size(b"123456", 5).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (
                "too_large",
                "message of 6 bytes is larger than --max-message-bytes = 5"
            )
        );
        let e =
            Envelope::peek(br#"{"params":{"big":[1,2,3]},"id":7,"task_type":"t","reply_to":""}"#);
        assert_eq!(
            (e.id.as_deref(), e.task_type.as_deref(), e.reply_to),
            (Some("7"), Some("t"), None)
        );
        // serde would read a struct from an array by position: not here.
        assert_eq!(Envelope::peek(b"[1]"), Envelope::default());
        let positional = r#"["x",null,null,null,null,null,null,null,null,null,null,null,null]"#;
        assert!(matches!(
            Task::parse(positional.as_bytes(), 0),
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
