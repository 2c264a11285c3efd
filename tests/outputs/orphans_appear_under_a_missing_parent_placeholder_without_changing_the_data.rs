//! A span whose parent is not among the recorded spans (evicted, still open, recorded
//! elsewhere) is drawn under a `? <missing parent …>` placeholder, and the spans themselves are
//! left exactly as they were.

use chrono::{TimeDelta, TimeZone, Utc};
use spanbus::handlers::{ClosedSpan, SimpleSpanHandler, SpanOutcome, TraceTrees};
use spanbus::{Dispatcher, SpanId, TraceId};

fn span(id: u64, parent: Option<u64>, name: &'static str, start_ms: i64) -> ClosedSpan {
    let t0 = Utc.timestamp_opt(1_767_225_600, 0).unwrap();
    ClosedSpan {
        id: SpanId::from_u64(id).unwrap(),
        parent: parent.and_then(SpanId::from_u64),
        trace_id: TraceId::from_u128(0x42),
        name: name.into(),
        dispatcher: "rag",
        start: t0 + TimeDelta::milliseconds(start_ms),
        end: t0 + TimeDelta::milliseconds(start_ms + 2),
        outcome: SpanOutcome::Exited,
        llm: None,
        tags: None,
    }
}

#[test]
fn orphans_share_one_placeholder_per_missing_parent() {
    let missing = 0x00f0_67aa_0ba9_02b7;
    let spans = vec![
        span(1, None, "root", 0),
        span(2, Some(missing), "orphan-a", 5),
        span(3, Some(missing), "orphan-b", 3),
        span(4, Some(2), "grandchild", 6),
        span(5, Some(0xdead), "other-orphan", 10),
    ];
    let before = spans.clone();
    let trees = TraceTrees::from_spans(&spans);
    let rendered = trees.to_string();
    println!("{rendered}");
    assert_eq!(
        rendered,
        "\
trace 00000000000000000000000000000042  5 spans  12.000 ms
root  2.000 ms  ok
? <missing parent 00f067aa0ba902b7>
├─ orphan-b  2.000 ms  ok
└─ orphan-a  2.000 ms  ok
   └─ grandchild  2.000 ms  ok
? <missing parent 000000000000dead>
└─ other-orphan  2.000 ms  ok
"
    );
    // No data changed: not the caller's slice, not the copy inside the trees.
    assert_eq!(spans, before);
    assert_eq!(trees.spans(), &before[..]);
    // The placeholder is a node without a span; its children keep their parent ids.
    let trace = trees.traces().next().unwrap();
    let placeholder = trace.roots().nth(1).unwrap();
    assert!(placeholder.span().is_none());
    assert_eq!(placeholder.missing_parent(), SpanId::from_u64(missing));
    for child in placeholder.children() {
        assert_eq!(child.span().unwrap().parent, SpanId::from_u64(missing));
    }
    assert_eq!(
        trace.span_count(),
        5,
        "placeholders are not counted as spans"
    );
}

#[tokio::test]
async fn a_child_of_a_still_open_span_is_an_orphan_in_the_live_view() {
    let d = Dispatcher::new("orphans").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();

    let parent = d.span("long-running").enter();
    let parent_id = parent.context().span_id();
    parent.in_scope(|| d.span("finished-child").in_scope(|| ()));
    d.flush().await;

    let before = spans.spans();
    assert_eq!(before.len(), 1);
    let rendered = spans.trace_trees().to_string();
    println!("{rendered}");
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines[1], format!("? <missing parent {parent_id}>"));
    assert!(lines[2].starts_with("└─ finished-child  "), "{rendered}");
    assert_eq!(
        spans.spans(),
        before,
        "building trees does not change the store"
    );

    // Once the parent ends, the same child is drawn under it.
    parent.exit();
    d.flush().await;
    let rendered = spans.trace_trees().to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert!(lines[1].starts_with("long-running  "), "{rendered}");
    assert!(lines[2].starts_with("└─ finished-child  "), "{rendered}");
}
