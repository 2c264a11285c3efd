//! How spans end: a cancelled future drops its span as `Cancelled`; an `Err` or a panic drops it
//! with the error or panic text while the value or panic passes through unchanged; every drop
//! also emits a `SpanDropEvent`; manual spans can be ended by hand and made current.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::recorder::{Rec, Recorder, Seq, wait_until};
use spanbus::record::{SpanDrop, SpanEnter, SpanExit};
use spanbus::{
    Dispatcher, DropReason, EventHandler, Record, SpanFutureExt, SpanHandler, SpanId, current_span,
};

fn setup(name: &str) -> (Dispatcher, Recorder) {
    let d = Dispatcher::new(name).unwrap();
    let r = Recorder::new();
    d.add_handler(r.clone()).unwrap();
    (d, r)
}

async fn records(d: &Dispatcher, r: &Recorder) -> Vec<Rec> {
    d.flush().await;
    r.records()
}

fn enter_of<'a>(recs: &'a [Rec], name: &str) -> &'a Rec {
    recs.iter()
        .find(|r| r.class == "SpanEnter" && r.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no enter of {name} in {recs:#?}"))
}

/// The SpanDrop of `span`, after checking it is followed by a matching `SpanDropEvent`.
fn drop_of(recs: &[Rec], span: Option<SpanId>) -> Rec {
    let i = recs
        .iter()
        .position(|r| r.class == "SpanDrop" && r.span == span)
        .unwrap_or_else(|| panic!("no drop of {span:?} in {recs:#?}"));
    let event = recs[i + 1..]
        .iter()
        .find(|r| r.class == "SpanDropEvent" && r.span == span)
        .expect("a SpanDropEvent follows every drop");
    assert_eq!(event.message, recs[i].message, "err_str is the drop's text");
    assert!(
        !recs.iter().any(|r| r.class == "SpanExit" && r.span == span),
        "a dropped span is not also exited"
    );
    recs[i].clone()
}

fn classes(recs: &[Rec]) -> Vec<&'static str> {
    recs.iter().map(|r| r.class).collect()
}

#[derive(Debug, PartialEq)]
struct QuotaError {
    code: u32,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota exceeded (code {})", self.code)
    }
}

#[tokio::test]
async fn a_future_cut_off_by_a_timeout_drops_its_span_as_cancelled() {
    let (d, r) = setup("cancel");
    let slow = std::future::pending::<()>().in_span(d.span("slow"));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), slow)
            .await
            .is_err()
    );
    let recs = records(&d, &r).await;
    assert_eq!(
        classes(&recs),
        ["SpanEnter", "SpanDrop", "SpanDropEvent"],
        "{recs:#?}"
    );
    let drop = drop_of(&recs, enter_of(&recs, "slow").span);
    assert_eq!(drop.reason, Some(DropReason::Cancelled));
    assert_eq!(drop.message.as_deref(), Some(""));
}

#[tokio::test]
async fn the_loser_of_a_select_drops_its_span_and_nested_spans_end_inside_out() {
    let (d, r) = setup("select");
    let d2 = d.clone();
    let loser = async move {
        async {
            d2.event(Seq { emitter: 0, n: 1 }).await.unwrap();
            std::future::pending::<()>().await
        }
        .in_span(d2.span("inner"))
        .await
    }
    .in_span(d.span("outer"));
    let winner = async {
        tokio::task::yield_now().await;
        "won"
    }
    .in_span(d.span("winner"));
    let out = tokio::select! {
        biased;
        _ = loser => "lost",
        w = winner => w,
    };
    assert_eq!(out, "won");
    let recs = records(&d, &r).await;
    let outer = enter_of(&recs, "outer").span;
    let inner = enter_of(&recs, "inner").span;
    assert_eq!(enter_of(&recs, "inner").parent, outer);
    let inner_drop = drop_of(&recs, inner);
    let outer_drop = drop_of(&recs, outer);
    assert_eq!(inner_drop.reason, Some(DropReason::Cancelled));
    assert_eq!(outer_drop.reason, Some(DropReason::Cancelled));
    let pos = |span, class| {
        recs.iter()
            .position(|r| r.span == span && r.class == class)
            .unwrap()
    };
    assert!(
        pos(inner, "SpanDrop") < pos(outer, "SpanDrop"),
        "inner ends first"
    );
    assert!(
        recs.iter()
            .any(|r| r.class == "SpanExit" && r.span == enter_of(&recs, "winner").span)
    );
}

