//! Reliability matrix, row "a handler panics every 1,000th event" (SPEC §4): the panics must be
//! caught and counted (in [`HandlerStats`](spanbus::HandlerStats) and the
//! [`ShutdownReport`](spanbus::ShutdownReport), with the first message), the panicking handler
//! must go on with the records after each panic, the other handlers on the same channel must
//! see every event in order, and the emitters must not notice. Panics in the `flush` and
//! `close` hooks hang neither a flush nor shutdown.
//!
//! Default size 200,000 events (200 panics); the full size (2,000,000) runs with `--ignored`.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seq};
use spanbus::error::EmitError;
use spanbus::{Dispatcher, Handler, HandlerOptions, Record};

/// The start of every deliberate panic's message here.
const DELIBERATE: &str = "deliberate";
const PANIC_TEXT: &str = "deliberate handler panic";

/// Panics on every 1,000th event of each emitter (n = 999, 1999, ...); keeps the rest.
struct Panicky {
    handled: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Handler for Panicky {
    async fn handle(&mut self, record: &Record) {
        if let Some(&Seq { emitter, n }) = record.event::<Seq>() {
            if n % 1000 == 999 {
                panic!("{PANIC_TEXT} at {n} of emitter {emitter}");
            }
            self.handled.lock().unwrap().push((emitter, n));
        }
    }
}

/// What a healthy handler saw of each of the two emitters: (events, events out of order).
type PerEmitter = [(u64, u64); 2];

/// Counts each emitter's events and checks their order; publishes at each flush and at close.
struct InOrder {
    next: [u64; 2],
    seen: PerEmitter,
    at_flush: Arc<Mutex<Vec<PerEmitter>>>,
    at_close: Arc<Mutex<Vec<PerEmitter>>>,
}

impl Handler for InOrder {
    async fn handle(&mut self, record: &Record) {
        if let Some(&Seq { emitter, n }) = record.event::<Seq>() {
            let e = emitter as usize;
            if n != self.next[e] {
                self.seen[e].1 += 1;
            }
            self.next[e] = n + 1;
            self.seen[e].0 += 1;
        }
    }

    async fn flush(&mut self) {
        self.at_flush.lock().unwrap().push(self.seen);
    }

    async fn close(&mut self) {
        self.at_close.lock().unwrap().push(self.seen);
    }
}

/// Keeps the deliberate panics out of the test output; anything else is reported as usual.
fn quiet_deliberate_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !text.starts_with(DELIBERATE) {
                default(info);
            }
        }));
    });
}

