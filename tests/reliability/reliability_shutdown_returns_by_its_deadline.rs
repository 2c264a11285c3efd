//! Reliability matrix, row "a handler hangs at shutdown" (SPEC §4): `shutdown(deadline)` must
//! return by the deadline plus 10%, name the hanging handler as timed out, and still drain,
//! flush and close the healthy handlers with everything delivered.
//!
//! Three ways to hang are covered: in `close()` (after every record was handled), and in
//! `handle()` on the first record or on one in the middle (with records still queued behind
//! the stuck one). Then the rest of shutdown: concurrent and cut-short calls, open spans
//! dropped with reason `Shutdown`, work refused afterwards, emitters and flushes released, one
//! deadline for a whole registry, and emits racing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::recorder::{Recorder, Seen, Seq, wait_until};
use spanbus::error::{EmitError, HandlerError};
use spanbus::{Dispatcher, DropReason, Handler, HandlerOptions, Record, Registry, SpanFutureExt};
use tokio::sync::Notify;

/// The shutdown deadline of these tests, and the scheduling slack the tests after the matrix
/// row allow on top of its 10% (the row allows none).
const DEADLINE: Duration = Duration::from_millis(1_000);
const SLACK: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq)]
enum Hang {
    InClose,
    InHandle { at: u64 },
}

struct Hangs(Hang);

impl Handler for Hangs {
    async fn handle(&mut self, record: &Record) {
        if let (Hang::InHandle { at }, Some(&Seq { n, .. })) = (self.0, record.event::<Seq>())
            && n == at
        {
            std::future::pending::<()>().await;
        }
    }

    async fn close(&mut self) {
        if self.0 == Hang::InClose {
            std::future::pending::<()>().await;
        }
    }
}

