//! Lossless delivery under load: 1,000,000 events to four handlers on one dispatcher, one of
//! them slowed; every handler receives every event, in emit order, and nothing is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use spanbus::{Dispatcher, Handler, HandlerOptions, Record};

#[derive(Serialize)]
struct Numbered {
    n: u64,
    label: &'static str,
}

impl spanbus::Event for Numbered {
    const NAME: &'static str = "Numbered";
}

/// What a checker found: how many it received, and the first out-of-order number.
#[derive(Debug, Default, Clone)]
struct Tally {
    received: u64,
    out_of_order: Option<(u64, u64)>,
}

/// Checks that numbers arrive as 0, 1, 2, ...; the slow one does extra work every `slow_every`.
struct Checker {
    tally: Arc<Mutex<Tally>>,
    next: u64,
    out_of_order: Option<(u64, u64)>,
    slow_every: Option<u64>,
    burn: u64,
    progress: Arc<AtomicU64>,
}

impl Handler for Checker {
    async fn handle(&mut self, record: &Record) {
        let Some(e) = record.event::<Numbered>() else {
            return;
        };
        if e.n != self.next && self.out_of_order.is_none() {
            self.out_of_order = Some((self.next, e.n));
        }
        self.next = e.n + 1;
        self.progress.store(self.next, Ordering::Relaxed);
        if let Some(every) = self.slow_every
            && e.n % every == 0
        {
            // Extra work, then give the thread away: this handler falls behind the others.
            for i in 0..20_000u64 {
                self.burn = std::hint::black_box(self.burn.wrapping_mul(31).wrapping_add(i));
            }
            tokio::task::yield_now().await;
        }
    }

    async fn flush(&mut self) {
        let mut t = self.tally.lock().unwrap();
        t.received = self.next;
        t.out_of_order = self.out_of_order;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_reach_four_handlers_in_order_with_one_slowed() {
    const N: u64 = 1_000_000;
    let d = Dispatcher::new("load").unwrap();
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..4).map(|_| Arc::default()).collect();
    let slow_progress = Arc::new(AtomicU64::new(0));
    for (i, tally) in tallies.iter().enumerate() {
        let checker = Checker {
            tally: Arc::clone(tally),
            next: 0,
            out_of_order: None,
            slow_every: (i == 3).then_some(100),
            burn: 0,
            progress: if i == 3 {
                Arc::clone(&slow_progress)
            } else {
                Arc::default()
            },
        };
        d.add_handler_with(checker, HandlerOptions::new().name(format!("h{i}")))
            .unwrap();
    }

    let start = Instant::now();
    let mut max_lag = 0;
    for n in 0..N {
        d.event(Numbered { n, label: "load" }).await.unwrap();
        if n % 1024 == 0 {
            // How far the slowed handler is behind the emitter.
            max_lag = max_lag.max(n + 1 - slow_progress.load(Ordering::Relaxed).min(n + 1));
        }
    }
    let emitted_in = start.elapsed();
    d.flush().await;
    let elapsed = start.elapsed();

    // The bound holds: the emitter waited for the slow handler instead of running away.
    assert!(
        max_lag <= 2 * spanbus::DEFAULT_CAPACITY as u64,
        "the slowed handler fell {max_lag} records behind"
    );
    let delivered: Vec<u64> = tallies.iter().map(|t| t.lock().unwrap().received).collect();
    let lost: u64 = delivered.iter().map(|d| N - d).sum();
    println!(
        "lossless: emitted={N} delivered={delivered:?} lost={lost} \
         (slowed handler at most {max_lag} behind; emit {emitted_in:.2?}, end to end {elapsed:.2?})"
    );
    for t in &tallies {
        let t = t.lock().unwrap();
        assert_eq!(t.out_of_order, None, "expected/got out of order");
    }
    assert_eq!(delivered, [N; 4]);
    assert_eq!(lost, 0);
    for (_, stats) in d.handler_stats() {
        assert_eq!(stats.delivered, N, "{}", stats.name);
        assert_eq!(stats.dropped, 0, "{}", stats.name);
        assert_eq!(stats.panicked, 0, "{}", stats.name);
    }
}
