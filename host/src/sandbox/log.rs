//! Bounded plugin logging: each task may write at most `max_log_lines`
//! messages and `max_log_bytes` bytes through the host `log` function (both
//! from the plugin's manifest), like the 64 KiB cap on its stdout and
//! stderr. What does not fit is dropped and counted, and the sandbox reports
//! the count once per task ("N log lines dropped"), so a plugin that logs in
//! a loop cannot flood the worker's log.

use std::borrow::Cow;

/// Marks a message cut to fit the byte budget.
const CUT_MARK: &str = " …(truncated)";

/// One task's remaining log budget.
#[derive(Debug, Clone)]
pub(crate) struct LogBudget {
    max_bytes: u64,
    max_lines: u32,
    bytes_left: u64,
    lines_left: u32,
    dropped: u64,
}

impl LogBudget {
    /// A full budget of `max_lines` messages and `max_bytes` bytes.
    pub(crate) fn new(max_bytes: u64, max_lines: u32) -> LogBudget {
        LogBudget {
            max_bytes,
            max_lines,
            bytes_left: max_bytes,
            lines_left: max_lines,
            dropped: 0,
        }
    }

    /// Refills the budget for the next task of a reused instance.
    pub(crate) fn reset(&mut self) {
        *self = LogBudget::new(self.max_bytes, self.max_lines);
    }

    /// The text to log for `message`, or `None` when it is dropped (and
    /// counted). The message that exhausts the byte budget is cut to fit,
    /// at a character boundary, and marked.
    pub(crate) fn admit<'a>(&mut self, message: &'a str) -> Option<Cow<'a, str>> {
        if self.lines_left == 0 || self.bytes_left == 0 {
            self.dropped += 1;
            return None;
        }
        self.lines_left -= 1;
        let len = message.len() as u64;
        if len <= self.bytes_left {
            self.bytes_left -= len;
            return Some(Cow::Borrowed(message));
        }
        let mut end = self.bytes_left as usize;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes_left = 0;
        Some(Cow::Owned(format!("{}{CUT_MARK}", &message[..end])))
    }

    /// Messages dropped since the last call; resets the count.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// The budget's limits: (bytes, lines).
    pub(crate) fn limits(&self) -> (u64, u32) {
        (self.max_bytes, self.max_lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_dropped_and_counted() {
        let mut b = LogBudget::new(1000, 2);
        assert_eq!(b.admit("a").as_deref(), Some("a"));
        assert_eq!(b.admit("b").as_deref(), Some("b"));
        assert_eq!(b.admit("c"), None);
        assert_eq!(b.admit("d"), None);
        assert_eq!(b.take_dropped(), 2);
        assert_eq!(b.take_dropped(), 0);
        b.reset();
        assert_eq!(b.admit("e").as_deref(), Some("e"));
    }

    #[test]
    fn the_byte_budget_cuts_one_message_then_drops() {
        let mut b = LogBudget::new(5, 100);
        assert_eq!(b.admit("abc").as_deref(), Some("abc"));
        // 2 bytes left; "é" is two bytes, so "xé" is cut before it.
        assert_eq!(b.admit("xéz").as_deref(), Some("x …(truncated)"));
        assert_eq!(b.admit("more"), None);
        assert_eq!(b.take_dropped(), 1);
    }
}
