//! The transactional outbox: replies on their way to `reply_to` lists.
//!
//! A task's reply (its final result record, pushed onto the list its message
//! names in `reply_to`) must not be lost when a worker dies between the
//! acknowledgement and the `RPUSH`. The `RPUSH` cannot be part of the
//! acknowledgement script, because `reply_to` may hash to another Redis
//! Cluster slot than the queue's `{Q}` keys. So (the *transactional outbox*
//! pattern, <https://microservices.io/patterns/data/transactional-outbox.html>):
//!
//! 1. the acknowledgement script (`finish.lua`) records each reply in the
//!    acknowledging worker's outbox hash `{Q}:outbox:inflight:<worker>`
//!    (field `<token>:<reply_to>`, see [`field`]; value the record) in the
//!    same atomic step that stores the record and removes the message from
//!    the in-flight list;
//! 2. that worker then pushes each record onto its `reply_to` and deletes
//!    the fields ([`Queue::deliver`](super::Queue::deliver)) — one pipelined
//!    round trip, right away, so the common path adds no polling delay;
//! 3. if the worker dies (or stops) before step 2 completes, the reaper
//!    (`reap.lua`, once its lease expired) or its own shutdown
//!    (`release.lua`) moves its replies to the list `{Q}:outbox` as
//!    [`encode`]d entries, from where any worker's mover claims a batch
//!    atomically into its own outbox hash
//!    ([`Queue::claim_outbox`](super::Queue::claim_outbox)) and delivers it
//!    as in step 2.
//!
//! Delivery is therefore **at-least-once**: a crash after the `RPUSH` but
//! before the field's deletion delivers the reply twice. Every record
//! carries the task `id`, by which consumers de-duplicate.
//!
//! Why a hash keyed by short tokens rather than a list of entries: the
//! acknowledgement stores the record string as it came (building an entry in
//! Lua would make Redis's Lua hash a copy of every record byte by byte), and
//! the delivery deletes short fields instead of `LREM`ing whole entries
//! (which sends each record a second time and scans the list); about 3 µs of
//! Redis CPU per reply less in a `redis-py` experiment with 600-byte records.

use std::sync::atomic::{AtomicU64, Ordering};

/// A token prefix unique within this process (`<hex counter>.`), for one
/// acknowledgement or claim call: reply `i` (1-based) of the call gets the
/// field [`field`]`(prefix, i, reply_to)`. Outbox hashes are per worker id,
/// and a worker id belongs to one process, so fields never collide.
pub fn token_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{:x}.", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The outbox hash field of reply `i` (1-based) of a call with token
/// `prefix`: `<prefix><i>:<reply_to>`, exactly as `finish.lua` and
/// `claim.lua` build it.
pub fn field(prefix: &str, i: usize, reply_to: &str) -> String {
    format!("{prefix}{i}:{reply_to}")
}

/// The `reply_to` of an outbox hash field (after its first `:`); empty for
/// a malformed entry that was claimed.
pub fn reply_to_of(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == b':')
        .map_or(&[][..], |colon| &field[colon + 1..])
}

/// One reply in a worker's outbox hash, for [`Queue::deliver`](super::Queue::deliver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Its field in the hash ([`field`]).
    pub field: &'a [u8],
    /// The list key the record goes to (empty: a malformed entry).
    pub reply_to: &'a [u8],
    /// The result record (JSON).
    pub record: &'a [u8],
}

impl<'a> Reply<'a> {
    /// The reply stored under `field` with value `record`.
    pub fn new(field: &'a [u8], record: &'a [u8]) -> Reply<'a> {
        Reply {
            field,
            reply_to: reply_to_of(field),
            record,
        }
    }
}

/// An entry of the list `{Q}:outbox`: `<byte length of reply_to>:<reply_to><record>`,
/// e.g. `7:replies{"id":"t1",…}`, as `reap.lua` and `release.lua` build it.
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
/// something other than Sluice). It is dropped without delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed outbox entry: not '<len>:<reply_to><record>'")]
pub struct MalformedEntry;

/// Splits an entry made by [`encode`] (or `reap.lua`; `claim.lua` splits
/// entries the same way).
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
    /// that is not a list); the reply was removed from the outbox and is
    /// dropped (the result record stays under `{Q}:result:<id>`). The text
    /// is Redis's error.
    Refused(String),
    /// The entry was [malformed](MalformedEntry) (no `reply_to`) and was removed.
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
    fn fields_carry_the_reply_to_after_the_token() {
        let prefix = token_prefix();
        assert!(prefix.ends_with('.') && !prefix.contains(':'));
        assert_ne!(prefix, token_prefix(), "unique per call");
        let f = field(&prefix, 3, "{app}:replies");
        assert_eq!(f, format!("{prefix}3:{{app}}:replies"));
        assert_eq!(reply_to_of(f.as_bytes()), b"{app}:replies");
        assert_eq!(reply_to_of(b"1a.2:"), b"");
        assert_eq!(reply_to_of(b"junk"), b"");
        let r = Reply::new(b"1a.2:replies", b"{}");
        assert_eq!((r.reply_to, r.record), (&b"replies"[..], &b"{}"[..]));
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
