//! The fuzz targets' properties (fuzz/src/checks.rs, included here) on the committed seed
//! corpora (fuzz/seeds/TARGET), on what the JSON Lines writer produces, and on a handful of
//! nasty inputs, so CI checks them on every push without libFuzzer (`.ci/fuzz.sh` runs the
//! fuzzer itself).
//!
//! Each check panics when its property fails: the JSON Lines reader counts every non-blank
//! line as a record or a line error and agrees with parsing each line alone; `traceparent` and
//! `tracestate` values that parse round-trip through `Display`; `extract` never panics and what
//! it extracts injects and extracts back to the same span.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::PathBuf;

use spanbus::events::QueryStartEvent;
use spanbus::handlers::JsonlHandler;
use spanbus::propagation::{TraceParent, TraceState};

/// The committed seeds of one fuzz target.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).expect("a readable seed");
            (path, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Runs `check` on each input, naming the input that fails.
fn replay<'a>(check: fn(&[u8]), inputs: impl IntoIterator<Item = (String, &'a [u8])>) -> usize {
    let mut n = 0;
    for (name, data) in inputs {
        if std::panic::catch_unwind(|| check(data)).is_err() {
            panic!(
                "property failed on {name}: {:?}",
                String::from_utf8_lossy(data)
            );
        }
        n += 1;
    }
    n
}

fn replay_seeds(target: &str, check: fn(&[u8])) {
    let seeds = seeds(target);
    let n = replay(
        check,
        seeds
            .iter()
            .map(|(p, d)| (p.display().to_string(), d.as_slice())),
    );
    println!("{target}: {n} seeds replayed");
}

/// Inputs that stress the byte-level edges every parser shares.
const NASTY: &[&[u8]] = &[
    b"",
    b"\n",
    b"\r\n\r\n",
    b"\x00",
    b"\xff\xfe\xfd",
    b"\xe2\x82",            // a truncated UTF-8 sequence
    "\u{1F600}".as_bytes(), // a 4-byte character
    b"\x0b\x0c \t",         // vertical tab (not ASCII whitespace to Rust) and form feed
    b"-----",
    b",,,,=,=,,",
];

#[test]
fn the_jsonl_reader_keeps_its_properties_on_seeds_writer_output_and_nasty_input() {
    replay_seeds("jsonl_reader", checks::jsonl_reader);

    let nasty_lines: &[&[u8]] = &[
        br#"{}"#,
        br#"[]"#,
        br#"null"#,
        br#"{"id_":null,"timestamp":null,"class_name":null}"#,
        br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00Z","class_name":"SpanEnter"}"#,
        br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"+262143-12-31T23:59:59.999999999Z","class_name":"E"}"#,
        br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00Z","class_name":"E","span_id":"0000000000000000","trace_id":"00000000000000000000000000000000"}"#,
        br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00Z","class_name":"SpanDrop","span_id":"00f067aa0ba902b7","reason":"Nope"}"#,
        br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00Z","class_name":"E","tags":{"a":1,"a":2},"x":1e400}"#,
        b"{\"a\":\"\xff\"}",
        b"{\"id_\":\"67e55044-10b1-426f-9247-bb680e5fe0c8\"\r",
    ];
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut inputs: Vec<(String, Vec<u8>)> = NASTY
        .iter()
        .chain(nasty_lines)
        .map(|d| (format!("{:?}", String::from_utf8_lossy(d)), d.to_vec()))
        .collect();
    inputs.push(("10000 nested arrays".into(), deep.into_bytes()));
    // All of them in one file, separated by every kind of line break.
    let mut all = Vec::new();
    for (_, d) in &inputs {
        all.extend_from_slice(d);
        all.extend_from_slice(b"\r\n\n");
    }
    inputs.push(("all of them in one file".into(), all));
    replay(
        checks::jsonl_reader,
        inputs.iter().map(|(n, d)| (n.clone(), d.as_slice())),
    );
}

