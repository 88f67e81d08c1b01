//! Sluice plugin `parse-log-file`: task type `parse_log_file`.
//!
//! Params, one of:
//! - `{"path": "app.log"}`: a relative path, read from the guest directory
//!   `/data` (granted read-only by `parse-log-file.toml`);
//! - `{"text": "..."}`: the log text itself.
//!
//! Result: `{"lines": n, "levels": {"INFO": n, ...}, "top_errors": [[message, count], ...]}`,
//! exactly what the reference Python `parse_log_text` produces (see
//! [`parse_log_text`]).
//!
//! The parser is a pure function in this library so that the host's
//! benchmark can run it natively and compare with the wasm plugin.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize, Serializer};
use sluice_guest::{Plugin, Task, TaskError};

/// How many error messages [`Report::top_errors`] keeps.
pub const TOP_ERRORS: usize = 5;

/// The guest directory that `path` params are resolved under.
pub const DATA_DIR: &str = "/data";

/// The summary of a log text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Number of lines, as Python's `str.splitlines()` counts them.
    pub lines: u64,
    /// Lines per level word, in first-seen order (serialized as a JSON
    /// object). Levels that never occur are absent.
    #[serde(serialize_with = "levels_as_map")]
    pub levels: Vec<(&'static str, u64)>,
    /// The [`TOP_ERRORS`] most common ERROR/FATAL messages with their counts,
    /// by count descending, ties in first-seen order (serialized as
    /// `[[message, count], ...]`).
    pub top_errors: Vec<(String, u64)>,
}

fn levels_as_map<S: Serializer>(levels: &[(&'static str, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(levels.iter().map(|(k, v)| (*k, *v)))
}

/// The level words, in the alternation order of the reference regex.
const LEVEL_NAMES: [&str; 7] = [
    "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL",
];
const WARNING: usize = 4;
const ERROR: usize = 5;
const FATAL: usize = 6;

/// Summarizes a log text exactly like the reference Python:
///
/// ```python
/// LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b")
/// def parse_log_text(text):
///     levels, errors = Counter(), Counter()
///     lines = text.splitlines()
///     for line in lines:
///         m = LEVEL.search(line)
///         if not m:
///             continue
///         levels[m.group(1)] += 1
///         if m.group(1) in ("ERROR", "FATAL"):
///             errors[line[m.end():].strip()] += 1
///     return {"lines": len(lines), "levels": dict(levels),
///             "top_errors": errors.most_common(5)}
/// ```
///
/// Line breaks are those of `str.splitlines()` (`\n`, `\r\n`, `\r`, `\v`,
/// `\f`, `\x1c`-`\x1e`, U+0085, U+2028, U+2029); `\b` and `strip()` use
/// Unicode word characters and Unicode whitespace. The one known difference:
/// word characters are Rust's `char::is_alphanumeric` plus `_`, which also
/// counts a few combining marks (Unicode `Other_Alphabetic`) that Python does
/// not; a level word glued to such a mark is not counted here.
pub fn parse_log_text(text: &str) -> Report {
    let mut lines = 0u64;
    let mut counts = [0u64; LEVEL_NAMES.len()];
    let mut level_order: Vec<usize> = Vec::with_capacity(LEVEL_NAMES.len());
    let mut errors = ErrorCounter::default();

    for_each_line(text, |line| {
        lines += 1;
        if let Some((level, end)) = find_level(line) {
            if counts[level] == 0 {
                level_order.push(level);
            }
            counts[level] += 1;
            if level == ERROR || level == FATAL {
                errors.add(py_strip(&line[end..]));
            }
        }
    });

    Report {
        lines,
        levels: level_order
            .iter()
            .map(|&l| (LEVEL_NAMES[l], counts[l]))
            .collect(),
        top_errors: errors.most_common(TOP_ERRORS),
    }
}

/// Calls `f` with every line of `text` (without its line break), splitting
/// like Python's `str.splitlines()`.
fn for_each_line<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

    let b = text.as_bytes();
    let n = b.len();
    let mut start = 0;
    let mut i = 0;
    while i < n {
        // Fast path: skip 8 bytes at a time while they are all printable
        // ASCII (0x20..=0x7f), which can neither break a line nor start a
        // multi-byte line break.
        while i + 8 <= n {
            let w = u64::from_ne_bytes(*load::<8>(b, i));
            if (w.wrapping_sub(ONES * 0x20) | w) & HIGHS != 0 {
                break;
            }
            i += 8;
        }
        if i >= n {
            break;
        }
        let c = b[i];
        let brk = match c {
            b'\n' | 0x0b | 0x0c | 0x1c..=0x1e => 1,
            b'\r' => {
                if b.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                }
            }
            // U+0085 NEXT LINE
            0xc2 if b.get(i + 1) == Some(&0x85) => 2,
            // U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR
            0xe2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)) => 3,
            _ => 0,
        };
        if brk == 0 {
            i += 1;
        } else {
            // `i` is at an ASCII byte or at the start of a multi-byte
            // character, so both ends are char boundaries.
            f(&text[start..i]);
            i += brk;
            start = i;
        }
    }
    if start < n {
        f(&text[start..]);
    }
}

