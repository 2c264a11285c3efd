//! Reliability matrix, row "lossless load" (SPEC §4): one emitter, four lossless handlers, one
//! of them slowed down. Every handler must see every event, in emit order, and nothing may be
//! lost: the emitter waits for room instead.
//!
//! The default size (1,000,000 events) keeps debug CI fast; the full row (10,000,000 events)
//! runs with `cargo test --release --test reliability reliability_lossless_load -- --ignored`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use spanbus::{Dispatcher, Event, Handler, HandlerOptions, Record};

#[derive(Serialize)]
struct Seq(u64);

impl Event for Seq {
    const NAME: &'static str = "Seq";
}

/// What one handler saw, published when it is closed.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    handled: u64,
    out_of_order: u64,
}

/// Checks that events arrive as 0, 1, 2, …; optionally slowed by yielding and busy work.
struct InOrder {
    next: u64,
    seen: Seen,
    slow: bool,
    out: Arc<Mutex<Vec<(String, Seen)>>>,
    name: String,
}

impl Handler for InOrder {
    async fn handle(&mut self, record: &Record) {
        let Some(Seq(n)) = record.event::<Seq>() else {
            return;
        };
        if *n != self.next {
            self.seen.out_of_order += 1;
        }
        self.next = n + 1;
        self.seen.handled += 1;
        if self.slow {
            // Slower than the others: give the worker away every few records and burn a
            // little CPU on each, so this handler is the one the emitter waits for.
            std::hint::black_box((0..64u64).fold(*n, |a, b| a.rotate_left(7) ^ b));
            if n % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn close(&mut self) {
        self.out
            .lock()
            .unwrap()
            .push((self.name.clone(), self.seen));
    }
}

async fn lossless_load(n: u64) {
    let d = Dispatcher::new("reliability.lossless").unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let names = ["fast-0", "fast-1", "fast-2", "slowed"];
    for name in names {
        d.add_handler_with(
            InOrder {
                next: 0,
                seen: Seen::default(),
                slow: name == "slowed",
                out: Arc::clone(&out),
                name: name.to_owned(),
            },
            HandlerOptions::new().name(name),
        )
        .unwrap();
    }

    for i in 0..n {
        d.event(Seq(i)).await.expect("emit before shutdown");
    }
    let report = d.shutdown(Duration::from_secs(600)).await;

    let seen = out.lock().unwrap().clone();
    let delivered: Vec<u64> = names
        .iter()
        .map(|name| {
            seen.iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, s)| s.handled)
        })
        .collect();
    let lost: u64 = delivered.iter().map(|d| n - d).sum();
    let out_of_order: u64 = seen.iter().map(|(_, s)| s.out_of_order).sum();
    println!(
        "lossless: emitted={n} delivered={delivered:?} lost={lost} out_of_order={out_of_order}"
    );

    assert_eq!(seen.len(), 4, "every handler was closed: {seen:?}");
    assert_eq!(lost, 0);
    assert_eq!(out_of_order, 0);
    assert!(report.is_clean(), "{report:?}");
    for h in &report.handlers {
        assert_eq!(h.stats.delivered, n, "{h:?}");
        assert_eq!(h.stats.dropped, 0, "{h:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handler_sees_every_event_in_order() {
    lossless_load(1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size (10M events): run with --ignored, preferably --release"]
async fn every_handler_sees_every_event_in_order_full_size() {
    lossless_load(10_000_000).await;
}
