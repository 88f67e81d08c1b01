//! Sluice plugin `generate-log-file`: task type `generate_log_file`.
//!
//! Params: `{"file": "app.log", "lines": 1000, "seed": 42, "then_parse": true}`
//! (`lines` defaults to 100, `seed` to 0, `then_parse` to false). Writes `lines` realistic log lines such as
//!
//! ```text
//! 2026-11-24T03:47:12.345Z ERROR [db] connection refused: pool exhausted (host=db-3)
//! ```
//!
//! to `/data/<file>` (the guest directory granted read-write by
//! `generate-log-file.toml`). The output depends only on `lines` and `seed`:
//! a splitmix64 generator drives everything and the timestamps start from a
//! fixed base time, never the wall clock.
//!
//! Result: `{"path": "app.log", "lines": N, "bytes": B, "levels": {"INFO": n, ...}}`,
//! plus `"parse_task": "<id>"` with `then_parse`: the plugin then enqueues a
//! `parse_log_file` task (`{"path": "app.log"}`) for the file it wrote, through
//! the host's `enqueue` (`sluice:plugin@0.2.0`; the manifest's `may_enqueue`
//! grants it). The follow-up is pushed only once this task succeeds: the
//! seed's pipeline as one push.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sluice_guest::{Plugin, Task, TaskError};

/// The guest directory the file is written under.
pub const DATA_DIR: &str = "/data";

/// The most lines one task may ask for (about 1 GB of text).
pub const MAX_LINES: u64 = 10_000_000;

/// Unix time in milliseconds of the first line's timestamp, 2026-11-24T00:00:00Z.
pub const BASE_TIME_MS: i64 = 1_795_478_400_000;

/// Log levels in severity order, with their weight per 1000 lines.
pub const LEVELS: [(&str, u32); 6] = [
    ("TRACE", 40),
    ("DEBUG", 200),
    ("INFO", 560),
    ("WARN", 120),
    ("ERROR", 70),
    ("FATAL", 10),
];

const COMPONENTS: [&str; 10] = [
    "api",
    "auth",
    "db",
    "cache",
    "queue",
    "http",
    "scheduler",
    "storage",
    "billing",
    "mailer",
];
const SERVICES: [&str; 4] = ["payments", "inventory", "search", "notifications"];
const RESOURCES: [&str; 5] = ["users", "orders", "products", "invoices", "sessions"];
const FUNCTIONS: [&str; 5] = [
    "handle_request",
    "load_user",
    "fetch_rows",
    "serialize_response",
    "acquire_lock",
];

/// splitmix64: tiny, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo + 1)
    }

    /// A random element of `items` (non-empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u32) as usize]
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Lines written.
    pub lines: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Lines per level, indexed like [`LEVELS`].
    pub levels: [u64; LEVELS.len()],
}

impl Stats {
    /// The level counts as a JSON object in severity order, without zeros.
    pub fn levels_json(&self) -> Map<String, Value> {
        LEVELS
            .iter()
            .zip(self.levels)
            .filter(|&(_, n)| n > 0)
            .map(|((name, _), n)| ((*name).to_string(), Value::from(n)))
            .collect()
    }
}

/// Writes `lines` log lines generated from `seed` to `out`.
pub fn generate(out: &mut impl Write, lines: u64, seed: u64) -> io::Result<Stats> {
    let mut rng = Rng::new(seed);
    let mut stats = Stats {
        lines,
        bytes: 0,
        levels: [0; LEVELS.len()],
    };
    let mut time_ms = BASE_TIME_MS;
    let mut line = String::with_capacity(160);
    for _ in 0..lines {
        // Mostly small steps, with an occasional quiet period.
        time_ms += if rng.below(50) == 0 {
            i64::from(rng.range(5_000, 120_000))
        } else {
            i64::from(rng.below(1_500))
        };
        let level = pick_level(&mut rng);
        let component = *rng.pick(&COMPONENTS);
        line.clear();
        write_timestamp(&mut line, time_ms);
        let _ = write!(line, " {} [{component}] ", LEVELS[level].0);
        write_message(&mut line, &mut rng, level);
        line.push('\n');
        out.write_all(line.as_bytes())?;
        stats.bytes += line.len() as u64;
        stats.levels[level] += 1;
    }
    out.flush()?;
    Ok(stats)
}

fn pick_level(rng: &mut Rng) -> usize {
    let mut roll = rng.below(1000);
    for (i, &(_, weight)) in LEVELS.iter().enumerate() {
        if roll < weight {
            return i;
        }
        roll -= weight;
    }
    2 // unreachable: the weights sum to 1000
}

