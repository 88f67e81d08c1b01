//! Messages longer than `--max-message-bytes`, handled without copying
//! them around (issue #19): the worker reads one whole (Redis has no
//! partial `LMOVE`), then swaps it in its in-flight list for a small
//! *stand-in* — its `id`, `task_type` and `reply_to` (read without
//! `params`), its length and first 1 KiB — drops the big buffer, and
//! dead-letters the stand-in through the ordinary acknowledgement with kind
//! `too_large`. The body is never parsed, copied, or sent back to Redis
//! (acknowledging it as is would send it whole: `LREM` matches by value).
//!
//! The swap is one fenced Lua script that finds the message by length and
//! SHA-1. A worker that dies after the swap leaves the stand-in in flight;
//! the reaper puts it back and the next worker dead-letters it again as
//! `too_large` ([`crate::message::Task::parse`] recognises its
//! [`MARK`] field), so the outcome does not depend on the crash.

use std::sync::LazyLock;

use redis::Script;

use crate::message::Envelope;
use crate::queue::{Queue, QueueResult};
use crate::record::{EXCERPT_BYTES, excerpt};

/// The stand-in's field that holds `{"bytes", "limit", "excerpt"}`.
pub use crate::message::TOO_LARGE_MARK as MARK;

static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../queue/lua/common.lua"),
        include_str!("oversized.lua")
    ))
});

/// The stand-in for the oversized message `raw` (JSON text, about
/// [`EXCERPT_BYTES`] long): `id` (the producer's, or `id` assigned here),
/// `task_type` and `reply_to` from `envelope`, and the [`MARK`] field.
pub(super) fn stand_in(raw: &[u8], id: &str, envelope: &Envelope, limit: usize) -> String {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), id.into());
    if let Some(task_type) = &envelope.task_type {
        object.insert("task_type".into(), task_type.as_str().into());
    }
    if let Some(reply_to) = &envelope.reply_to {
        object.insert("reply_to".into(), reply_to.as_str().into());
    }
    object.insert(
        MARK.into(),
        serde_json::json!({
            "bytes": raw.len(),
            "limit": limit,
            "excerpt": excerpt(raw, EXCERPT_BYTES),
        }),
    );
    serde_json::Value::Object(object).to_string()
}

/// Replaces `raw` with `stand_in` in the in-flight list of `worker_id`.
/// False when the lease was lost or the message is no longer there.
///
/// # Errors
/// When Redis fails.
pub(super) async fn swap(
    queue: &Queue,
    worker_id: &str,
    raw: &[u8],
    stand_in: &str,
) -> QueueResult<bool> {
    let keys = queue.keys();
    let sha1 = sha1_smol::Sha1::from(raw).digest().to_string();
    let swapped: i64 = SWAP
        .key(&keys.workers)
        .key(keys.inflight(worker_id))
        .arg(worker_id)
        .arg(raw.len())
        .arg(sha1)
        .arg(stand_in)
        .invoke_async(&mut queue.connection())
        .await?;
    Ok(swapped == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{BadMessage, Task};

    #[test]
    fn a_stand_in_parses_back_as_too_large_with_its_envelope() {
        let raw = br#"{"id":"big","task_type":"t","reply_to":"r","params":{"pad":"pppp"}}"#;
        let envelope = Envelope::peek(raw);
        let text = stand_in(raw, "big", &envelope, 10);
        assert_eq!(
            Task::parse(text.as_bytes(), 0),
            Err(BadMessage::TooLarge {
                bytes: raw.len(),
                limit: 10
            })
        );
        assert_eq!(Envelope::peek(text.as_bytes()), envelope);
        assert!(text.contains("pppp"), "the excerpt is kept: {text}");
    }
}
