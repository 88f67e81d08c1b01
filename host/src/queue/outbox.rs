//! The transactional outbox: replies on their way to `reply_to` lists.
//!
//! A task's reply (its final result record, pushed onto the list its message
//! names in `reply_to`) must not be lost when a worker dies between the
//! acknowledgement and the `RPUSH`. The `RPUSH` cannot be part of the
//! acknowledgement script, because `reply_to` may hash to another Redis
//! Cluster slot than the queue's `{Q}` keys. So (the *transactional outbox*
//! pattern, <https://microservices.io/patterns/data/transactional-outbox.html>):
//!
//! 1. the acknowledgement script (`finish.lua`) appends each reply, as one
//!    [entry](encode), to the acknowledging worker's
//!    `{Q}:outbox:inflight:<worker>` list in the same atomic step that stores
//!    the record and removes the message from the in-flight list;
//! 2. that worker then pushes the record onto `reply_to` and removes the
//!    entry ([`Queue::deliver`](super::Queue::deliver)) — one pipelined round
//!    trip, right away, so the common path adds no polling delay;
//! 3. if the worker dies (or stops) before step 2 completes, the reaper
//!    (`reap.lua`, once its lease expired) or its own shutdown
//!    (`release.lua`) moves its entries to `{Q}:outbox`, from where any
//!    worker's mover claims a batch atomically into its own
//!    `{Q}:outbox:inflight:<worker>` list
//!    ([`Queue::claim_outbox`](super::Queue::claim_outbox)) and delivers it
//!    as in step 2.
//!
//! Delivery is therefore **at-least-once**: a crash after the `RPUSH` but
//! before the entry's removal delivers the reply twice. Every record carries
//! the task `id`, by which consumers de-duplicate.

/// An outbox entry: `<byte length of reply_to>:<reply_to><record>`, e.g.
/// `7:replies{"id":"t1",…}`. `finish.lua` builds the same bytes (the removal
/// after delivery matches entries byte for byte).
pub fn encode(reply_to: &str, record: &str) -> Vec<u8> {
    let len = reply_to.len().to_string();
    let mut entry = Vec::with_capacity(len.len() + 1 + reply_to.len() + record.len());
    entry.extend_from_slice(len.as_bytes());
    entry.push(b':');
    entry.extend_from_slice(reply_to.as_bytes());
    entry.extend_from_slice(record.as_bytes());
    entry
}

/// A decoded outbox entry, borrowing from the entry's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The list key the record goes to.
    pub reply_to: &'a [u8],
    /// The result record (JSON).
    pub record: &'a [u8],
}

/// An outbox entry that does not have the [`encode`] shape (written by
/// something other than Sluice). It is removed without delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed outbox entry: not '<len>:<reply_to><record>'")]
pub struct MalformedEntry;

/// Splits an entry made by [`encode`] (or `finish.lua`).
///
/// # Errors
/// [`MalformedEntry`] when there is no decimal length and `:`, or the
/// length runs past the entry, or `reply_to` would be empty.
pub fn decode(entry: &[u8]) -> Result<Entry<'_>, MalformedEntry> {
    let colon = entry
        .iter()
        .take(21)
        .position(|&b| b == b':')
        .ok_or(MalformedEntry)?;
    let digits = &entry[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(MalformedEntry);
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(MalformedEntry)?;
    let rest = &entry[colon + 1..];
    if len == 0 || len > rest.len() {
        return Err(MalformedEntry);
    }
    let (reply_to, record) = rest.split_at(len);
    Ok(Entry { reply_to, record })
}

/// What became of one entry handed to [`Queue::deliver`](super::Queue::deliver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Pushed onto its `reply_to` list and removed from the outbox.
    Delivered,
    /// Redis refused the `RPUSH` (e.g. `WRONGTYPE`: `reply_to` holds a value
    /// that is not a list); the entry was removed, the reply is dropped (the
    /// result record stays under `{Q}:result:<id>`). The text is Redis's error.
    Refused(String),
    /// The entry was [malformed](MalformedEntry) and was removed.
    Malformed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = encode("replies", r#"{"id":"t1"}"#);
        assert_eq!(e, br#"7:replies{"id":"t1"}"#);
        assert_eq!(
            decode(&e),
            Ok(Entry {
                reply_to: b"replies",
                record: br#"{"id":"t1"}"#
            })
        );
        // A reply_to with a colon, digits or braces is kept whole.
        let e = encode("{app}:12:x", "{}");
        assert_eq!(decode(&e).unwrap().reply_to, b"{app}:12:x");
        assert_eq!(decode(&e).unwrap().record, b"{}");
    }

    #[test]
    fn malformed_entries_are_named() {
        for bad in [
            &b""[..],
            b"replies{}",
            b":replies{}",
            b"0:{}",
            b"x7:replies{}",
            b"99:short",
            b"99999999999999999999999:x",
        ] {
            assert_eq!(decode(bad), Err(MalformedEntry), "{bad:?}");
        }
    }
}
