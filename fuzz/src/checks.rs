//! The properties the fuzz targets check, shared with the regression test
//! `tests/fuzz_seeds/fuzz_seeds_and_findings_keep_their_properties.rs` (which includes this
//! file with `#[path]`), so CI checks the same properties on the seeds without the fuzzer.
//!
//! Every check panics when its property fails: that is what a fuzzer reports as a crash.

use std::collections::{BTreeMap, HashMap};

use spanbus::jsonl::{self, JsonRecord};
use spanbus::propagation::{self, TRACEFLAGS, TRACESTATE, TraceParent, TraceState};

/// The JSON Lines reader on arbitrary bytes: it never fails on an in-memory reader, every
/// non-blank line is either a record or a line error (with that line's number), and every good
/// line parsed alone gives the same record.
pub fn jsonl_reader(data: &[u8]) {
    let read = jsonl::from_reader(data).expect("reading from a byte slice cannot fail");

    // The non-blank lines and their 1-based numbers, split as the reader splits (on `\n`).
    let lines: Vec<(usize, &[u8])> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    assert_eq!(
        read.records.len() + read.errors.len(),
        lines.len(),
        "records + line errors must equal the non-blank lines"
    );

    let mut records = read.records.iter();
    let mut errors = read.errors.iter().peekable();
    for (number, line) in lines {
        let alone = JsonRecord::parse(line);
        if errors.peek().is_some_and(|e| e.line == number) {
            errors.next();
            assert!(
                alone.is_err(),
                "line {number} failed in the file but parses alone"
            );
        } else {
            let record = records.next().expect("a record for each good line");
            assert_eq!(
                alone.as_ref().ok(),
                Some(record),
                "line {number} parsed alone differs from the file's record"
            );
        }
    }
    assert!(records.next().is_none() && errors.next().is_none());
    for e in &read.errors {
        assert!(!e.to_string().is_empty());
    }
}

/// A `traceparent` value: parsing never panics; a parsed value formats as canonical version 00
/// and parses back to itself; the zero ids the spec forbids are never accepted.
pub fn traceparent(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match TraceParent::parse(s) {
        Ok(tp) => {
            assert_ne!(tp.trace_id, 0, "accepted an all-zero trace id: {s:?}");
            assert_ne!(tp.parent_id, 0, "accepted an all-zero parent id: {s:?}");
            let text = tp.to_string();
            assert_eq!(text.len(), propagation::TRACEPARENT_LEN);
            assert_eq!(text.parse::<TraceParent>(), Ok(tp), "{s:?} -> {text:?}");
            assert!(tp.span_context().is_some());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A `tracestate` value: parsing never panics; a parsed value formats without optional
/// whitespace and parses back to itself; it holds valid keys and values only, at most
/// [`MAX_MEMBERS`](propagation::MAX_MEMBERS), without duplicates; truncation keeps it valid.
pub fn tracestate(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match TraceState::parse(s) {
        Ok(state) => {
            assert!(state.len() <= propagation::MAX_MEMBERS);
            for (k, v) in state.iter() {
                assert!(propagation::is_valid_key(k), "invalid key {k:?} from {s:?}");
                assert!(
                    propagation::is_valid_value(v),
                    "invalid value {v:?} from {s:?}"
                );
            }
            let text = state.to_string();
            assert_eq!(
                text.parse::<TraceState>().as_ref(),
                Ok(&state),
                "{s:?} -> {text:?}"
            );
            let rebuilt = TraceState::from_entries(state.iter()).expect("its own entries");
            assert_eq!(rebuilt, state);
            let mut short = state.clone();
            short.truncate_to(64);
            assert!(short.to_string().len() <= 64);
            assert_eq!(short.to_string().parse::<TraceState>().as_ref(), Ok(&short));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Arbitrary bytes as headers: one header per `\n`-separated line, the name before the first
/// `:` and the value after it (invalid UTF-8 replaced). A line without `:` is a name with an
/// empty value.
pub fn headers_from_bytes(data: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect()
}

/// [`propagation::extract`] on arbitrary headers, in each carrier: it never panics; every
/// carrier that sees the same first `traceparent` agrees; an extracted context injects
/// headers that extract back to the same span.
pub fn extract(data: &[u8]) {
    let list = headers_from_bytes(data);
    let from_list = propagation::extract(&list);

    let btree: BTreeMap<String, String> = list.iter().cloned().collect();
    let hash: HashMap<String, String> = list.iter().cloned().collect();
    let from_btree = propagation::extract(&btree);
    let from_hash = propagation::extract(&hash);

    // Without repeated names (in any case) the three carriers hold the same headers.
    let mut names: Vec<String> = list.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    if names.len() == list.len() {
        let span = |r: &Result<spanbus::context::Context, _>| r.as_ref().map(|c| c.span()).ok();
        assert_eq!(span(&from_list), span(&from_btree));
        assert_eq!(span(&from_list), span(&from_hash));
        assert_eq!(
            from_list.as_ref().err(),
            from_btree.as_ref().err(),
            "list and BTreeMap disagree"
        );
    }

    for ctx in [from_list, from_btree, from_hash].into_iter().flatten() {
        let span = ctx.span().expect("an extracted context has a span");
        let flags = ctx.extras().get(TRACEFLAGS).expect("flags are kept");
        assert_eq!(flags.len(), 2);
        if let Some(state) = ctx.extras().get(TRACESTATE) {
            TraceState::parse(state).expect("a kept tracestate is valid");
        }
        let mut out: Vec<(String, String)> = Vec::new();
        propagation::inject(&ctx, &mut out);
        let again = propagation::extract(&out).expect("injected headers extract");
        assert_eq!(again.span(), Some(span));
        if let Some((_, state)) = out
            .iter()
            .find(|(k, _)| k == propagation::TRACESTATE_HEADER)
        {
            assert!(state.len() <= 512);
        }
    }
}
