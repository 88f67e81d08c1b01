//! What Sluice writes back: result records and dead letters.

use serde::{Deserialize, Serialize};

pub use crate::sandbox::Usage;

/// Final or intermediate status of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The plugin returned a result.
    Succeeded,
    /// The task failed for good; a dead letter holds its message.
    Failed,
    /// The last attempt failed and another one is scheduled.
    Retrying,
}

/// Why a task failed: a stable `kind` for programs, a `message` for people.
///
/// Kinds: `malformed`, `missing_task_type`, `unknown_task_type` (the message
/// could not be routed); `retryable`, `fatal`, `trap`, `timeout`, `memory`,
/// `interrupted`, `sandbox`, `fuel_exhausted` (the sandbox, see
/// `sandbox::TaskFailure`); `poison` (in flight on too many workers that
/// crashed); `too_large` (the message is longer than `--max-message-bytes`),
/// `result_too_large` (the result is longer than `max_result_bytes`);
/// `forbidden_reply_to` (multi-tenant: `reply_to` outside the tenant's prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable name of the case.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The result record of a task, stored as JSON under `{Q}:result:<id>` (with
/// a TTL, 24 h by default) and pushed onto the task's `reply_to` list.
///
/// ```json
/// {"id":"0193…","task_type":"parse_log_file","status":"succeeded",
///  "result":{"lines":20,…},"error":null,"attempts":1,
///  "started_at":1764000000123,"finished_at":1764000000125,"duration_ms":2,
///  "plugin":"parse-log-file","plugin_version":"0.1.0","plugin_sha256":"…","worker":"host:1234:ab12",
///  "usage":{"cpu_us":812,"peak_memory_bytes":1179648,"fuel":null,"instantiate_us":9}}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRecord {
    /// Task id.
    pub id: String,
    /// Task type, when the message had one.
    pub task_type: Option<String>,
    /// Outcome.
    pub status: Status,
    /// The plugin's JSON result, when it succeeded (kept verbatim).
    pub result: Option<Box<serde_json::value::RawValue>>,
    /// Why it failed, when it did.
    pub error: Option<ErrorInfo>,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// When this attempt started, Unix ms.
    pub started_at: u64,
    /// When this attempt ended, Unix ms.
    pub finished_at: u64,
    /// `finished_at - started_at`, ms.
    pub duration_ms: u64,
    /// Name of the plugin that ran the task.
    pub plugin: Option<String>,
    /// The plugin's version (from its manifest), when known.
    pub plugin_version: Option<String>,
    /// SHA-256 of the plugin's `.wasm` file.
    pub plugin_sha256: Option<String>,
    /// Id of the worker that ran this attempt.
    pub worker: String,
    /// What the attempt used: CPU, peak memory, fuel, instantiation time
    /// (all zero, fuel `null`, when the task never reached a plugin). Read
    /// as all zero from a record written before this field existed (an
    /// older worker's, during a rolling upgrade).
    #[serde(default)]
    pub usage: Usage,
    /// The tenant whose queue the task came from (multi-tenant workers only;
    /// absent in single-tenant mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The task that enqueued this one as a follow-up (its message's
    /// `parent_id`); absent for a producer's task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Ids of the follow-ups this task enqueued (`sluice:plugin@0.2.0`
    /// `enqueue`), pushed with its success; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

/// A message that will not be processed again unless requeued, stored as
/// JSON in the `{Q}:dead` hash under its task id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Task id (assigned when the message had none).
    pub id: String,
    /// Task type, when the message had one.
    pub task_type: Option<String>,
    /// The original message text, exactly as it was popped — or, for a
    /// message larger than `--max-message-bytes` (kind `too_large`), the
    /// stand-in Sluice kept instead: `{"id", "task_type", "reply_to",
    /// "sluice_too_large": {"bytes", "limit", "excerpt"}}`, the excerpt
    /// being its first [`EXCERPT_BYTES`].
    pub message: String,
    /// Length of the original message when `message` is such a stand-in;
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_bytes: Option<u64>,
    /// The last error.
    pub error: ErrorInfo,
    /// Attempts made.
    pub attempts: u32,
    /// When it was dead-lettered, Unix ms.
    pub dead_at: u64,
    /// Worker that dead-lettered it.
    pub worker: String,
}

/// Bytes of an oversized message or result kept for people to see.
pub const EXCERPT_BYTES: usize = 1024;

/// The first `max` bytes of `bytes` as text: cut back to a UTF-8 character
/// boundary, invalid UTF-8 replaced (lossy).
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let mut end = bytes.len().min(max);
    if end < bytes.len() {
        // Do not split a character: back off continuation bytes (0b10xxxxxx),
        // at most three (the longest UTF-8 character is four bytes).
        let floor = end.saturating_sub(3);
        while end > floor && bytes[end] & 0xc0 == 0x80 {
            end -= 1;
        }
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Checks a plugin's result before it becomes part of a record: it must be
/// at most `max_bytes` long and valid JSON. Returns it unchanged (no copy,
/// no re-printing) as the record's `result`.
///
/// # Errors
/// An [`ErrorInfo`] of kind `result_too_large` (its message keeps the first
/// [`EXCERPT_BYTES`] of the result) or `fatal` (not JSON). Both are
/// permanent: the task is dead-lettered.
pub fn result_value(
    json: String,
    max_bytes: usize,
) -> Result<Box<serde_json::value::RawValue>, ErrorInfo> {
    if json.len() > max_bytes {
        return Err(ErrorInfo {
            kind: "result_too_large".into(),
            message: format!(
                "the plugin returned a result of {} bytes, more than max_result_bytes = {max_bytes}; it begins: {}",
                json.len(),
                excerpt(json.as_bytes(), EXCERPT_BYTES)
            ),
        });
    }
    serde_json::value::RawValue::from_string(json).map_err(|e| ErrorInfo {
        kind: "fatal".into(),
        message: format!("the plugin returned invalid JSON: {e}"),
    })
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
