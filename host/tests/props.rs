//! Property tests of every input parser and of the result-record builder
//! (issue #19 part 6): arbitrary bytes and JSON never panic, accepted
//! messages keep `params` byte for byte (also through the retry rewrite),
//! and whatever is rejected maps to a named kind.
//!
//! 256 cases per property by default (the CI run); more with
//! `PROPTEST_CASES=10000 cargo test -p sluice --test props`.

use std::path::Path;

use proptest::prelude::*;
use sluice::manifest::{Manifest, ManifestError};
use sluice::message::{self, BadMessage, Envelope, Task};
use sluice::record::{self, EXCERPT_BYTES, ResultRecord, Status};

/// JSON number text in the many spellings producers use (`1.50`, `-0`,
/// `1E+5`, integers beyond 64 bits).
fn number_text() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?"
}

/// Optional JSON whitespace.
fn ws() -> impl Strategy<Value = String> {
    "[ \t\n\r]{0,2}"
}

/// A JSON string literal (escaped by serde_json, so any text).
fn string_text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap())
}

/// Arbitrary JSON *text*: every value kind, nested, with arbitrary
/// whitespace and number spellings, so "byte for byte" means something.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number_text(),
        string_text(),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..6).prop_map(|items| {
                let parts: Vec<String> = items
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", parts.join(","))
            }),
            prop::collection::vec((string_text(), ws(), inner), 0..6).prop_map(|fields| {
                let parts: Vec<String> = fields
                    .into_iter()
                    .map(|(k, w, v)| format!("{k}{w}:{w}{v}"))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }),
        ]
    })
}

/// An accepted message: the fields Sluice reads, with valid types, plus
/// unknown fields; returns (message text, task_type, params text).
fn message_text() -> impl Strategy<Value = (String, String, String)> {
    (
        any::<String>(),
        json_text(),
        prop::option::of(prop_oneof![string_text(), number_text()]),
        prop::option::of(0u32..10),
        prop::collection::vec(("[a-z_]{1,8}", json_text()), 0..3),
        ws(),
    )
        .prop_map(|(task_type, params, id, attempts, extra, w)| {
            let mut fields = vec![
                format!(
                    "\"task_type\":{w}{}",
                    serde_json::to_string(&task_type).unwrap()
                ),
                format!("\"params\":{w}{params}"),
            ];
            if let Some(id) = id {
                fields.push(format!("\"id\":{id}"));
            }
            if let Some(n) = attempts {
                fields.push(format!("\"attempts\":{n}"));
            }
            for (name, value) in extra {
                // Unknown fields only: known ones have types to respect.
                fields.push(format!("\"x_{name}\":{w}{value}"));
            }
            (format!("{{{w}{}{w}}}", fields.join(",")), task_type, params)
        })
}

/// The kinds a rejected message may map to.
fn assert_named(bad: &BadMessage) {
    assert!(
        matches!(bad.kind(), "malformed" | "missing_task_type" | "too_large"),
        "{bad:?}"
    );
}

