//! Reliability matrix, row "a handler panics every 1,000th event" (SPEC §4): the panics must be
//! caught and counted (in [`HandlerStats`](spanbus::HandlerStats) and the
//! [`ShutdownReport`](spanbus::ShutdownReport), with the first message), the other handlers on
//! the same channel must see every event in order, and the emitter must not notice.
//!
//! Default size 200,000 events (200 panics); the full size (2,000,000) runs with `--ignored`.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use serde::Serialize;
use spanbus::{Dispatcher, Event, Handler, HandlerOptions, Record};

const PANIC_TEXT: &str = "deliberate handler panic";

#[derive(Serialize)]
struct Seq(u64);

impl Event for Seq {
    const NAME: &'static str = "Seq";
}

/// Panics on every 1,000th event; counts the rest.
struct Panicky {
    handled: Arc<Mutex<u64>>,
}

impl Handler for Panicky {
    async fn handle(&mut self, record: &Record) {
        if let Some(Seq(n)) = record.event::<Seq>() {
            if n % 1000 == 999 {
                panic!("{PANIC_TEXT} at {n}");
            }
            *self.handled.lock().unwrap() += 1;
        }
    }
}

/// Counts events and checks their order.
struct InOrder {
    next: u64,
    out_of_order: u64,
    out: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Handler for InOrder {
    async fn handle(&mut self, record: &Record) {
        if let Some(Seq(n)) = record.event::<Seq>() {
            if *n != self.next {
                self.out_of_order += 1;
            }
            self.next = n + 1;
        }
    }

    async fn close(&mut self) {
        self.out
            .lock()
            .unwrap()
            .push((self.next, self.out_of_order));
    }
}

/// Keeps the expected panics out of the test output; anything else is reported as usual.
fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or_default();
            if !text.starts_with(PANIC_TEXT) {
                default(info);
            }
        }));
    });
}

async fn panics_every_thousandth(n: u64) {
    quiet_expected_panics();
    let d = Dispatcher::new("reliability.panics").unwrap();
    let handled = Arc::new(Mutex::new(0));
    let out = Arc::new(Mutex::new(Vec::new()));
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
                next: 0,
                out_of_order: 0,
                out: Arc::clone(&out),
            },
            HandlerOptions::new().name(format!("healthy-{i}")),
        )
        .unwrap();
    }

    let mut emit_errors = 0u64;
    for i in 0..n {
        if d.event(Seq(i)).await.is_err() {
            emit_errors += 1;
        }
    }
    d.flush().await;
    let live = d
        .handler_stats()
        .into_iter()
        .find(|(id, _)| *id == panicky)
        .unwrap()
        .1;
    let report = d.shutdown(Duration::from_secs(60)).await;

    let expected_panics = n / 1000;
    let bad = report
        .handlers
        .iter()
        .find(|h| h.stats.name == "panics-every-1000th")
        .unwrap();
    let healthy: Vec<_> = out.lock().unwrap().clone();
    println!(
        "panics: emitted={n} emit_errors={emit_errors} panicked={} (stats during run: {}) \
         panicky_delivered={} healthy_delivered={:?} healthy_out_of_order={} first_panic={:?}",
        bad.stats.panicked,
        live.panicked,
        bad.stats.delivered,
        healthy.iter().map(|h| h.0).collect::<Vec<_>>(),
        healthy.iter().map(|h| h.1).sum::<u64>(),
        bad.stats.first_panic.as_deref().unwrap_or(""),
    );

    assert_eq!(emit_errors, 0, "the emitter did not notice");
    assert_eq!(live.panicked, expected_panics, "counted in handler_stats");
    assert_eq!(bad.stats.panicked, expected_panics, "reported at shutdown");
    assert_eq!(bad.stats.delivered, n - expected_panics);
    assert_eq!(*handled.lock().unwrap(), n - expected_panics);
    assert_eq!(
        bad.stats.first_panic.as_deref(),
        Some(format!("{PANIC_TEXT} at 999").as_str())
    );
    assert!(!report.is_clean(), "a report with panics is not clean");
    assert_eq!(healthy.len(), 2);
    for (count, out_of_order) in healthy {
        assert_eq!((count, out_of_order), (n, 0));
    }
    for h in report
        .handlers
        .iter()
        .filter(|h| h.stats.name != bad.stats.name)
    {
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
