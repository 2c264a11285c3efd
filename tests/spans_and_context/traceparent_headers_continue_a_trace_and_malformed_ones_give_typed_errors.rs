//! W3C trace context in and out: `inject` writes `traceparent`/`tracestate`, `extract` reads
//! them back into a context whose span parents the spans started under it; malformed values
//! are typed errors, never panics.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use spanbus::context::Context;
use spanbus::handlers::SimpleSpanHandler;
use spanbus::propagation::{
    TRACEFLAGS, TRACESTATE, TraceParent, TraceParentError, extract, inject,
};
use spanbus::{SpanContext, SpanFutureExt, SpanId, TraceId, current_span};

fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_good_traceparent_becomes_the_current_span_of_the_extracted_context() {
    let ctx = extract(&headers(&[
        ("Traceparent", GOOD),
        ("tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
    ]))
    .unwrap();
    let span = ctx.span().unwrap();
    assert_eq!(
        span.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
    assert_eq!(
        ctx.extras()[TRACESTATE],
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(ctx.extras()[TRACEFLAGS], "01");

    // Injecting it again gives the same headers (canonical form).
    let mut out = BTreeMap::new();
    inject(&ctx, &mut out);
    assert_eq!(out["traceparent"], GOOD);
    assert_eq!(out["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
}

#[test]
fn malformed_traceparents_give_typed_errors() {
    let cases: &[(&str, TraceParentError)] = &[
        ("", TraceParentError::TooShort { len: 0 }),
        ("00-xyz", TraceParentError::TooShort { len: 6 }),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::ForbiddenVersion,
        ),
        (
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::InvalidVersion,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            TraceParentError::InvalidTraceId,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            TraceParentError::ZeroTraceId,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            TraceParentError::ZeroParentId,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            TraceParentError::InvalidParentId,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            TraceParentError::InvalidFlags,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            TraceParentError::MissingDash { position: 35 },
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            TraceParentError::TooLong { len: 61 },
        ),
        (
            // Non-ASCII: lengths are in bytes, and nothing panics on a char boundary.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
            TraceParentError::TooLong { len: 56 },
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
            TraceParentError::InvalidFlags,
        ),
    ];
    for (value, expected) in cases {
        let got = extract(&headers(&[("traceparent", value)])).unwrap_err();
        assert_eq!(&got, expected, "{value:?}");
        assert!(
            got.to_string().starts_with("traceparent") || got.to_string().contains("traceparent")
        );
    }
    assert_eq!(
        extract(&headers(&[])).unwrap_err(),
        TraceParentError::Missing
    );
    // A future version is read with the version-00 layout and re-sent as 00.
    let ctx = extract(&headers(&[(
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
    )]))
    .unwrap();
    let mut out = HashMap::new();
    inject(&ctx, &mut out);
    assert_eq!(out["traceparent"], GOOD);
}

#[test]
fn a_malformed_tracestate_is_ignored_but_the_traceparent_is_used() {
    let ctx = extract(&headers(&[
        ("traceparent", GOOD),
        ("tracestate", "no equals"),
    ]))
    .unwrap();
    assert!(ctx.span().is_some());
    assert!(!ctx.extras().contains_key(TRACESTATE));
}

#[test]
fn no_span_injects_nothing_and_undefined_flags_are_not_sent() {
    let mut out: Vec<(String, String)> = Vec::new();
    inject(&Context::empty(), &mut out);
    assert!(out.is_empty());

    let ctx = extract(&headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
    )]))
    .unwrap();
    inject(&ctx, &mut out);
    assert_eq!(out, [("traceparent".to_string(), GOOD.to_string())]);
}

#[cfg(feature = "otlp")]
#[test]
fn http_header_maps_are_carriers_too() {
    let mut map = http::HeaderMap::new();
    let span = SpanContext::new(TraceId::random(), SpanId::random());
    inject(&Context::empty().with_span(Some(span)), &mut map);
    assert!(map.contains_key("traceparent"));
    let back = extract(&map).unwrap();
    assert_eq!(back.span(), Some(span));
}

#[tokio::test(flavor = "current_thread")]
async fn spans_under_an_extracted_context_are_children_of_the_remote_caller() {
    let d = spanbus::Dispatcher::new("callee").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();

    // "Process A": a span that calls out, injecting its context.
    let (caller, carried) = async {
        let mut h = HashMap::new();
        inject(&Context::current(), &mut h);
        (current_span().unwrap(), h)
    }
    .in_span(d.span("client.call"))
    .await;
    assert_eq!(
        carried["traceparent"],
        TraceParent::from_span_context(caller, 1).to_string()
    );

    // "Process B": extract, then work under it.
    let ctx = extract(&carried).unwrap();
    let (handled, nested) = ctx
        .attach(
            async {
                let handled = current_span().unwrap();
                let nested = async { current_span().unwrap() }
                    .in_span(d.span("server.db"))
                    .await;
                (handled, nested)
            }
            .in_span(d.span("server.handle")),
        )
        .await;
    d.flush().await;

    assert_eq!(handled.trace_id(), caller.trace_id());
    assert_eq!(nested.trace_id(), caller.trace_id());
    let closed = spans.spans();
    let handle = closed.iter().find(|s| s.name == "server.handle").unwrap();
    let db = closed.iter().find(|s| s.name == "server.db").unwrap();
    assert_eq!(handle.parent, Some(caller.span_id()));
    assert_eq!(db.parent, Some(handled.span_id()));
}

proptest! {
    #[test]
    fn extract_never_panics_on_arbitrary_headers(tp in any::<String>(), ts in any::<String>()) {
        let h = headers(&[("traceparent", &tp), ("tracestate", &ts)]);
        if let Ok(ctx) = extract(&h) {
            let mut out = HashMap::new();
            inject(&ctx, &mut out);
            prop_assert_eq!(extract(&out).unwrap().span(), ctx.span());
        }
    }

    #[test]
    fn inject_then_extract_round_trips_any_span(trace in 1u128.., span in 1u64..) {
        let sc = SpanContext::new(TraceId::from_u128(trace).unwrap(), SpanId::from_u64(span).unwrap());
        let mut h = HashMap::new();
        inject(&Context::empty().with_span(Some(sc)), &mut h);
        prop_assert_eq!(extract(&h).unwrap().span(), Some(sc));
    }
}