/// The `N` bytes at `b[i..i + N]`, as an array reference.
///
/// Copying out of it (`*load::<8>(b, i)`) compiles to a single unaligned
/// load, whereas `copy_from_slice` into an array can become a `memory.copy`
/// call in wasm, about ten times slower in this loop.
#[inline(always)]
fn load<const N: usize>(b: &[u8], i: usize) -> &[u8; N] {
    b[i..i + N].try_into().expect("N bytes")
}

/// The first level word in `line` delimited by word boundaries (the regex's
/// leftmost match), as (index in [`LEVEL_NAMES`], byte offset after it).
fn find_level(line: &str) -> Option<(usize, usize)> {
    let b = line.as_bytes();
    // Every level word is at least 4 bytes long.
    let last = b.len().checked_sub(4)?;
    for i in 0..=last {
        if !FIRST_LETTER[usize::from(b[i])] {
            continue;
        }
        let level = match u32::from_le_bytes(*load::<4>(b, i)) {
            w if w == TRAC && b.get(i + 4) == Some(&b'E') => 0,
            w if w == DEBU && b.get(i + 4) == Some(&b'G') => 1,
            w if w == INFO => 2,
            w if w == WARN => 3,
            w if w == ERRO && b.get(i + 4) == Some(&b'R') => ERROR,
            w if w == FATA && b.get(i + 4) == Some(&b'L') => FATAL,
            _ => continue,
        };
        if i > 0 && is_word_before(line, i) {
            continue;
        }
        let end = i + LEVEL_NAMES[level].len();
        if !is_word_at(line, end) {
            return Some((level, end));
        }
        // `WARN` glued to more letters may still be `WARNING`.
        if level == 3 && b[end..].starts_with(b"ING") && !is_word_at(line, end + 3) {
            return Some((WARNING, end + 3));
        }
    }
    None
}

/// Bytes that can start a level word.
static FIRST_LETTER: [bool; 256] = {
    let mut t = [false; 256];
    t[b'T' as usize] = true;
    t[b'D' as usize] = true;
    t[b'I' as usize] = true;
    t[b'W' as usize] = true;
    t[b'E' as usize] = true;
    t[b'F' as usize] = true;
    t
};

const TRAC: u32 = u32::from_le_bytes(*b"TRAC");
const DEBU: u32 = u32::from_le_bytes(*b"DEBU");
const INFO: u32 = u32::from_le_bytes(*b"INFO");
const WARN: u32 = u32::from_le_bytes(*b"WARN");
const ERRO: u32 = u32::from_le_bytes(*b"ERRO");
const FATA: u32 = u32::from_le_bytes(*b"FATA");

/// Whether the character ending at byte `i` (a char boundary, `i > 0`) is a
/// word character.
#[inline]
fn is_word_before(line: &str, i: usize) -> bool {
    let p = line.as_bytes()[i - 1];
    if p.is_ascii() {
        is_ascii_word(p)
    } else {
        line[..i].chars().next_back().is_some_and(is_word_char)
    }
}

/// Whether the character starting at byte `i` (a char boundary) is a word
/// character; `false` at the end of the line.
#[inline]
fn is_word_at(line: &str, i: usize) -> bool {
    match line.as_bytes().get(i) {
        None => false,
        Some(&c) if c.is_ascii() => is_ascii_word(c),
        Some(_) => line[i..].chars().next().is_some_and(is_word_char),
    }
}

#[inline]
fn is_ascii_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Python's `\w` for `str` patterns (approximately `str.isalnum()` or `_`).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python's `str.strip()` with no argument: Unicode whitespace, which also
/// includes the separators U+001C..=U+001F.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// A `collections.Counter` of error messages that remembers first-seen order.
#[derive(Default)]
struct ErrorCounter<'a> {
    index: HashMap<&'a str, usize, BuildHasherDefault<FxHasher>>,
    entries: Vec<(&'a str, u64)>,
}

impl<'a> ErrorCounter<'a> {
    fn add(&mut self, message: &'a str) {
        let next = self.entries.len();
        let i = *self.index.entry(message).or_insert(next);
        if i == next {
            self.entries.push((message, 1));
        } else {
            self.entries[i].1 += 1;
        }
    }