/// Emits `n` events, then shuts down with a handler that hangs as told.
async fn hang_at_shutdown(hang: Hang, n: u64, label: &str) {
    let deadline = DEADLINE;
    let d = Dispatcher::new("reliability.hang").unwrap();
    // The hanging handler is attached first, so shutdown waits on it before the others.
    let hangs = d
        .add_handler_with(Hangs(hang), HandlerOptions::new().name("hangs"))
        .unwrap();
    let healthy: Vec<Recorder> = (0..2).map(|_| Recorder::new()).collect();
    for (i, r) in healthy.iter().enumerate() {
        d.add_handler_with(
            r.clone(),
            HandlerOptions::new().name(format!("healthy-{i}")),
        )
        .unwrap();
    }
    // Sync emission never waits for the hanging handler: what it has not taken stays below the
    // hard cap (capacity + overflow). The healthy handlers may fall that far behind this tight
    // loop on a loaded machine: an emit past the hard cap is refused, and sent again.
    let mut resent = 0;
    for n in 0..n {
        while let Err(e) = d.event(Seq { emitter: 0, n }).now() {
            assert!(matches!(e, EmitError::Overflow { .. }), "{e}");
            resent += 1;
            tokio::task::yield_now().await;
        }
    }

    let start = Instant::now();
    let report = d.shutdown(deadline).await;
    let took = start.elapsed();

    let timed_out: Vec<&str> = report.timed_out().map(|h| h.stats.name.as_str()).collect();
    let healthy_delivered: Vec<u64> = report
        .handlers
        .iter()
        .filter(|h| !h.timed_out)
        .map(|h| h.stats.delivered)
        .collect();
    let closed = healthy
        .iter()
        .filter(|r| r.seen().last() == Some(&Seen::Close))
        .count();
    println!(
        "hang ({label}): deadline={}ms returned_after={}ms timed_out={timed_out:?} \
         healthy_delivered={healthy_delivered:?} healthy_closed={closed} \
         resent_after_overflow={resent}",
        deadline.as_millis(),
        took.as_millis(),
    );

    assert!(
        took <= deadline + deadline / 10,
        "shutdown took {took:?} for a deadline of {deadline:?}"
    );
    assert_eq!(timed_out, ["hangs"]);
    let line = report.handlers.iter().find(|h| h.id == hangs).unwrap();
    assert!(line.timed_out);
    assert_eq!(line.dispatcher, "reliability.hang");
    assert_eq!(healthy_delivered, [n, n]);
    // The healthy handlers were drained, flushed and closed.
    for r in &healthy {
        assert_eq!(r.seqs(), (0..n).collect::<Vec<_>>());
        let seen = r.seen();
        assert_eq!(
            seen[seen.len() - 2..],
            [Seen::Flush, Seen::Close],
            "{label}"
        );
    }
    assert_eq!(closed, 2);
    assert!(!report.is_clean());
    // Shutdown is idempotent: a second call returns the same report at once.
    let start = Instant::now();
    let again = d.shutdown(Duration::from_secs(30)).await;
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(again, report);
    assert!(d.is_shut_down());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_hanging_in_close_is_named_and_shutdown_keeps_its_deadline() {
    hang_at_shutdown(Hang::InClose, 10_000, "in close").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_hanging_in_handle_is_named_and_shutdown_keeps_its_deadline() {
    hang_at_shutdown(
        Hang::InHandle { at: 0 },
        1_000,
        "in handle, on the first record",
    )
    .await;
    hang_at_shutdown(Hang::InHandle { at: 5_000 }, 10_000, "in handle").await;
}

// ---- the rest of shutdown ------------------------------------------------------------------

/// Hangs forever in `handle`.
struct Hung;

impl Handler for Hung {
    async fn handle(&mut self, _: &Record) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shutdowns_share_one_report() {
    let d = spanbus::Dispatcher::new("twice").unwrap();
    d.add_handler_with(Hung, HandlerOptions::new().name("hung"))
        .unwrap();
    d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
    let start = Instant::now();
    let (a, b) = tokio::join!(d.shutdown(DEADLINE), d.shutdown(DEADLINE));
    assert!(start.elapsed() <= DEADLINE.mul_f64(1.1) + SLACK);
    assert_eq!(a, b);
    assert_eq!(a.timed_out().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_spans_are_dropped_with_reason_shutdown_and_counted() {
    let reg = Registry::new();
    let app = reg.get_dispatcher("app").unwrap();
    let x = reg.get_dispatcher("app.x").unwrap();
    let on_app = Recorder::new();
    app.add_handler(on_app.clone()).unwrap();

    // A manual span on app, and a future parked inside a span on app.x.
    let manual = app.span("manual").enter();
    let manual_id = manual.context().span_id();
    let gate = Arc::new(Notify::new());
    let inside = Arc::new(Notify::new());
    let parked = tokio::spawn({
        let (gate, inside) = (Arc::clone(&gate), Arc::clone(&inside));
        async move {
            inside.notify_one();
            gate.notified().await;
        }
        .in_span(x.span("parked"))
    });
    inside.notified().await;
    // And a span that ended before shutdown: not dropped again.
    app.span("done").in_scope(|| ());

    let report = reg.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.spans_dropped, 2);
    assert!(report.timed_out().next().is_none());

    let recs = on_app.records();
    let drops: Vec<_> = recs.iter().filter(|r| r.class == "SpanDrop").collect();
    assert_eq!(drops.len(), 2, "{recs:#?}");
    for drop in &drops {
        assert_eq!(drop.reason, Some(DropReason::Shutdown));
        assert_eq!(drop.message.as_deref(), Some("dispatcher shutdown"));
    }
    assert!(drops.iter().any(|r| r.span == Some(manual_id)));
    assert!(drops.iter().any(|r| r.dispatcher == "app.x"));
    let drop_events: Vec<_> = recs.iter().filter(|r| r.class == "SpanDropEvent").collect();
    assert_eq!(drop_events.len(), 2);
    assert!(
        drop_events
            .iter()
            .all(|r| r.message.as_deref() == Some("dispatcher shutdown"))
    );

    // Ending those spans afterwards emits nothing and does not panic.
    manual.exit();
    gate.notify_one();
    parked.await.unwrap();
    assert_eq!(on_app.records().len(), recs.len());
}

#[tokio::test]
async fn after_shutdown_emits_and_new_handlers_are_refused_with_typed_errors() {
    let d = spanbus::Dispatcher::new("closed").unwrap();
    let r = Recorder::new();
    d.add_handler(r.clone()).unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean());
    assert_eq!(report.handlers.len(), 1);

    let err = d.event(Seq { emitter: 0, n: 1 }).await.unwrap_err();
    assert_eq!(
        err,
        EmitError::ShutDown {
            dispatcher: "closed".into()
        }
    );
    assert_eq!(err.to_string(), "dispatcher \"closed\" has been shut down");
    assert!(matches!(
        d.event(Seq { emitter: 0, n: 2 }).now(),
        Err(EmitError::ShutDown { .. })
    ));
    let err = d.add_handler(Recorder::new()).unwrap_err();
    assert_eq!(
        err,
        HandlerError::ShutDown {
            dispatcher: "closed".into()
        }
    );
    // Spans on a shut-down dispatcher still run their code; nothing reaches the old handler.
    assert_eq!(d.span("late").in_scope(|| 7), 7);
    assert_eq!(r.records().len(), 0);
    assert_eq!(r.seen(), [Seen::Flush, Seen::Close]);
}

/// A recorder that stalls on its first record until the gate opens; `stalled` is set once it
/// holds that record.
struct Gated {
    inner: Recorder,
    gate: Arc<Notify>,
    first: bool,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl Handler for Gated {
    async fn handle(&mut self, record: &Record) {
        if std::mem::take(&mut self.first) {
            self.stalled
                .store(true, std::sync::atomic::Ordering::Release);
            self.gate.notified().await;
        }
        self.inner.handle(record).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitter_waiting_for_room_is_released_by_shutdown_with_an_error() {
    let d = spanbus::Dispatcher::builder("full")
        .capacity(4.try_into().unwrap())
        .build()
        .unwrap();
    let log = Recorder::new();
    let gate = Arc::new(Notify::new());
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    d.add_handler(Gated {
        inner: log.clone(),
        gate: Arc::clone(&gate),
        first: true,
        stalled: Arc::clone(&stalled),
    })
    .unwrap();
    // Counts the emits that returned Ok, then stops at the first error.
    let emitter = tokio::spawn({
        let d = d.clone();
        async move {
            let mut ok = 0u64;
            for n in 0..100_000 {
                match d.event(Seq { emitter: 0, n }).await {
                    Ok(()) => ok += 1,
                    Err(e) => return (ok, Some(e)),
                }
            }
            (ok, None)
        }
    });
    // Flush only once the handler holds a record, so the barrier lands behind it.
    assert!(
        wait_until(Duration::from_secs(5), || stalled
            .load(std::sync::atomic::Ordering::Acquire))
        .await
    );
    let flush = tokio::spawn({
        let d = d.clone();
        async move { d.flush().await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(100), flush)
            .await
            .is_err(),
        "flush waits for the stalled handler"
    );
    let shutting = tokio::spawn({
        let d = d.clone();
        async move { d.shutdown(Duration::from_secs(10)).await }
    });
    // Shutdown releases the emitter...
    let (ok, err) = tokio::time::timeout(Duration::from_secs(5), emitter)
        .await
        .expect("the emitter is released")
        .unwrap();
    assert!(matches!(err, Some(EmitError::ShutDown { .. })), "{err:?}");
    // ...then the handler drains what was queued.
    gate.notify_one();
    let report = shutting.await.unwrap();
    assert!(report.timed_out().next().is_none());
    // Every emit that returned Ok was delivered; the one that was waiting got the error.
    assert_eq!(log.seqs(), (0..ok).collect::<Vec<_>>());
    assert_eq!(report.handlers[0].stats.delivered, ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_cut_short_by_the_caller_still_finishes_and_reports() {
    let d = spanbus::Dispatcher::new("impatient").unwrap();
    let hung = d
        .add_handler_with(Hung, HandlerOptions::new().name("hung"))
        .unwrap();
    let normal = Recorder::new();
    d.add_handler(normal.clone()).unwrap();
    d.event(Seq { emitter: 0, n: 0 }).await.unwrap();

    // The caller gives up before the shutdown's own deadline (e.g. a `select!` on ctrl-c).
    let cut = tokio::time::timeout(Duration::from_millis(50), d.shutdown(DEADLINE)).await;
    assert!(cut.is_err());

    // Shutting down again still gets the full report, by the first call's deadline.
    let start = Instant::now();
    let report = d.shutdown(Duration::from_secs(30)).await;
    assert!(start.elapsed() <= DEADLINE.mul_f64(1.1) + SLACK);
    assert_eq!(report.handlers.len(), 2, "{report:#?}");
    let timed_out: Vec<_> = report.timed_out().map(|h| h.id).collect();
    assert_eq!(timed_out, [hung]);
    assert_eq!(normal.seqs(), [0]);
    assert_eq!(normal.seen().last(), Some(&Seen::Close));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_shutdown_with_hung_handlers_on_several_dispatchers_keeps_one_deadline() {
    let reg = Registry::new();
    let mut hung = Vec::new();
    for name in ["a", "a.b", "c"] {
        let d = reg.get_dispatcher(name).unwrap();
        hung.push(
            d.add_handler_with(Hung, HandlerOptions::new().name(format!("hung {name}")))
                .unwrap(),
        );
        d.add_handler(Recorder::new()).unwrap();
        d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
    }
    let start = Instant::now();
    let report = reg.shutdown(DEADLINE).await;
    let took = start.elapsed();
    println!("registry shutdown: deadline={DEADLINE:?} returned after {took:?}");
    assert!(took <= DEADLINE.mul_f64(1.1) + SLACK, "{took:?}");
    assert_eq!(report.handlers.len(), 6);
    let mut timed_out: Vec<_> = report.timed_out().map(|h| h.stats.name.clone()).collect();
    timed_out.sort();
    assert_eq!(timed_out, ["hung a", "hung a.b", "hung c"]);
    assert_eq!(reg.shutdown(DEADLINE).await, report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_stuck_on_a_hung_handler_returns_once_shutdown_aborts_it() {
    let d = spanbus::Dispatcher::new("stuck").unwrap();
    d.add_handler_with(Hung, HandlerOptions::new().name("hung"))
        .unwrap();
    let normal = Recorder::new();
    d.add_handler(normal.clone()).unwrap();
    d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
    let flush = tokio::spawn({
        let d = d.clone();
        async move { d.flush().await }
    });
    let short = Duration::from_millis(200);
    let report = d.shutdown(short).await;
    assert_eq!(report.timed_out().count(), 1);
    tokio::time::timeout(Duration::from_secs(5), flush)
        .await
        .expect("the pending flush is released when the hung handler is aborted")
        .unwrap();
    assert_eq!(normal.seqs(), [0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emit_that_returned_ok_before_a_concurrent_shutdown_is_delivered() {
    for round in 0..10u64 {
        let d = spanbus::Dispatcher::builder("racing")
            .capacity(64.try_into().unwrap())
            .build()
            .unwrap();
        let r = Recorder::new();
        d.add_handler(r.clone()).unwrap();
        let emitters: Vec<_> = (0..4u64)
            .map(|emitter| {
                let d = d.clone();
                tokio::spawn(async move {
                    let mut ok = 0;
                    for n in 0.. {
                        let e = Seq { emitter, n };
                        let res = if (n + emitter) % 2 == 0 {
                            d.event(e).await
                        } else {
                            d.event(e).now()
                        };
                        match res {
                            Ok(()) => ok += 1,
                            Err(EmitError::ShutDown { .. }) => break,
                            Err(other) => panic!("{other}"),
                        }
                        if n % 32 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    ok
                })
            })
            .collect();
        for _ in 0..(round % 5 + 1) * 20 {
            tokio::task::yield_now().await;
        }
        let report = d.shutdown(Duration::from_secs(20)).await;
        assert!(report.timed_out().next().is_none());
        let recs = r.records();
        for (emitter, task) in emitters.into_iter().enumerate() {
            let ok = task.await.unwrap();
            let got = recs
                .iter()
                .filter(|r| r.seq.is_some_and(|s| s.0 == emitter as u64))
                .count() as u64;
            assert_eq!(
                got, ok,
                "round {round}, emitter {emitter}: Ok emits vs delivered"
            );
        }
    }
}
