//! Reliability matrix, row "lossless load" (SPEC §4): one emitter, four lossless handlers, one
//! of them slowed down. Every handler must see every event, in emit order, and nothing may be
//! lost: the emitter waits for room instead, so the slowed handler never falls more than the
//! bound behind it. Checked twice: by `flush` (the live stats) and at shutdown (the report).
//!
//! The default size (1,000,000 events) keeps debug CI fast; the full row (10,000,000 events)
//! runs with `cargo test --release --test reliability reliability_lossless_load -- --ignored`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use spanbus::{Dispatcher, Event, Handler, HandlerOptions, Record};

#[derive(Serialize)]
struct Seq(u64);

impl Event for Seq {
    const NAME: &'static str = "Seq";
}

/// What one handler saw, published at each flush and when it is closed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Seen {
    handled: u64,
    out_of_order: u64,
    /// The first event out of order: (expected, got).
    first_out_of_order: Option<(u64, u64)>,
    closed: bool,
}

/// Checks that events arrive as 0, 1, 2, …; optionally slowed by yielding and busy work.
struct InOrder {
    next: u64,
    seen: Seen,
    slow: bool,
    /// The next number this handler expects, for the emitter to see how far behind it is.
    progress: Arc<AtomicU64>,
    out: Arc<Mutex<BTreeMap<String, Seen>>>,
    name: String,
}

impl InOrder {
    fn publish(&self) {
        self.out
            .lock()
            .unwrap()
            .insert(self.name.clone(), self.seen);
    }
}

impl Handler for InOrder {
    async fn handle(&mut self, record: &Record) {
        let Some(Seq(n)) = record.event::<Seq>() else {
            return;
        };
        if *n != self.next {
            self.seen.out_of_order += 1;
            self.seen.first_out_of_order.get_or_insert((self.next, *n));
        }
        self.next = n + 1;
        self.seen.handled += 1;
        self.progress.store(self.next, Ordering::Relaxed);
        if self.slow {
            // Slower than the others: give the worker away every few records and burn a
            // little CPU on each, so this handler is the one the emitter waits for.
            std::hint::black_box((0..64u64).fold(*n, |a, b| a.rotate_left(7) ^ b));
            if n % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn flush(&mut self) {
        self.publish();
    }

    async fn close(&mut self) {
        self.seen.closed = true;
        self.publish();
    }
}

async fn lossless_load(n: u64) {
    let d = Dispatcher::new("reliability.lossless").unwrap();
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let slowed_progress = Arc::new(AtomicU64::new(0));
    let names = ["fast-0", "fast-1", "fast-2", "slowed"];
    for name in names {
        let slow = name == "slowed";
        d.add_handler_with(
            InOrder {
                next: 0,
                seen: Seen::default(),
                slow,
                progress: if slow {
                    Arc::clone(&slowed_progress)
                } else {
                    Arc::default()
                },
                out: Arc::clone(&out),
                name: name.to_owned(),
            },
            HandlerOptions::new().name(name),
        )
        .unwrap();
    }

    let start = Instant::now();
    let mut max_lag = 0;
    for i in 0..n {
        d.event(Seq(i)).await.expect("emit before shutdown");
        if i % 1024 == 0 {
            // How far the slowed handler is behind the emitter.
            let done = slowed_progress.load(Ordering::Relaxed).min(i + 1);
            max_lag = max_lag.max(i + 1 - done);
        }
    }
    let emitted_in = start.elapsed();
    d.flush().await;
    let flushed_in = start.elapsed();

    // After the flush: every handler has handled every event, in order, by the live stats.
    let at_flush = out.lock().unwrap().clone();
    let live = d.all_handler_stats();
    let delivered: Vec<u64> = names
        .iter()
        .map(|name| at_flush.get(*name).map_or(0, |s| s.handled))
        .collect();
    let lost: u64 = delivered.iter().map(|d| n - d).sum();
    println!(
        "lossless: emitted={n} delivered={delivered:?} lost={lost} (slowed handler at most \
         {max_lag} behind; emit {emitted_in:.2?}, end to end {flushed_in:.2?})"
    );
    // The bound holds: the emitter waited for the slowed handler instead of running away.
    assert!(
        max_lag <= 2 * spanbus::dispatcher::DEFAULT_CAPACITY as u64,
        "the slowed handler fell {max_lag} records behind"
    );
    assert_eq!(
        at_flush.len(),
        4,
        "every handler ran its flush hook: {at_flush:?}"
    );
    for (name, seen) in &at_flush {
        assert_eq!(
            seen.first_out_of_order, None,
            "{name}: expected/got out of order"
        );
    }
    assert_eq!(delivered, [n; 4]);
    assert_eq!(lost, 0);
    assert_eq!(live.len(), 4);
    for (_, stats) in &live {
        assert_eq!(stats.delivered, n, "{}", stats.name);
        assert_eq!(stats.dropped, 0, "{}", stats.name);
        assert_eq!(stats.panicked, 0, "{}", stats.name);
    }

    let report = d.shutdown(Duration::from_secs(600)).await;

    // At shutdown: every handler was closed having seen every event in order, and the report
    // agrees.
    let seen = out.lock().unwrap().clone();
    let out_of_order: u64 = seen.values().map(|s| s.out_of_order).sum();
    println!("lossless at shutdown: {seen:?}");
    assert!(
        seen.values().all(|s| s.closed),
        "every handler was closed: {seen:?}"
    );
    assert_eq!(seen.len(), 4);
    assert!(seen.values().all(|s| s.handled == n));
    assert_eq!(out_of_order, 0);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.handlers.len(), 4);
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