#[tokio::test]
async fn the_jsonl_reader_keeps_its_properties_on_what_the_writer_writes() {
    let path = std::env::temp_dir()
        .join(format!("spanbus-test-{}", std::process::id()))
        .join("fuzz-properties.jsonl");
    let d = spanbus::Dispatcher::new("fuzz").expect("a dispatcher");
    d.add_handler(JsonlHandler::create(&path).expect("a writable file"))
        .expect("a running dispatcher");
    let _ = d
        .span("query")
        .args(serde_json::json!({"q": "line\nbreak \u{2028} \"quoted\""}))
        .tag("user", "ada")
        .in_scope_result(|| {
            d.event(QueryStartEvent {
                query: serde_json::json!("\u{0}\u{1F600}\r\n"),
            })
            .now()
            .expect("emitted");
            Err::<(), _>("boom")
        });
    d.span("ok").in_scope(|| ());
    d.flush().await;

    let data = std::fs::read(&path).expect("the written file");
    let read = spanbus::jsonl::from_reader(data.as_slice()).expect("in-memory read");
    assert_eq!(
        read.records.len(),
        6,
        "enter, event, drop, drop event, enter, exit"
    );
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    checks::jsonl_reader(&data);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn traceparent_values_keep_their_properties_on_seeds_and_nasty_input() {
    replay_seeds("traceparent", checks::traceparent);
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut inputs: Vec<String> = vec![
        valid.to_uppercase(),
        valid.replace('-', "_"),
        format!("{valid}-"),
        format!("{valid}-extra"),
        format!("01{}-extra", &valid[2..]),
        format!("{} ", valid),
        format!("\u{e9}{}", &valid[2..]), // a 2-byte character where the version goes
        format!("{}\u{e9}", &valid[..54]), // a 2-byte character ending the value
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".into(),
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1".into(),
        "-".repeat(55),
        "0".repeat(55),
        "f".repeat(55),
    ];
    inputs.extend(
        NASTY
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned()),
    );
    replay(
        checks::traceparent,
        inputs.iter().map(|s| (format!("{s:?}"), s.as_bytes())),
    );
    assert_eq!(
        valid
            .parse::<TraceParent>()
            .map(|t| t.to_string())
            .as_deref(),
        Ok(valid)
    );
}

#[test]
fn tracestate_values_keep_their_properties_on_seeds_and_nasty_input() {
    replay_seeds("tracestate", checks::tracestate);
    let long_value = "v".repeat(256);
    let mut inputs: Vec<String> = vec![
        "a=1,a=2".into(),
        "a=b=c".into(),
        "A=1".into(),
        "a= x".into(),
        "a=x ".into(),
        "a=\t".into(),
        "a=\u{e9}".into(),
        "@=1".into(),
        "a@=1".into(),
        "a@b@c=1".into(),
        format!("{}=1", "k".repeat(257)),
        format!("k={long_value}"),
        format!("k={long_value}x"),
        (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(","),
        (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",,"),
    ];
    inputs.extend(
        NASTY
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned()),
    );
    replay(
        checks::tracestate,
        inputs.iter().map(|s| (format!("{s:?}"), s.as_bytes())),
    );
    assert!(TraceState::parse("a=1,a=2").is_err());
}

#[test]
fn extract_keeps_its_properties_on_seeds_and_nasty_headers() {
    replay_seeds("extract", checks::extract);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let inputs: Vec<String> = vec![
        format!("traceparent:{tp}\ntraceparent:garbage"),
        format!("traceparent:garbage\nTRACEPARENT:{tp}"),
        format!("traceparent:{tp}\ntracestate:a=1,a=2"),
        format!("traceparent:{tp}\ntracestate:a=1\ntracestate:a=2"),
        format!("traceparent: \t{tp}\t "),
        format!("traceparent:{}", tp.replace("-01", "-ff")),
        format!(
            "traceparent:{tp}\ntracestate:{}",
            (0..32)
                .map(|i| format!("k{i}={}", "v".repeat(100)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        "traceparent:00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
        "traceparent".into(),
        ":".into(),
    ];
    let mut inputs: Vec<(String, Vec<u8>)> = inputs
        .into_iter()
        .map(|s| (format!("{s:?}"), s.into_bytes()))
        .collect();
    inputs.extend(
        NASTY
            .iter()
            .map(|d| (format!("{:?}", String::from_utf8_lossy(d)), d.to_vec())),
    );
    replay(
        checks::extract,
        inputs.iter().map(|(n, d)| (n.clone(), d.as_slice())),
    );
}