/// Appends `ms` (Unix milliseconds) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn write_timestamp(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_message(out: &mut String, rng: &mut Rng, level: usize) {
    let r = rng;
    let _ = match level {
        // TRACE
        0 => match r.below(3) {
            0 => write!(
                out,
                "enter {}() depth={}",
                r.pick(&FUNCTIONS),
                r.range(1, 6)
            ),
            1 => write!(
                out,
                "span {:08x} closed in {}us",
                r.next_u64() as u32,
                r.range(3, 900)
            ),
            _ => write!(out, "exit {}() -> ok", r.pick(&FUNCTIONS)),
        },
        // DEBUG
        1 => match r.below(4) {
            0 => write!(
                out,
                "cache {} for key user:{}",
                if r.below(3) == 0 { "miss" } else { "hit" },
                r.range(1, 50_000)
            ),
            1 => write!(
                out,
                "query took {}ms rows={}",
                r.range(1, 250),
                r.below(500)
            ),
            2 => write!(
                out,
                "connection pool stats active={} idle={}",
                r.below(32),
                r.below(16)
            ),
            _ => write!(out, "parsed request body ({} bytes)", r.range(20, 65_536)),
        },
        // INFO
        2 => match r.below(5) {
            0 => {
                let method = *r.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"]);
                let status = *r.pick(&[200, 200, 200, 200, 201, 204, 304, 404]);
                write!(
                    out,
                    "{method} /api/v1/{}/{} {status} {}ms",
                    r.pick(&RESOURCES),
                    r.range(1, 99_999),
                    r.range(2, 480)
                )
            }
            1 => write!(
                out,
                "user {} logged in from 10.{}.{}.{}",
                r.range(1, 50_000),
                r.below(256),
                r.below(256),
                r.range(1, 254)
            ),
            2 => write!(
                out,
                "job {} completed in {}ms",
                r.range(100_000, 999_999),
                r.range(5, 9_000)
            ),
            3 => write!(
                out,
                "scheduled {} tasks for batch {}",
                r.range(1, 200),
                r.range(1, 9_999)
            ),
            _ => write!(out, "config reloaded (version {})", r.range(1, 60)),
        },
        // WARN
        3 => match r.below(4) {
            0 => write!(
                out,
                "slow query detected: {}ms (threshold 500ms)",
                r.range(501, 8_000)
            ),
            1 => write!(
                out,
                "retrying request to {} (attempt {}/5)",
                r.pick(&SERVICES),
                r.range(2, 5)
            ),
            2 => write!(out, "disk usage at {}% on /var/lib/app", r.range(80, 97)),
            _ => write!(
                out,
                "rate limit approaching for tenant {}: {}/1000 requests",
                r.range(1, 40),
                r.range(800, 999)
            ),
        },
        // ERROR: few variable fields, so that some messages repeat.
        4 => match r.below(5) {
            0 => write!(
                out,
                "connection refused: pool exhausted (host=db-{})",
                r.range(1, 4)
            ),
            1 => write!(
                out,
                "request timed out after 30000ms (upstream={})",
                r.pick(&SERVICES)
            ),
            2 => write!(out, "could not acquire lock on orders:{}", r.range(1, 3)),
            3 => write!(out, "payment declined: insufficient funds (code=51)"),
            _ => write!(out, "failed to send email: SMTP 421 service not available"),
        },
        // FATAL
        _ => match r.below(3) {
            0 => write!(
                out,
                "out of memory: cannot allocate arena (pid={})",
                r.range(1_000, 1_003)
            ),
            1 => write!(out, "schema version mismatch (expected 42, found 41)"),
            _ => write!(out, "configuration file /etc/app/config.toml is corrupt"),
        },
    };
}

/// Params of a `generate_log_file` task.
#[derive(Debug, Deserialize)]
struct Params {
    file: String,
    #[serde(default = "default_lines")]
    lines: u64,
    #[serde(default)]
    seed: u64,
    /// Enqueue a `parse_log_file` task for the file once this one succeeds.
    #[serde(default)]
    then_parse: bool,
}

fn default_lines() -> u64 {
    100
}

/// Checks that `file` is a relative path without `..` and returns it
/// resolved under [`DATA_DIR`].
pub fn resolve_data_path(file: &str) -> Result<String, TaskError> {
    if file.is_empty() {
        return Err(TaskError::fatal("`file` is empty"));
    }
    for component in Path::new(file).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(TaskError::fatal(format_args!(
                    "`file` {file:?} must not contain `..`"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(TaskError::fatal(format_args!(
                    "`file` {file:?} must be relative (to {DATA_DIR})"
                )));
            }
        }
    }
    Ok(format!("{DATA_DIR}/{file}"))
}

fn write_file(full: &str, lines: u64, seed: u64) -> io::Result<Stats> {
    if let Some(parent) = Path::new(full).parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(full)?);
    generate(&mut out, lines, seed)
}

/// The `generate_log_file` plugin.
pub struct GenerateLogFile;

impl Plugin for GenerateLogFile {
    fn task_types() -> Vec<String> {
        vec!["generate_log_file".to_string()]
    }