    /// `Counter.most_common(n)`: by count descending, ties in insertion order.
    fn most_common(&self, n: usize) -> Vec<(String, u64)> {
        let mut top: Vec<(&str, u64)> = Vec::with_capacity(n + 1);
        for &(message, count) in &self.entries {
            if top.len() == n && top.last().is_none_or(|&(_, c)| c >= count) {
                continue;
            }
            // After every entry with a count >= this one: earlier entries win ties.
            let at = top.partition_point(|&(_, c)| c >= count);
            top.insert(at, (message, count));
            top.truncate(n);
        }
        top.into_iter().map(|(m, c)| (m.to_string(), c)).collect()
    }
}

/// A small fast non-cryptographic hasher (the rustc "Fx" scheme); the keys are
/// log messages, not attacker-chosen in a way that matters here.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // No `copy_from_slice`: see `load`.
        let mut i = 0;
        while i + 8 <= bytes.len() {
            self.add(u64::from_le_bytes(*load::<8>(bytes, i)));
            i += 8;
        }
        if i < bytes.len() {
            let mut word = bytes.len() as u64;
            for (k, &byte) in bytes[i..].iter().enumerate() {
                word ^= u64::from(byte) << (8 * k + 8);
            }
            self.add(word);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Params of a `parse_log_file` task.
#[derive(Debug, Deserialize)]
struct Params {
    path: Option<String>,
    text: Option<String>,
}

/// Resolves a relative `path` param under [`DATA_DIR`], refusing absolute
/// paths and `..`.
pub fn resolve_data_path(path: &str) -> Result<String, TaskError> {
    if path.is_empty() {
        return Err(TaskError::fatal("`path` is empty"));
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(TaskError::fatal(format_args!(
                    "`path` {path:?} must not contain `..`"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(TaskError::fatal(format_args!(
                    "`path` {path:?} must be relative (to {DATA_DIR})"
                )));
            }
        }
    }
    Ok(format!("{DATA_DIR}/{path}"))
}

/// The `parse_log_file` plugin.
pub struct ParseLogFile;

impl Plugin for ParseLogFile {
    fn task_types() -> Vec<String> {
        vec!["parse_log_file".to_string()]
    }

    fn handle(task: Task) -> Result<impl Serialize, TaskError> {
        let params: Params = task.params()?;
        let report = match (params.path, params.text) {
            (Some(_), Some(_)) => {
                return Err(TaskError::fatal(
                    "params must have either `path` or `text`, not both",
                ));
            }
            (None, None) => {
                return Err(TaskError::fatal(
                    "params must have `path` (relative to /data) or `text`",
                ));
            }
            (None, Some(text)) => parse_log_text(&text),
            (Some(path), None) => {
                let full = resolve_data_path(&path)?;
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| TaskError::fatal(format_args!("cannot read {full}: {e}")))?;
                parse_log_text(&text)
            }
        };
        Ok(report)
    }
}

sluice_guest::export_plugin!(ParseLogFile);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::handle_to_json;

    fn report(text: &str) -> Value {
        serde_json::to_value(parse_log_text(text)).unwrap()
    }

    #[test]
    fn empty_text() {
        assert_eq!(
            report(""),
            json!({"lines": 0, "levels": {}, "top_errors": []})
        );
    }

    #[test]
    fn splitlines_semantics() {
        // Python: len("a\nb\n".splitlines()) == 2, "a\n\nb" -> 3, "\n" -> 1.
        assert_eq!(parse_log_text("a\nb\n").lines, 2);
        assert_eq!(parse_log_text("a\n\nb").lines, 3);
        assert_eq!(parse_log_text("\n").lines, 1);
        assert_eq!(parse_log_text("a").lines, 1);
        // \r\n is one break, \r alone is one, \n\r is two.
        assert_eq!(parse_log_text("a\r\nb\rc\n\rd").lines, 5);
        // \v \f \x1c \x1d \x1e U+0085 U+2028 U+2029 all break lines.
        assert_eq!(
            parse_log_text("a\x0bb\x0cc\x1cd\x1de\x1ef\u{85}g\u{2028}h\u{2029}i").lines,
            9
        );
        // \x1f and U+00A0 do not.
        assert_eq!(parse_log_text("a\x1fb\u{a0}c").lines, 1);
        // A line break at the very end adds no line; U+2028 at the end neither.
        assert_eq!(parse_log_text("x\u{2028}").lines, 1);
    }

    #[test]
    fn word_boundaries() {
        let r = report(
            "INFO: started\n\
             INFORMATION only\n\
             xINFO no\n\
             INFO_x no\n\
             INFO2 no\n\
             [INFO] yes\n\
             WARNING disk\n\
             WARN disk\n\
             WARNINGS no\n\
             WARNx no\n\
             info lower no\n\
             (DEBUG)\n\
             éINFO no\n\
             INFOé no\n\
             —INFO yes\n",
        );
        assert_eq!(
            r,
            json!({
                "lines": 15,
                "levels": {"INFO": 3, "WARNING": 1, "WARN": 1, "DEBUG": 1},
                "top_errors": []
            })
        );
    }

    #[test]
    fn first_match_wins() {
        // A non-matching earlier word does not stop the search.
        let r = report("INFORMATIONAL ERROR: disk full\nxERROR then FATAL  boom  \n");
        assert_eq!(
            r,
            json!({
                "lines": 2,
                "levels": {"ERROR": 1, "FATAL": 1},
                "top_errors": [[": disk full", 1], ["boom", 1]]
            })
        );
        // The first match is INFO, so the later ERROR is not an error message.
        let r = report("INFO retrying after ERROR x\n");
        assert_eq!(
            r,
            json!({"lines": 1, "levels": {"INFO": 1}, "top_errors": []})
        );
    }

    #[test]
    fn error_messages_are_stripped() {
        // Python strips Unicode whitespace, including \x1f and U+3000, and the
        // message may be empty.
        let r = report("ERROR\t a b \x1f\nERROR a b\u{3000}\nFATAL\nERROR:x\n");
        assert_eq!(
            r,
            json!({
                "lines": 4,
                "levels": {"ERROR": 3, "FATAL": 1},
                "top_errors": [["a b", 2], ["", 1], [":x", 1]]
            })
        );
    }

    #[test]
    fn most_common_order() {
        // Counts c:3, a:2, b:2, d:2, e:1, f:1, g:1 -> c, a, b, d, e (ties first-seen).
        let text = "ERROR a\nERROR b\nERROR c\nERROR e\nERROR c\nERROR f\nERROR a\n\
                    ERROR d\nERROR b\nERROR c\nERROR g\nERROR d\n";
        let r = report(text);
        assert_eq!(
            r["top_errors"],
            json!([["c", 3], ["a", 2], ["b", 2], ["d", 2], ["e", 1]])
        );
        assert_eq!(r["levels"], json!({"ERROR": 12}));
    }

    #[test]
    fn levels_keep_first_seen_order() {
        let text = "2026-11-24T03:47:12.345Z WARN [db] slow\n\
                    2026-11-24T03:47:12.346Z TRACE [db] x\n\
                    2026-11-24T03:47:12.347Z ERROR [db] connection refused: pool exhausted (host=db-3)\n\
                    2026-11-24T03:47:12.348Z WARN [db] slow\n";
        let json = serde_json::to_string(&parse_log_text(text)).unwrap();
        assert_eq!(
            json,
            r#"{"lines":4,"levels":{"WARN":2,"TRACE":1,"ERROR":1},"top_errors":[["[db] connection refused: pool exhausted (host=db-3)",1]]}"#
        );
    }

    #[test]
    fn long_lines_cross_the_fast_path() {
        let line = format!("{} ERROR {}  ", "x ".repeat(37), "y".repeat(101));
        let text = format!("{line}\n{line}\r\n{line}");
        let r = parse_log_text(&text);
        assert_eq!(r.lines, 3);
        assert_eq!(r.top_errors, vec![("y".repeat(101), 3)]);
    }

    #[test]
    fn path_validation() {
        assert_eq!(resolve_data_path("app.log").unwrap(), "/data/app.log");
        assert_eq!(resolve_data_path("a/b.log").unwrap(), "/data/a/b.log");
        assert!(resolve_data_path("/etc/passwd").is_err());
        assert!(resolve_data_path("../x").is_err());
        assert!(resolve_data_path("a/../../x").is_err());
        assert!(resolve_data_path("").is_err());
    }

    #[test]
    fn handle_inline_text_and_bad_params() {
        let task = |params: &str| Task {
            id: "t1".into(),
            task_type: "parse_log_file".into(),
            params: params.into(),
            attempt: 1,
        };
        let out = handle_to_json::<ParseLogFile>(task(r#"{"text": "FATAL x\nINFO y"}"#)).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"lines": 2, "levels": {"FATAL": 1, "INFO": 1}, "top_errors": [["x", 1]]})
        );
        let err = handle_to_json::<ParseLogFile>(task(r#"{"text": 3}"#)).unwrap_err();
        assert!(
            matches!(&err, TaskError::Fatal(m) if m.contains("parse_log_file")),
            "{err}"
        );
        assert!(
            handle_to_json::<ParseLogFile>(task("{}"))
                .unwrap_err()
                .message()
                .contains("path")
        );
        assert!(handle_to_json::<ParseLogFile>(task(r#"{"path": "../etc/passwd"}"#)).is_err());
    }
}
