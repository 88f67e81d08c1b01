//! Redis Cluster key slots: which of the 16 384 slots a key hashes to
//! (<https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#key-distribution-model>).
//!
//! Used at start-up to refuse a queue whose keys would not share one slot,
//! to name the master holding each queue, and to split the delivery of
//! replies (whose `reply_to` keys belong to producers, in any slot) into
//! one pipeline per slot.

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag — the text between the
/// first `{` and the next `}`, when not empty — or of the whole key, modulo
/// [`SLOTS`].
pub fn key_slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The hash tag of `key`, if it has a non-empty one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    let tag = &key[open + 1..open + 1 + len];
    (!tag.is_empty()).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.15.
        assert_eq!(key_slot(b"task_queue"), 9914);
        assert_eq!(key_slot(b"{task_queue}:workers"), 9914);
        assert_eq!(key_slot(b"{task_queue}:inflight:w1"), 9914);
        assert_eq!(key_slot(b"{jobs}"), 9631);
        assert_eq!(key_slot(b"{{jobs}}:workers"), 5350);
        // An empty tag hashes the whole key.
        assert_eq!(key_slot(b"{}"), key_slot(b"{}"));
        assert_ne!(key_slot(b"{}a"), key_slot(b"{}b"));
    }
}
