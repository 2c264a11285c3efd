//! The caller's span and tags cross into `spanbus::spawn`, `spawn_blocking`, std threads and
//! `JoinSet`s; a raw `tokio::spawn` does not carry them; a captured context survives JSON and
//! keeps the parent link; sync code outside any task sees the span of the closure form.

use crate::support::spans::{Closed, Spans, recorded};
use serde_json::json;
use spanbus::context::Context;
use spanbus::{JoinSetExt, SpanFutureExt, current_span, with_tags};
use tokio::task::JoinSet;

/// A child span entered wherever this runs, named `name`.
fn child(d: &spanbus::Dispatcher, name: &'static str) {
    d.span(name).in_scope(|| ());
}

fn find(spans: &Spans, name: &str) -> Closed {
    spans.one(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_work_is_a_child_of_the_spawning_span() {
    let (d, spans, _) = recorded("crossing");
    let d2 = d.clone();
    with_tags(
        [("tenant", "acme")],
        async move {
            let d = d2;
            let dd = d.clone();
            spanbus::spawn(async move {
                tokio::task::yield_now().await;
                child(&dd, "in_spawn");
            })
            .await
            .unwrap();

            let dd = d.clone();
            spanbus::spawn_blocking(move || child(&dd, "in_spawn_blocking"))
                .await
                .unwrap();

            let dd = d.clone();
            spanbus::thread::spawn(move || child(&dd, "in_thread"))
                .join()
                .unwrap();

            let dd = d.clone();
            spanbus::thread::spawn_with(std::thread::Builder::new(), move || {
                child(&dd, "in_built_thread")
            })
            .unwrap()
            .join()
            .unwrap();

            let mut set = JoinSet::new();
            for name in ["in_join_set_a", "in_join_set_b"] {
                let dd = d.clone();
                set.spawn_in_current_span(async move { child(&dd, name) });
            }
            let dd = d.clone();
            set.spawn_blocking_in_current_span(move || child(&dd, "in_join_set_blocking"));
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }

            // The raw forms start from an empty context.
            let dd = d.clone();
            tokio::spawn(async move { child(&dd, "in_raw_spawn") })
                .await
                .unwrap();
            let dd = d.clone();
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || child(&dd, "in_raw_thread"))
                .join()
                .unwrap();
        }
        .in_span(d.span("root")),
    )
    .await;
    d.flush().await;

    let root = find(&spans, "root");
    assert_eq!(root.parent, None);
    assert_eq!(root.tags["tenant"], "acme");
    for name in [
        "in_spawn",
        "in_spawn_blocking",
        "in_thread",
        "in_built_thread",
        "in_join_set_a",
        "in_join_set_b",
        "in_join_set_blocking",
    ] {
        let span = find(&spans, name);
        assert_eq!(span.parent, Some(root.id), "{name} lost its parent");
        assert_eq!(span.trace_id, root.trace_id, "{name} left the trace");
        assert_eq!(span.tags["tenant"], "acme", "{name} lost the tags");
    }
    for name in ["in_raw_spawn", "in_raw_thread"] {
        let span = find(&spans, name);
        assert_eq!(span.parent, None, "{name} should start a new trace");
        assert_ne!(span.trace_id, root.trace_id);
        assert!(span.tags.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_current_span_carries_the_context_into_any_executor() {
    let (d, spans, _) = recorded("crossing.any");
    let dd = d.clone();
    async move {
        let fut = async move { child(&dd, "carried") }.in_current_span();
        tokio::spawn(fut).await.unwrap();
    }
    .in_span(d.span("any_origin"))
    .await;
    d.flush().await;
    assert_eq!(
        find(&spans, "carried").parent,
        Some(find(&spans, "any_origin").id)
    );
}

#[tokio::test]
async fn a_context_captured_serialized_and_restored_keeps_the_parent() {
    let (d, spans, _) = recorded("crossing.wire");
    let (origin, wire) = d.span("origin").tag("user", "alice").in_scope(|| {
        let ctx = Context::current().with_extra("tracestate", "vendor=abc");
        (
            current_span().unwrap(),
            serde_json::to_string(&ctx).unwrap(),
        )
    });
    let value: serde_json::Value = serde_json::from_str(&wire).unwrap();
    assert_eq!(
        value,
        json!({
            "trace_id": origin.trace_id().to_string(),
            "span_id": origin.span_id().to_string(),
            "tags": { "user": "alice" },
            "extras": { "tracestate": "vendor=abc" },
        })
    );

    // "Another process": a task that starts from an empty context and only has the text.
    let dd = d.clone();
    let seen_extras = tokio::spawn(async move {
        assert_eq!(current_span(), None);
        let restored: Context = serde_json::from_str(&wire).unwrap();
        restored
            .attach(async move {
                let extras = Context::current().extras().clone();
                // Extras ride along into spans entered under the restored context.
                dd.span("remote")
                    .in_scope(|| Context::current().extras().clone())
                    .get("tracestate")
                    .cloned()
                    .zip(extras.get("tracestate").cloned())
            })
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        seen_extras,
        Some(("vendor=abc".to_owned(), "vendor=abc".to_owned()))
    );
    d.flush().await;

    let remote = find(&spans, "remote");
    assert_eq!(remote.parent, Some(origin.span_id()));
    assert_eq!(remote.trace_id, Some(origin.trace_id()));
    assert_eq!(remote.tags["user"], "alice");
}

#[test]
fn a_context_without_a_span_round_trips_and_half_a_span_is_rejected() {
    let empty = Context::empty().with_tags([("k", 1)]);
    let wire = serde_json::to_string(&empty).unwrap();
    assert_eq!(wire, r#"{"tags":{"k":1}}"#);
    assert_eq!(serde_json::from_str::<Context>(&wire).unwrap(), empty);
    assert_eq!(
        serde_json::from_str::<Context>("{}").unwrap(),
        Context::empty()
    );

    let err = serde_json::from_str::<Context>(r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a context needs both `trace_id` and `span_id`"),
        "{err}"
    );
    let err = serde_json::from_str::<Context>(r#"{"trace_id":"zz","span_id":"00f067aa0ba902b7"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("invalid TraceId"), "{err}");
}

#[spanbus::span(dispatcher = "crossing.sync")]
fn sync_outer(n: u32) -> (Option<spanbus::SpanContext>, u32) {
    (current_span(), sync_inner(n))
}

#[spanbus::span(dispatcher = "crossing.sync")]
fn sync_inner(n: u32) -> u32 {
    n + 1
}

#[tokio::test]
async fn sync_code_outside_any_task_sees_the_closure_forms_span() {
    let (d, spans, _) = recorded("crossing.sync");
    // A plain thread, outside any runtime or task.
    #[allow(clippy::disallowed_methods)]
    let (inside, outside, after) = std::thread::spawn(|| {
        let d = spanbus::get_dispatcher("crossing.sync").unwrap();
        let outside = current_span();
        let inside = d.span("closure").in_scope(|| sync_outer(1));
        (inside, outside, current_span())
    })
    .join()
    .unwrap();
    assert_eq!(outside, None);
    assert_eq!(after, None);
    assert_eq!(inside.1, 2);
    d.flush().await;

    let closure = find(&spans, "closure");
    let outer = find(&spans, concat!(module_path!(), "::sync_outer"));
    let inner = find(&spans, concat!(module_path!(), "::sync_inner"));
    assert_eq!(inside.0.map(|s| s.span_id()), Some(outer.id));
    assert_eq!(outer.parent, Some(closure.id));
    assert_eq!(inner.parent, Some(outer.id));
    assert_eq!(inner.args, Some(json!({ "n": 1 })));
}

#[tokio::test]
async fn extras_cross_with_the_rest_of_the_context() {
    fn tracestate() -> Option<String> {
        Context::current().extras().get("tracestate").cloned()
    }
    let seen = Context::empty()
        .with_extra("tracestate", "vendor=1")
        .attach(async {
            let mut set = JoinSet::new();
            set.spawn_in_current_span(async { tracestate() });
            [
                spanbus::spawn(async { tracestate() }).await.unwrap(),
                spanbus::spawn_blocking(tracestate).await.unwrap(),
                spanbus::thread::spawn(tracestate).join().unwrap(),
                set.join_next().await.unwrap().unwrap(),
            ]
        })
        .await;
    assert_eq!(
        seen,
        [
            Some("vendor=1".to_owned()),
            Some("vendor=1".to_owned()),
            Some("vendor=1".to_owned()),
            Some("vendor=1".to_owned())
        ]
    );
    assert_eq!(tracestate(), None);
}
