//! Reliability matrix, row "lossy mode under a stalled handler" (SPEC §4): a lossy handler
//! stops handling while the emitter keeps going. The emitter must never wait for it;
//! `delivered + dropped == emitted` must hold exactly; and the handler must be told, in band,
//! how many records it missed — checked here by requiring every gap in the sequence it sees to
//! be announced by [`Handler::missed`] with exactly the gap's size, just before the gap.
//!
//! Default size 200,000 events; the full size (2,000,000) runs with `--ignored`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use spanbus::{Dispatcher, Event, Handler, HandlerOptions, Record};
use tokio::sync::Semaphore;

#[derive(Serialize)]
struct Seq(u64);

impl Event for Seq {
    const NAME: &'static str = "Seq";
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    handled: u64,
    missed_calls: u64,
    missed_total: u64,
    /// Records whose number is not the expected one after accounting for announced gaps.
    unannounced_gaps: u64,
}

/// Stalls on its first record until the test releases it, then checks the sequence.
struct Stalls {
    gate: Arc<Semaphore>,
    stalled: Arc<Semaphore>,
    expected: u64,
    seen: Seen,
    out: Arc<Mutex<Option<Seen>>>,
}

impl Handler for Stalls {
    async fn handle(&mut self, record: &Record) {
        let Some(Seq(n)) = record.event::<Seq>() else {
            return;
        };
        if self.seen.handled == 0 {
            // Tell the test we are stuck, then wait for the gate: a real condition, no sleep.
            self.stalled.add_permits(1);
            self.gate.acquire().await.expect("gate open").forget();
        }
        if *n != self.expected {
            self.seen.unannounced_gaps += 1;
        }
        self.expected = n + 1;
        self.seen.handled += 1;
    }

    async fn missed(&mut self, count: u64) {
        self.seen.missed_calls += 1;
        self.seen.missed_total += count;
        self.expected += count;
    }

    async fn close(&mut self) {
        *self.out.lock().unwrap() = Some(self.seen);
    }
}

async fn lossy_under_stall(n: u64, capacity: usize) {
    let d = Dispatcher::new("reliability.lossy").unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let stalled = Arc::new(Semaphore::new(0));
    let out = Arc::new(Mutex::new(None));
    d.add_handler_with(
        Stalls {
            gate: Arc::clone(&gate),
            stalled: Arc::clone(&stalled),
            expected: 0,
            seen: Seen::default(),
            out: Arc::clone(&out),
        },
        HandlerOptions::new().name("stalled").lossy(capacity),
    )
    .unwrap();

    // Half the events while the handler is (about to be) stuck on the first one…
    for i in 0..n / 2 {
        d.event(Seq(i)).await.expect("emit");
    }
    // …make sure it really is stuck, then the other half. The emitter never waits for a lossy
    // handler, so this completes while the handler is still blocked.
    let _ = stalled.acquire().await.unwrap();
    for i in n / 2..n {
        d.event(Seq(i)).await.expect("emit");
    }
    let blocked_stats = d.handler_stats()[0].1.clone();
    gate.add_permits(1);
    d.flush().await;
    let report = d.shutdown(Duration::from_secs(60)).await;

    let seen = out.lock().unwrap().expect("handler closed");
    let stats = &report.handlers[0].stats;
    println!(
        "lossy: emitted={n} capacity={capacity} delivered={} dropped={} delivered+dropped={} \
         missed_calls={} missed_total={} unannounced_gaps={} delivered_while_stalled={}",
        stats.delivered,
        stats.dropped,
        stats.delivered + stats.dropped,
        seen.missed_calls,
        seen.missed_total,
        seen.unannounced_gaps,
        blocked_stats.delivered,
    );

    assert_eq!(stats.delivered + stats.dropped, n, "exact accounting");
    assert_eq!(stats.delivered, seen.handled);
    assert_eq!(stats.dropped, seen.missed_total, "every drop was announced");
    assert_eq!(seen.unannounced_gaps, 0, "no silent gap");
    assert!(stats.dropped > 0, "the stall must have caused drops");
    assert!(
        stats.delivered <= capacity as u64 + 1024 + 1,
        "a stalled lossy handler keeps at most its capacity (plus the batch in hand): {stats:?}"
    );
    assert_eq!(blocked_stats.delivered, 0, "the handler was stalled");
    assert!(!report.handlers[0].timed_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_are_counted_exactly_and_announced() {
    lossy_under_stall(200_000, 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: run with --ignored"]
async fn drops_are_counted_exactly_and_announced_full_size() {
    lossy_under_stall(2_000_000, 1024).await;
}
