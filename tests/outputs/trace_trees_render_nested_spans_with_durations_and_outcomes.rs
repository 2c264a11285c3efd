//! The terminal trace-tree view: golden output from spans written by hand (fixed ids and
//! times), so the rendering is checked byte for byte.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use spanbus::handlers::{ClosedSpan, SpanOutcome, TraceTrees};
use spanbus::{DropReason, SpanId, TraceId};

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600, 0).unwrap()
}

fn span(
    trace: u128,
    id: u64,
    parent: Option<u64>,
    name: &'static str,
    start_us: i64,
    end_us: i64,
    outcome: SpanOutcome,
) -> ClosedSpan {
    ClosedSpan {
        id: SpanId::from_u64(id).unwrap(),
        parent: parent.map(|p| SpanId::from_u64(p).unwrap()),
        trace_id: TraceId::from_u128(trace),
        name: name.into(),
        dispatcher: "rag",
        start: t0() + TimeDelta::microseconds(start_us),
        end: t0() + TimeDelta::microseconds(end_us),
        outcome,
        llm: None,
        tags: None,
    }
}

fn dropped(reason: DropReason, message: &str) -> SpanOutcome {
    SpanOutcome::Dropped {
        reason,
        message: message.into(),
    }
}

const OK: SpanOutcome = SpanOutcome::Exited;

#[test]
fn two_traces_render_as_indented_trees() {
    // Given in a scrambled order (as spans end: children before parents, traces interleaved).
    let spans = vec![
        span(
            0xb,
            0x21,
            Some(0x20),
            "llm.chat",
            1_000,
            1_500_000,
            dropped(DropReason::Cancelled, ""),
        ),
        span(
            0xa,
            0x03,
            Some(0x01),
            "retrieve",
            5_000,
            25_000,
            dropped(DropReason::Error, "index unavailable"),
        ),
        span(0xa, 0x04, Some(0x03), "vector_search", 6_000, 6_850, OK),
        span(0xa, 0x02, Some(0x01), "embed", 1_000, 4_000, OK),
        span(
            0xa,
            0x05,
            Some(0x03),
            "keyword_search",
            7_000,
            24_000,
            dropped(DropReason::Panic, "bad\nregex"),
        ),
        span(
            0xa,
            0x06,
            Some(0x01),
            "cleanup",
            26_000,
            27_000,
            dropped(DropReason::Shutdown, "dispatcher shutdown"),
        ),
        span(
            0xa,
            0x01,
            None,
            "query",
            0,
            40_000,
            dropped(DropReason::Error, "index unavailable"),
        ),
        span(
            0xb,
            0x20,
            None,
            "query",
            100,
            1_600_100,
            dropped(DropReason::Cancelled, ""),
        ),
    ];
    let trees = TraceTrees::new(spans.clone());
    let expected = "\
trace 0000000000000000000000000000000a  6 spans  40.000 ms
query  40.000 ms  error: index unavailable
├─ embed  3.000 ms  ok
├─ retrieve  20.000 ms  error: index unavailable
│  ├─ vector_search  850 µs  ok
│  └─ keyword_search  17.000 ms  panic: bad\\nregex
└─ cleanup  1.000 ms  shutdown: dispatcher shutdown

trace 0000000000000000000000000000000b  2 spans  1.600 s
query  1.600 s  cancelled
└─ llm.chat  1.499 s  cancelled
";
    let rendered = trees.to_string();
    println!("{rendered}");
    assert_eq!(rendered, expected);
    assert_eq!(trees.len(), 2);
    assert_eq!(trees.spans(), &spans[..], "the input is kept as given");

    // One trace on its own renders the same block.
    let b = trees.trace(TraceId::from_u128(0xb).unwrap()).unwrap();
    assert_eq!(
        b.to_string(),
        "trace 0000000000000000000000000000000b  2 spans  1.600 s\nquery  1.600 s  cancelled\n└─ llm.chat  1.499 s  cancelled\n"
    );
    assert!(trees.trace(TraceId::from_u128(0xc).unwrap()).is_none());
}

#[test]
fn children_are_ordered_by_start_and_the_walk_api_matches_the_drawing() {
    let spans = vec![
        span(1, 4, Some(1), "third", 30, 40, OK),
        span(1, 2, Some(1), "first", 10, 20, OK),
        span(1, 3, Some(1), "second", 20, 30, OK),
        span(1, 1, None, "root", 0, 50, OK),
    ];
    let trees = TraceTrees::new(spans);
    let trace = trees.traces().next().unwrap();
    let root = trace.roots().next().unwrap();
    assert_eq!(root.span().unwrap().name, "root");
    let names: Vec<_> = root
        .children()
        .map(|c| c.span().unwrap().name.to_string())
        .collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert_eq!(
        trees.to_string(),
        "trace 00000000000000000000000000000001  4 spans  50 µs\nroot  50 µs  ok\n├─ first  10 µs  ok\n├─ second  10 µs  ok\n└─ third  10 µs  ok\n"
    );
}

#[test]
fn a_deep_chain_and_a_wide_fan_build_without_recursion() {
    // 100,000 spans in one chain: building and walking must not overflow the stack.
    let n = 100_000u64;
    let spans: Vec<ClosedSpan> = (1..=n)
        .map(|i| {
            let parent = if i == 1 { None } else { Some(i - 1) };
            span(7, i, parent, "link", i as i64, 2 * n as i64 - i as i64, OK)
        })
        .collect();
    let trees = TraceTrees::new(spans);
    let mut node = trees.traces().next().unwrap().roots().next().unwrap();
    let mut depth = 1;
    while let Some(child) = node.children().next() {
        node = child;
        depth += 1;
    }
    assert_eq!(depth, n);

    // 100,000 siblings: one line each.
    let wide: Vec<ClosedSpan> = std::iter::once(span(8, 1, None, "root", 0, 1_000_000, OK))
        .chain((2..=n).map(|i| span(8, i, Some(1), "leaf", i as i64, i as i64 + 1, OK)))
        .collect();
    let rendered = TraceTrees::new(wide).to_string();
    assert_eq!(rendered.lines().count() as u64, n + 1);
    assert!(rendered.ends_with("└─ leaf  1 µs  ok\n"));
}

#[test]
fn malformed_parent_cycles_are_shown_not_looped() {
    // 1 -> 2 -> 1: neither is a root. Both must still be drawn, once each.
    let spans = vec![
        span(3, 1, Some(2), "a", 0, 10, OK),
        span(3, 2, Some(1), "b", 1, 9, OK),
    ];
    let rendered = TraceTrees::new(spans).to_string();
    assert_eq!(
        rendered,
        "trace 00000000000000000000000000000003  2 spans  10 µs\n? <missing parent 0000000000000002>\n└─ a  10 µs  ok\n   └─ b  8 µs  ok\n"
    );
}
