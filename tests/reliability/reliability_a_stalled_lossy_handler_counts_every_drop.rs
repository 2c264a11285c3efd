//! Reliability matrix, row "lossy mode under a stalled handler" (SPEC §4): a lossy handler
//! stops handling while the emitter keeps going. The emitter must never wait for it;
//! `delivered + dropped == emitted` must hold exactly; the handler must be told, in band,
//! how many records it missed — checked here by requiring every gap in the sequence it sees to
//! be announced by [`Handler::missed`] with exactly the gap's size, just before the gap — and a
//! lossless handler on the same dispatcher must still get everything. Also: sync emits from a
//! child dispatcher, a lossy handler that keeps up, and one that falls behind concurrent
//! emitters.
//!
//! Default sizes 20,000 events at a lossy capacity of 32 and 200,000 at 1,024; the full size
//! (2,000,000) runs with `--ignored`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seen, Seq, wait_until};
use spanbus::{Dispatcher, Handler, HandlerOptions, Record};
use tokio::sync::{Notify, Semaphore};

/// What the stalled handler of the matrix row saw, checked as it went: the row's sizes are too
/// large to keep every record.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    handled: u64,
    missed_calls: u64,
    missed_total: u64,
    /// `missed(0)` calls: noise, never expected.
    missed_zero: u64,
    /// Records whose number is not the expected one after accounting for announced gaps.
    unannounced_gaps: u64,
}

/// Stalls on its first record until the test releases it, then checks the sequence.
struct Stalls {
    gate: Arc<Semaphore>,
    stalled: Arc<Semaphore>,
    /// Set while it holds its first record at the gate.
    holding: Arc<AtomicBool>,
    expected: u64,
    tally: Tally,
    out: Arc<Mutex<Option<Tally>>>,
}

impl Handler for Stalls {
    async fn handle(&mut self, record: &Record) {
        let Some(&Seq { n, .. }) = record.event::<Seq>() else {
            return;
        };
        if self.tally.handled == 0 {
            // Tell the test we are stuck, then wait for the gate: a real condition, no sleep.
            self.holding.store(true, Ordering::SeqCst);
            self.stalled.add_permits(1);
            self.gate.acquire().await.expect("gate open").forget();
            self.holding.store(false, Ordering::SeqCst);
        }
        if n != self.expected {
            self.tally.unannounced_gaps += 1;
        }
        self.expected = n + 1;
        self.tally.handled += 1;
    }

    async fn missed(&mut self, count: u64) {
        self.tally.missed_calls += 1;
        self.tally.missed_zero += u64::from(count == 0);
        self.tally.missed_total += count;
        self.expected += count;
    }

    async fn close(&mut self) {
        *self.out.lock().unwrap() = Some(self.tally);
    }
}

/// A lossless handler that counts the events and those out of order; publishes at close.
struct Lossless {
    next: u64,
    out_of_order: u64,
    out: Arc<Mutex<Option<(u64, u64)>>>,
}

impl Handler for Lossless {
    async fn handle(&mut self, record: &Record) {
        if let Some(&Seq { n, .. }) = record.event::<Seq>() {
            self.out_of_order += u64::from(n != self.next);
            self.next = n + 1;
        }
    }

    async fn close(&mut self) {
        *self.out.lock().unwrap() = Some((self.next, self.out_of_order));
    }
}