    fn handle(task: Task) -> Result<impl Serialize, TaskError> {
        let params: Params = task.params()?;
        if params.lines > MAX_LINES {
            return Err(TaskError::fatal(format_args!(
                "`lines` is {}, at most {MAX_LINES} allowed",
                params.lines
            )));
        }
        let full = resolve_data_path(&params.file)?;
        let stats = write_file(&full, params.lines, params.seed)
            .map_err(|e| TaskError::fatal(format_args!("cannot write {full}: {e}")))?;
        let mut result = json!({
            "path": params.file,
            "lines": stats.lines,
            "bytes": stats.bytes,
            "levels": stats.levels_json(),
        });
        if params.then_parse {
            let id = sluice_guest::enqueue("parse_log_file", &json!({ "path": params.file }))?;
            result["parse_task"] = Value::String(id);
        }
        Ok(result)
    }
}

sluice_guest::export_plugin!(GenerateLogFile);

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: u64, seed: u64) -> (String, Stats) {
        let mut buf = Vec::new();
        let stats = generate(&mut buf, lines, seed).unwrap();
        (String::from_utf8(buf).unwrap(), stats)
    }

    #[test]
    fn base_time_is_2026_11_24() {
        let mut s = String::new();
        write_timestamp(&mut s, BASE_TIME_MS + 3 * 3_600_000 + 47 * 60_000 + 12_345);
        assert_eq!(s, "2026-11-24T03:47:12.345Z");
        s.clear();
        write_timestamp(&mut s, 0);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        // 2028 is a leap year: 2028-02-29 exists.
        write_timestamp(&mut s, 1_835_395_200_000);
        assert_eq!(s, "2028-02-29T00:00:00.000Z");
    }

    #[test]
    fn deterministic_per_seed() {
        let (a, sa) = text(500, 42);
        let (b, sb) = text(500, 42);
        let (c, _) = text(500, 43);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_ne!(a, c);
        assert_eq!(sa.bytes, a.len() as u64);
        assert_eq!(a.lines().count(), 500);
        assert_eq!(sa.levels.iter().sum::<u64>(), 500);
    }

    #[test]
    fn lines_look_right_and_time_never_goes_back() {
        let (t, _) = text(2_000, 7);
        let mut last = String::new();
        for line in t.lines() {
            let (ts, rest) = line.split_once(' ').unwrap();
            assert_eq!(ts.len(), 24, "{line}");
            assert!(ts.starts_with("2026-1") && ts.ends_with('Z'), "{line}");
            assert!(ts >= last.as_str(), "{line}");
            last = ts.to_string();
            let (level, rest) = rest.split_once(' ').unwrap();
            assert!(LEVELS.iter().any(|(l, _)| *l == level), "{line}");
            assert!(rest.starts_with('[') && rest.contains("] "), "{line}");
        }
    }

    #[test]
    fn level_proportions_are_realistic() {
        let (_, s) = text(20_000, 1);
        let per_mille = |i: usize| s.levels[i] * 1000 / 20_000;
        assert!((500..620).contains(&per_mille(2)), "INFO {:?}", s.levels);
        assert!((40..100).contains(&per_mille(4)), "ERROR {:?}", s.levels);
        assert!(s.levels.iter().all(|&n| n > 0), "{:?}", s.levels);
    }

    #[test]
    fn parse_log_file_agrees() {
        let (t, s) = text(3_000, 42);
        let report = parse_log_file::parse_log_text(&t);
        assert_eq!(report.lines, 3_000);
        for (name, n) in report.levels {
            let i = LEVELS.iter().position(|(l, _)| *l == name).unwrap();
            assert_eq!(n, s.levels[i], "{name}");
        }
        assert_eq!(report.top_errors.len(), 5);
        assert!(report.top_errors[0].1 > 5, "{:?}", report.top_errors);
    }

    #[test]
    fn file_param_is_checked() {
        assert_eq!(resolve_data_path("app.log").unwrap(), "/data/app.log");
        assert_eq!(
            resolve_data_path("logs/app.log").unwrap(),
            "/data/logs/app.log"
        );
        for bad in ["", "/etc/passwd", "../app.log", "logs/../../app.log"] {
            assert!(
                matches!(resolve_data_path(bad), Err(TaskError::Fatal(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn handle_rejects_bad_params() {
        let task = |params: &str| Task {
            id: "t".into(),
            task_type: "generate_log_file".into(),
            params: params.into(),
            attempt: 1,
        };
        let err =
            sluice_guest::handle_to_json::<GenerateLogFile>(task(r#"{"lines": 3}"#)).unwrap_err();
        assert!(
            matches!(&err, TaskError::Fatal(m) if m.contains("generate_log_file")),
            "{err}"
        );
        let err = sluice_guest::handle_to_json::<GenerateLogFile>(task(r#"{"file": "../x.log"}"#))
            .unwrap_err();
        assert!(err.message().contains(".."), "{err}");
        let err = sluice_guest::handle_to_json::<GenerateLogFile>(task(
            r#"{"file": "x.log", "lines": 99999999999}"#,
        ))
        .unwrap_err();
        assert!(err.message().contains("lines"), "{err}");
    }
}