#[tokio::test]
async fn an_err_drops_the_span_with_its_text_and_passes_through_unchanged() {
    let (d, r) = setup("err");
    let out: Result<u8, QuotaError> = async { Err(QuotaError { code: 429 }) }
        .in_span_result(d.span("call"))
        .await;
    assert_eq!(out, Err(QuotaError { code: 429 }));
    let ok: Result<u8, QuotaError> = async { Ok(7) }.in_span_result(d.span("fine")).await;
    assert_eq!(ok, Ok(7));
    // `in_span` (not `_result`) exits whatever the output.
    let plain: Result<u8, QuotaError> = async { Err(QuotaError { code: 1 }) }
        .in_span(d.span("plain"))
        .await;
    assert!(plain.is_err());

    let recs = records(&d, &r).await;
    let drop = drop_of(&recs, enter_of(&recs, "call").span);
    assert_eq!(drop.reason, Some(DropReason::Error));
    assert_eq!(drop.message.as_deref(), Some("quota exceeded (code 429)"));
    for name in ["fine", "plain"] {
        let span = enter_of(&recs, name).span;
        assert!(recs.iter().any(|r| r.class == "SpanExit" && r.span == span));
    }
    assert_eq!(recs.iter().filter(|r| r.class == "SpanDrop").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_drops_the_span_with_its_text_and_keeps_unwinding_unchanged() {
    let (d, r) = setup("panic");
    let task = tokio::spawn(
        async {
            tokio::task::yield_now().await;
            let tokens = std::hint::black_box(0); // a runtime value: the payload is a String
            panic!("model returned {tokens} tokens");
        }
        .in_span(d.span("doomed")),
    );
    let payload = task.await.unwrap_err().into_panic();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("model returned 0 tokens")
    );

    // A non-string payload passes through too, untouched. (A dispatcher can be moved into a
    // `catch_unwind` closure as is: it is unwind-safe.)
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    unwind_safe::<Dispatcher>();
    let d2 = d.clone();
    let caught = std::panic::catch_unwind(move || {
        d2.span("odd").in_scope(|| std::panic::panic_any(42_u32));
    })
    .unwrap_err();
    assert_eq!(caught.downcast_ref::<u32>(), Some(&42));

    let recs = records(&d, &r).await;
    let drop = drop_of(&recs, enter_of(&recs, "doomed").span);
    assert_eq!(drop.reason, Some(DropReason::Panic));
    assert_eq!(drop.message.as_deref(), Some("model returned 0 tokens"));
    let odd = drop_of(&recs, enter_of(&recs, "odd").span);
    assert_eq!(odd.reason, Some(DropReason::Panic));
    assert!(!odd.message.unwrap().is_empty());
}

#[tokio::test]
async fn a_future_that_is_never_polled_produces_no_records() {
    let (d, r) = setup("idle");
    let never = async { 1 }.in_span(d.span("never"));
    drop(never);
    let also_never = d.span("unused");
    drop(also_never);
    d.event(Seq { emitter: 0, n: 0 }).await.unwrap(); // a marker, so the handler is live
    let recs = records(&d, &r).await;
    assert_eq!(classes(&recs), ["Seq"]);
}

#[tokio::test]
async fn manual_spans_exit_fail_or_cancel_when_dropped() {
    let (d, r) = setup("manual");
    let a = d.span("a").args(serde_json::json!({"k": 1})).enter();
    let a_id = a.context().span_id();
    a.exit();
    let b = d.span("b").enter();
    let b_id = b.context().span_id();
    b.fail(QuotaError { code: 3 });
    let c = d.span("c").enter();
    let c_id = c.context().span_id();
    drop(c);

    let recs = records(&d, &r).await;
    assert_eq!(enter_of(&recs, "a").span, Some(a_id));
    assert_eq!(
        classes(&recs),
        [
            "SpanEnter",
            "SpanExit",
            "SpanEnter",
            "SpanDrop",
            "SpanDropEvent",
            "SpanEnter",
            "SpanDrop",
            "SpanDropEvent"
        ]
    );
    assert!(
        recs.iter()
            .any(|r| r.class == "SpanExit" && r.span == Some(a_id))
    );
    let b_drop = drop_of(&recs, Some(b_id));
    assert_eq!(b_drop.reason, Some(DropReason::Error));
    assert_eq!(b_drop.message.as_deref(), Some("quota exceeded (code 3)"));
    let c_drop = drop_of(&recs, Some(c_id));
    assert_eq!(c_drop.reason, Some(DropReason::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_span_made_current_parents_child_spans_and_events() {
    let (d, r) = setup("current");
    let job = d.span("job").enter();
    let job_ctx = job.context();
    assert_eq!(
        current_span(),
        None,
        "entering does not make a span current"
    );

    job.in_scope(|| {
        assert_eq!(current_span(), Some(job_ctx));
        d.event(Seq { emitter: 0, n: 0 }).now().unwrap();
        d.span("sync child").in_scope(|| {
            assert_ne!(current_span(), Some(job_ctx));
        });
    });
    let d2 = d.clone();
    tokio::spawn(job.attach(async move {
        tokio::task::yield_now().await;
        assert_eq!(current_span(), Some(job_ctx));
        d2.event(Seq { emitter: 0, n: 1 }).await.unwrap();
        async {}.in_span(d2.span("async child")).await;
    }))
    .await
    .unwrap();
    assert_eq!(current_span(), None);
    job.exit();

    let recs = records(&d, &r).await;
    for child in ["sync child", "async child"] {
        let enter = enter_of(&recs, child);
        assert_eq!(enter.parent, Some(job_ctx.span_id()), "{child}");
    }
    let events: Vec<_> = recs.iter().filter(|r| r.seq.is_some()).collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.span == Some(job_ctx.span_id())));
    let exit = recs
        .iter()
        .position(|r| r.class == "SpanExit" && r.span == Some(job_ctx.span_id()));
    assert_eq!(exit, Some(recs.len() - 1), "the job exits last");
}

#[tokio::test]
async fn the_closure_forms_exit_or_drop_and_return_the_value() {
    let (d, r) = setup("closures");
    let v = d.span("sum").in_scope(|| {
        assert!(current_span().is_some());
        2 + 2
    });
    assert_eq!(v, 4);
    let parsed: Result<u32, std::num::ParseIntError> =
        d.span("parse").in_scope_result(|| "12x".parse());
    let expected = "12x".parse::<u32>().unwrap_err();
    assert_eq!(parsed, Err(expected.clone()));
    let fine: Result<u32, std::num::ParseIntError> =
        d.span("parse ok").in_scope_result(|| "12".parse());
    assert_eq!(fine, Ok(12));

    let recs = records(&d, &r).await;
    let sum = enter_of(&recs, "sum").span;
    assert!(recs.iter().any(|r| r.class == "SpanExit" && r.span == sum));
    let drop = drop_of(&recs, enter_of(&recs, "parse").span);
    assert_eq!(drop.reason, Some(DropReason::Error));
    assert_eq!(drop.message, Some(expected.to_string()));
    let ok = enter_of(&recs, "parse ok").span;
    assert!(recs.iter().any(|r| r.class == "SpanExit" && r.span == ok));
}

/// (class name, `err_str` of a `SpanDropEvent`) per event seen.
type EventLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An event handler: sees the `SpanDropEvent`s, never the span signals.
#[derive(Clone, Default)]
struct Events(EventLog);

impl EventHandler for Events {
    async fn handle(&mut self, record: &Record) {
        let err = record
            .event::<spanbus::events::SpanDropEvent>()
            .map(|e| e.err_str.clone());
        self.0
            .lock()
            .unwrap()
            .push((record.class_name().to_owned(), err));
    }
}

/// (span name, drop reason or `None` for an exit) per span ended.
type EndLog = Arc<Mutex<Vec<(String, Option<DropReason>)>>>;

/// A span handler: records how each span ended.
#[derive(Clone, Default)]
struct Ends(EndLog);

impl SpanHandler for Ends {
    type Span = String;

    fn new_span(&mut self, enter: &SpanEnter, _: &Record) -> Option<String> {
        Some(enter.name.to_string())
    }

    fn prepare_to_exit_span(&mut self, name: String, _: &SpanExit, _: &Record) {
        self.0.lock().unwrap().push((name, None));
    }

    fn prepare_to_drop_span(&mut self, name: String, drop: &SpanDrop, _: &Record) {
        self.0.lock().unwrap().push((name, Some(drop.reason)));
    }
}

#[tokio::test]
async fn event_handlers_get_span_drop_events_and_span_handlers_get_the_outcomes() {
    let d = Dispatcher::new("handlers").unwrap();
    let (events, ends) = (Events::default(), Ends::default());
    d.add_event_handler(events.clone()).unwrap();
    d.add_span_handler(ends.clone()).unwrap();
    d.span("ok").in_scope(|| ());
    let _: Result<(), &str> = d.span("err").in_scope_result(|| Err("nope"));
    let _ = tokio::time::timeout(
        Duration::from_millis(5),
        std::future::pending::<()>().in_span(d.span("cancelled")),
    )
    .await;
    d.flush().await;
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            ("SpanDropEvent".to_owned(), Some("nope".to_owned())),
            ("SpanDropEvent".to_owned(), Some(String::new())),
        ]
    );
    assert_eq!(
        *ends.0.lock().unwrap(),
        [
            ("ok".to_owned(), None),
            ("err".to_owned(), Some(DropReason::Error)),
            ("cancelled".to_owned(), Some(DropReason::Cancelled)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_handler_closed_with_spans_open_drops_them_as_shutdown() {
    let d = Dispatcher::new("closing").unwrap();
    let ends = Ends::default();
    let id = d.add_span_handler(ends.clone()).unwrap();
    let open = d.span("left open").enter();
    d.span("closed").in_scope(|| ());
    d.flush().await;
    assert!(d.remove_handler(id));
    let log = Arc::clone(&ends.0);
    assert!(
        wait_until(Duration::from_secs(5), || log.lock().unwrap().len() == 2).await,
        "{:?}",
        log.lock().unwrap()
    );
    assert_eq!(
        *ends.0.lock().unwrap(),
        [
            ("closed".to_owned(), None),
            ("left open".to_owned(), Some(DropReason::Shutdown)),
        ]
    );
    open.exit(); // the handler is gone: nothing more happens
}