async fn lossy_under_stall(n: u64, capacity: usize) {
    let d = Dispatcher::new("reliability.lossy").unwrap();
    let lossless = Arc::new(Mutex::new(None));
    d.add_handler(Lossless {
        next: 0,
        out_of_order: 0,
        out: Arc::clone(&lossless),
    })
    .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let stalled = Arc::new(Semaphore::new(0));
    let holding = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(None));
    let lossy = d
        .add_handler_with(
            Stalls {
                gate: Arc::clone(&gate),
                stalled: Arc::clone(&stalled),
                holding: Arc::clone(&holding),
                expected: 0,
                tally: Tally::default(),
                out: Arc::clone(&out),
            },
            HandlerOptions::new().name("stalled").lossy(capacity),
        )
        .unwrap();

    // The first event, and wait until the lossy handler is stuck on it...
    d.event(Seq { emitter: 0, n: 0 }).await.expect("emit");
    let _ = stalled.acquire().await.unwrap();
    // ...then all the others: every emit completes while it is stalled, it never holds
    // emitters up.
    tokio::time::timeout(Duration::from_secs(60), async {
        for i in 1..n {
            d.event(Seq { emitter: 0, n: i }).await.expect("emit");
        }
    })
    .await
    .expect("emitters never wait for a stalled lossy handler");
    assert!(
        holding.load(Ordering::SeqCst),
        "still stalled after all emits"
    );
    let stats_of_lossy = || {
        d.all_handler_stats()
            .into_iter()
            .find(|(id, _)| *id == lossy)
            .unwrap()
            .1
    };
    let blocked_stats = stats_of_lossy();
    gate.add_permits(1);
    d.flush().await;
    let live = stats_of_lossy();
    let report = d.shutdown(Duration::from_secs(60)).await;

    let tally = out.lock().unwrap().expect("handler closed");
    let line = report.handlers.iter().find(|h| h.id == lossy).unwrap();
    let stats = &line.stats;
    println!(
        "lossy: emitted={n} capacity={capacity} delivered={} dropped={} delivered+dropped={} \
         missed_calls={} missed_total={} unannounced_gaps={} delivered_while_stalled={}",
        stats.delivered,
        stats.dropped,
        stats.delivered + stats.dropped,
        tally.missed_calls,
        tally.missed_total,
        tally.unannounced_gaps,
        blocked_stats.delivered,
    );

    assert_eq!(blocked_stats.delivered, 0, "the handler was stalled");
    // After the flush, by the live stats...
    assert_eq!(live.delivered + live.dropped, n, "exact accounting");
    assert!(
        live.dropped >= n - 1 - 2 * capacity as u64 - 1024,
        "it really fell behind: {live:?}"
    );
    // ...and in the report, which agrees.
    assert_eq!(stats.dropped, live.dropped);
    assert_eq!(stats.delivered + stats.dropped, n, "exact accounting");
    assert_eq!(stats.delivered, tally.handled);
    assert_eq!(
        stats.dropped, tally.missed_total,
        "every drop was announced"
    );
    assert_eq!(tally.unannounced_gaps, 0, "no silent gap");
    assert_eq!(tally.missed_zero, 0, "missed(0) is noise");
    assert!(stats.dropped > 0, "the stall must have caused drops");
    assert!(
        stats.delivered <= capacity as u64 + 1024 + 1,
        "a stalled lossy handler keeps at most its capacity (plus the batch in hand): {stats:?}"
    );
    assert!(!line.timed_out);
    assert!(!report.is_clean(), "a report with drops is not clean");
    // The lossless handler beside it got everything, in order.
    assert_eq!(*lossless.lock().unwrap(), Some((n, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_are_counted_exactly_and_announced() {
    lossy_under_stall(20_000, 32).await;
    lossy_under_stall(200_000, 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: run with --ignored"]
async fn drops_are_counted_exactly_and_announced_full_size() {
    lossy_under_stall(2_000_000, 1024).await;
}

// ---- the smaller cases: each keeps every record it sees -----------------------------------------

/// A recorder that stalls on its first record until the gate opens.
struct Stalled {
    inner: Recorder,
    gate: Arc<Notify>,
    stalled: Arc<AtomicBool>,
    first: bool,
}

impl Handler for Stalled {
    async fn handle(&mut self, record: &Record) {
        if self.first {
            self.first = false;
            self.stalled.store(true, Ordering::SeqCst);
            self.gate.notified().await;
            self.stalled.store(false, Ordering::SeqCst);
        }
        self.inner.handle(record).await;
    }

    async fn missed(&mut self, count: u64) {
        self.inner.missed(count).await;
    }
}

/// Walks a lossy log: each record's number must follow the previous one plus whatever the
/// `missed` calls just before it announced. Returns (records, sum of missed).
fn check_gaps(seen: &[Seen]) -> (u64, u64) {
    let (mut records, mut missed_total, mut pending) = (0, 0, 0);
    let mut last: Option<u64> = None;
    for s in seen {
        match s {
            Seen::Missed(n) => {
                assert!(*n > 0, "missed(0) is noise");
                pending += n;
                missed_total += n;
            }
            Seen::Record(r) => {
                let (_, n) = r.seq.expect("only Seq events here");
                let expected = last.map_or(pending, |l| l + 1 + pending);
                assert_eq!(
                    n, expected,
                    "record {n} after {last:?} with {pending} announced"
                );
                last = Some(n);
                pending = 0;
                records += 1;
            }
            Seen::Flush | Seen::Close => {}
        }
    }
    (records, missed_total + pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_emits_from_a_child_dispatcher_are_counted_exactly_too() {
    const N: u64 = 5_000;
    let parent = Dispatcher::new("p").unwrap();
    let child = Dispatcher::builder("p.c").parent(&parent).build().unwrap();
    let log = Recorder::new();
    let gate = Arc::new(Notify::new());
    let stalled = Arc::new(AtomicBool::new(false));
    parent
        .add_handler_with(
            Stalled {
                inner: log.clone(),
                gate: Arc::clone(&gate),
                stalled: Arc::clone(&stalled),
                first: true,
            },
            HandlerOptions::new().lossy(8),
        )
        .unwrap();
    child.event(Seq { emitter: 1, n: 0 }).now().unwrap();
    assert!(wait_until(Duration::from_secs(10), || stalled.load(Ordering::SeqCst)).await);
    for n in 1..N {
        child.event(Seq { emitter: 1, n }).now().unwrap();
    }
    gate.notify_one();
    child.flush().await;
    let stats = &parent.all_handler_stats()[0].1;
    let (records, missed) = check_gaps(&log.seen());
    assert_eq!(stats.delivered + stats.dropped, N);
    assert_eq!((records, missed), (stats.delivered, stats.dropped));
    assert!(stats.dropped > 0);
}

#[tokio::test]
async fn a_lossy_handler_that_keeps_up_loses_nothing() {
    let d = Dispatcher::new("roomy").unwrap();
    let log = Recorder::new();
    d.add_handler_with(log.clone(), HandlerOptions::new().lossy(100_000))
        .unwrap();
    for n in 0..10_000 {
        d.event(Seq { emitter: 0, n }).await.unwrap();
    }
    d.flush().await;
    assert_eq!(log.seqs(), (0..10_000).collect::<Vec<_>>());
    assert!(!log.seen().iter().any(|s| matches!(s, Seen::Missed(_))));
    assert_eq!(d.all_handler_stats()[0].1.dropped, 0);
}

/// A recorder that gives its thread away on every record, so it keeps falling behind.
struct Slow(Recorder);

impl Handler for Slow {
    async fn handle(&mut self, record: &Record) {
        tokio::task::yield_now().await;
        self.0.handle(record).await;
    }

    async fn missed(&mut self, count: u64) {
        self.0.missed(count).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossy_handler_under_concurrent_emitters_accounts_for_every_record() {
    const EMITTERS: u64 = 4;
    const PER: u64 = 25_000;
    let d = Dispatcher::builder("busy")
        .capacity(128.try_into().unwrap())
        .build()
        .unwrap();
    let lossless = Recorder::new();
    d.add_handler(lossless.clone()).unwrap();
    let slow = Recorder::new();
    let slow_id = d
        .add_handler_with(Slow(slow.clone()), HandlerOptions::new().lossy(64))
        .unwrap();
    let tasks: Vec<_> = (0..EMITTERS)
        .map(|emitter| {
            let d = d.clone();
            tokio::spawn(async move {
                for n in 0..PER {
                    if n % 2 == 0 {
                        d.event(Seq { emitter, n }).await.unwrap();
                    } else {
                        d.event(Seq { emitter, n }).now().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    d.flush().await;
    let stats = d
        .all_handler_stats()
        .into_iter()
        .find(|(id, _)| *id == slow_id)
        .unwrap()
        .1;
    let seen = slow.seen();
    let missed: u64 = seen
        .iter()
        .map(|s| if let Seen::Missed(n) = s { *n } else { 0 })
        .sum();
    let records = slow.records();
    println!(
        "lossy, {EMITTERS} emitters: emitted={} delivered={} dropped={} missed_reported={missed}",
        EMITTERS * PER,
        stats.delivered,
        stats.dropped
    );
    assert_eq!(stats.delivered + stats.dropped, EMITTERS * PER);
    assert_eq!(records.len() as u64, stats.delivered);
    assert_eq!(missed, stats.dropped);
    // What it did receive is still in each emitter's order.
    for emitter in 0..EMITTERS {
        let ns: Vec<u64> = records
            .iter()
            .filter_map(|r| r.seq.filter(|s| s.0 == emitter).map(|s| s.1))
            .collect();
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "emitter {emitter} in order"
        );
    }
    assert_eq!(lossless.records().len() as u64, EMITTERS * PER);
}