proptest! {
    #[test]
    fn parse_never_panics_on_bytes(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(bad) = Task::parse(&raw, 0) {
            assert_named(&bad);
        }
        let _ = Envelope::peek(&raw);
        if let Err(bad) = message::rewrite(&raw, &[("attempts", 1.into())]) {
            prop_assert_eq!(bad.kind(), "malformed");
        }
    }

    #[test]
    fn parse_never_panics_on_json(text in json_text()) {
        match Task::parse(text.as_bytes(), 0) {
            Ok(task) => {
                let is_object = text.trim_start().starts_with('{');
                prop_assert!(is_object && !task.id.is_empty());
            }
            Err(bad) => assert_named(&bad),
        }
        let _ = Envelope::peek(text.as_bytes());
    }

    #[test]
    fn accepted_messages_keep_params_byte_for_byte((raw, task_type, params) in message_text()) {
        let task = Task::parse(raw.as_bytes(), 0).unwrap();
        prop_assert_eq!(&task.task_type, &task_type);
        let expected = if params == "null" { "{}" } else { params.as_str() };
        prop_assert_eq!(task.params.as_str(), expected);
        // The envelope reads the same id and type without params.
        let envelope = Envelope::peek(raw.as_bytes());
        prop_assert_eq!(envelope.task_type.as_deref(), Some(task_type.as_str()));
        if !task.id_assigned {
            prop_assert_eq!(envelope.id.as_deref(), Some(task.id.as_str()));
        }
    }

    #[test]
    fn the_retry_rewrite_round_trips((raw, _, _) in message_text(), attempts in 1u32..100) {
        let task = Task::parse(raw.as_bytes(), 0).unwrap();
        let mut fields = vec![("attempts", attempts.into()), ("delay_ms", serde_json::Value::Null)];
        if task.id_assigned {
            fields.push(("id", task.id.clone().into()));
        }
        let rewritten = message::rewrite(raw.as_bytes(), &fields).unwrap();
        let again = Task::parse(rewritten.as_bytes(), 0).unwrap();
        prop_assert_eq!(&again.params, &task.params);
        prop_assert_eq!(&again.id, &task.id);
        prop_assert_eq!(&again.task_type, &task.task_type);
        prop_assert_eq!(again.attempts, attempts);
        prop_assert!(!again.id_assigned);
        // Every other field keeps its JSON text, byte for byte.
        type Fields = indexmap::IndexMap<String, Box<serde_json::value::RawValue>>;
        let before: Fields = serde_json::from_str(&raw).unwrap();
        let after: Fields = serde_json::from_str(&rewritten).unwrap();
        for (name, value) in &before {
            if name != "attempts" && !(name == "id" && task.id_assigned) {
                prop_assert_eq!(after.get(name).map(|v| v.get()), Some(value.get()));
            }
        }
    }

    #[test]
    fn a_size_check_comes_before_parsing(raw in prop::collection::vec(any::<u8>(), 0..64), limit in 0usize..80) {
        match message::check_size(&raw, limit) {
            Ok(()) => prop_assert!(raw.len() <= limit),
            Err(bad) => {
                prop_assert_eq!(bad.kind(), "too_large");
                prop_assert!(raw.len() > limit);
            }
        }
    }

    #[test]
    fn the_manifest_parser_never_panics(text in "(?s).{0,200}") {
        check_manifest(&text);
    }

    #[test]
    fn manifest_keys_with_any_values_are_checked(
        keys in prop::collection::vec((
            prop::sample::select(vec![
                "timeout_ms", "memory_bytes", "max_retries", "backoff_base_ms", "backoff_cap_ms",
                "instance_reuse", "max_result_bytes", "max_log_bytes", "max_log_lines", "version",
                "inherit_env", "unknown_key",
            ]),
            prop_oneof![
                Just("0".to_owned()),
                Just("-1".to_owned()),
                Just("18446744073709551616".to_owned()),
                Just("\"text\"".to_owned()),
                Just("[\"A\"]".to_owned()),
                (1u64..u64::from(u32::MAX) * 4).prop_map(|n| n.to_string()),
            ],
        ), 0..6)
    ) {
        let text: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        if let Some(m) = check_manifest(&text) {
            prop_assert!(m.timeout_ms > 0 && m.memory_bytes > 0);
            prop_assert!((1..=sluice::manifest::MAX_INSTANCE_REUSE).contains(&m.instance_reuse));
            prop_assert_ne!(m.max_result_bytes, Some(0));
        }
    }

    #[test]
    fn the_result_builder_keeps_results_verbatim_or_names_the_failure(
        json in prop_oneof![json_text(), any::<String>()],
        max in 0usize..2048,
    ) {
        match record::result_value(json.clone(), max) {
            Ok(raw) => {
                prop_assert!(json.len() <= max);
                // Built from JSON so that fields added later keep this compiling.
                let mut record: ResultRecord = serde_json::from_value(serde_json::json!({
                    "id": "t", "task_type": "x", "status": "succeeded", "attempts": 1,
                    "started_at": 0, "finished_at": 0, "duration_ms": 0, "worker": "w",
                })).unwrap();
                prop_assert_eq!(record.status, Status::Succeeded);
                record.result = Some(raw);
                let text = serde_json::to_string(&record).unwrap();
                let back: ResultRecord = serde_json::from_str(&text).unwrap();
                // A `null` result reads back as no result (`"result": null`).
                let result = back.result.map(|r| r.get().to_owned());
                prop_assert_eq!(result.as_deref().unwrap_or("null"), json.trim());
            }
            Err(error) if json.len() > max => {
                prop_assert_eq!(error.kind.as_str(), "result_too_large");
                prop_assert!(error.message.len() < 3 * EXCERPT_BYTES + 200);
            }
            Err(error) => {
                prop_assert_eq!(error.kind.as_str(), "fatal");
                prop_assert!(serde_json::from_str::<&serde_json::value::RawValue>(&json).is_err());
            }
        }
    }

    #[test]
    fn excerpts_are_bounded_prefixes(text in any::<String>(), max in 0usize..64) {
        let cut = record::excerpt(text.as_bytes(), max);
        prop_assert!(cut.len() <= max);
        prop_assert!(text.starts_with(&cut));
        prop_assert!(cut.len() + 3 >= max.min(text.len()));
    }
}

/// Parses `text` as a manifest in a scratch folder; panics only on a
/// non-named error.
fn check_manifest(text: &str) -> Option<Manifest> {
    let path = Path::new("/nonexistent-sluice-props/p.toml");
    match Manifest::parse(text, path) {
        Ok(m) => Some(m),
        Err(ManifestError::Invalid { path: p, .. }) => {
            assert_eq!(p, path);
            None
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}