/// `n` events from two emitters, `n / 2` each: one awaits every emit, the other emits with
/// `now()` on a runtime thread.
async fn panics_every_thousandth(n: u64) {
    quiet_deliberate_panics();
    // A small channel, so that the sync emitter outruns the lossless handlers by the hard cap.
    let d = Dispatcher::builder("reliability.panics")
        .capacity(256.try_into().unwrap())
        .build()
        .unwrap();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let (at_flush, at_close) = (Arc::default(), Arc::default());
    let panicky = d
        .add_handler_with(
            Panicky {
                handled: Arc::clone(&handled),
            },
            HandlerOptions::new().name("panics-every-1000th"),
        )
        .unwrap();
    for i in 0..2 {
        d.add_handler_with(
            InOrder {
                next: [0; 2],
                seen: [(0, 0); 2],
                at_flush: Arc::clone(&at_flush),
                at_close: Arc::clone(&at_close),
            },
            HandlerOptions::new().name(format!("healthy-{i}")),
        )
        .unwrap();
    }

    let emitters: Vec<_> = (0..2u64)
        .map(|emitter| {
            let d = d.clone();
            tokio::spawn(async move {
                let (mut emit_errors, mut overflows) = (0u64, 0u64);
                for n in 0..n / 2 {
                    if emitter == 0 {
                        if d.event(Seq { emitter, n }).await.is_err() {
                            emit_errors += 1;
                        }
                    } else {
                        // A sync emitter on a runtime thread that outruns the lossless
                        // handlers by the hard cap is told so (the record is dropped and
                        // counted); this one yields and sends it again, losing nothing.
                        while let Err(e) = d.event(Seq { emitter, n }).now() {
                            assert!(matches!(e, EmitError::Overflow { .. }), "{e}");
                            overflows += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                (emit_errors, overflows)
            })
        })
        .collect();
    let mut emit_errors = 0;
    let mut overflows = 0;
    for e in emitters {
        // The emitters are unaffected: each finishes, and none panicked.
        let (errors, overflowed) = tokio::time::timeout(Duration::from_secs(60), e)
            .await
            .expect("the emitter finishes")
            .expect("the emitter did not panic");
        emit_errors += errors;
        overflows += overflowed;
    }
    d.flush().await;
    let live = d
        .all_handler_stats()
        .into_iter()
        .find(|(id, _)| *id == panicky)
        .unwrap()
        .1;
    let healthy_at_flush = at_flush.lock().unwrap().clone();
    let report = d.shutdown(Duration::from_secs(60)).await;

    let expected_panics = n / 1000;
    let bad = report.handlers.iter().find(|h| h.id == panicky).unwrap();
    let healthy = at_close.lock().unwrap().clone();
    let handled = handled.lock().unwrap().clone();
    println!(
        "panics: emitted={n} emit_errors={emit_errors} overflows_resent={overflows} \
         panicked={} (stats during run: {}) panicky_delivered={} healthy={healthy:?} \
         first_panic={:?}",
        bad.stats.panicked,
        live.panicked,
        bad.stats.delivered,
        bad.stats.first_panic.as_deref().unwrap_or(""),
    );

    assert_eq!(emit_errors, 0, "the awaiting emitter did not notice");
    // Counted while running, with the first message.
    assert_eq!(live.panicked, expected_panics, "counted in handler_stats");
    assert_eq!(live.delivered, n - expected_panics);
    let first = live.first_panic.expect("the first panic's message");
    assert!(
        [0, 1]
            .map(|e| format!("{PANIC_TEXT} at 999 of emitter {e}"))
            .contains(&first),
        "{first}"
    );
    // The panicking handler goes on with the records after each panic, in order.
    let survivors: Vec<u64> = (0..n / 2).filter(|n| n % 1000 != 999).collect();
    for emitter in 0..2 {
        let got: Vec<u64> = handled
            .iter()
            .filter(|(e, _)| *e == emitter)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            got == survivors,
            "emitter {emitter}: it keeps receiving after each panic ({} of {})",
            got.len(),
            survivors.len()
        );
    }
    assert_eq!(handled.len() as u64, n - expected_panics);
    // The other handlers saw every event of each emitter, in order: by the flush, and at close.
    for seen in [&healthy_at_flush, &healthy] {
        assert_eq!(
            seen.len(),
            2,
            "both healthy handlers ran the hook: {seen:?}"
        );
        for per_emitter in seen {
            assert_eq!(*per_emitter, [(n / 2, 0); 2]);
        }
    }
    // Reported at shutdown.
    assert_eq!(bad.stats.panicked, expected_panics, "reported at shutdown");
    assert_eq!(bad.stats.delivered, n - expected_panics);
    assert_eq!(bad.stats.first_panic.as_deref(), Some(first.as_str()));
    assert!(!bad.timed_out);
    assert!(!report.is_clean(), "a report with panics is not clean");
    for h in report.handlers.iter().filter(|h| h.id != panicky) {
        assert_eq!((h.stats.delivered, h.stats.panicked), (n, 0), "{h:?}");
        assert!(!h.timed_out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_counted_and_nobody_else_notices() {
    panics_every_thousandth(200_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: run with --ignored"]
async fn panics_are_counted_and_nobody_else_notices_full_size() {
    panics_every_thousandth(2_000_000).await;
}

/// Panics in every hook but `handle`.
struct BadHooks {
    handled: Arc<Mutex<u64>>,
}

impl Handler for BadHooks {
    async fn handle(&mut self, _: &Record) {
        *self.handled.lock().unwrap() += 1;
    }

    async fn flush(&mut self) {
        panic!("deliberate panic in flush");
    }

    async fn close(&mut self) {
        panic!("deliberate panic in close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_flush_and_close_hooks_neither_hang_flush_nor_shutdown() {
    quiet_deliberate_panics();
    let d = Dispatcher::new("hooks").unwrap();
    let handled = Arc::new(Mutex::new(0));
    d.add_handler(BadHooks {
        handled: Arc::clone(&handled),
    })
    .unwrap();
    let ok = Recorder::new();
    d.add_handler(ok.clone()).unwrap();
    for n in 0..100 {
        d.event(Seq { emitter: 0, n }).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), d.flush())
        .await
        .expect("a panicking flush hook still acknowledges the barrier");
    assert_eq!(*handled.lock().unwrap(), 100);
    d.event(Seq { emitter: 0, n: 100 }).await.unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.timed_out().next().is_none());
    let bad = &report.handlers[0].stats;
    // One flush call, then at shutdown a final flush and close: three panics.
    assert_eq!(bad.panicked, 3);
    assert_eq!(
        bad.first_panic.as_deref(),
        Some("deliberate panic in flush")
    );
    assert_eq!(bad.delivered, 101);
    assert_eq!(ok.seqs().len(), 101);
}
