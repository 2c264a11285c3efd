//! Lossy delivery under a stalled handler: emitters never wait for it, delivered + dropped ==
//! emitted exactly, the handler is told in-band (before the records after each gap) how many it
//! missed, and a lossless handler on the same dispatcher still gets everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seen, Seq, wait_until};
use spanbus::{Dispatcher, Handler, HandlerOptions, Record};
use tokio::sync::Notify;

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
async fn delivered_plus_dropped_equals_emitted_and_the_handler_is_told_in_band() {
    const N: u64 = 20_000;
    const CAP: usize = 32;
    let d = Dispatcher::new("lossy").unwrap();
    let lossless = Recorder::new();
    d.add_handler(lossless.clone()).unwrap();
    let lossy_log = Recorder::new();
    let gate = Arc::new(Notify::new());
    let stalled = Arc::new(AtomicBool::new(false));
    let lossy_id = d
        .add_handler_with(
            Stalled {
                inner: lossy_log.clone(),
                gate: Arc::clone(&gate),
                stalled: Arc::clone(&stalled),
                first: true,
            },
            HandlerOptions::new().name("stalled").lossy(CAP),
        )
        .unwrap();

    d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || stalled.load(Ordering::SeqCst)).await,
        "the lossy handler stalls on its first record"
    );
    // Every emit completes while the lossy handler is stalled: it never holds emitters up.
    tokio::time::timeout(Duration::from_secs(60), async {
        for n in 1..N {
            d.event(Seq { emitter: 0, n }).await.unwrap();
        }
    })
    .await
    .expect("emitters never wait for a stalled lossy handler");
    assert!(
        stalled.load(Ordering::SeqCst),
        "still stalled after all emits"
    );

    gate.notify_one();
    d.flush().await;

    let stats = d
        .handler_stats()
        .into_iter()
        .find(|(id, _)| *id == lossy_id)
        .unwrap()
        .1;
    let (records, missed) = check_gaps(&lossy_log.seen());
    println!(
        "lossy: emitted={N} delivered={} dropped={} missed_reported={missed} capacity={CAP}",
        stats.delivered, stats.dropped
    );
    assert_eq!(stats.delivered + stats.dropped, N);
    assert_eq!(records, stats.delivered);
    assert_eq!(
        missed, stats.dropped,
        "missed(n) calls sum to the drop count"
    );
    assert!(
        stats.dropped >= N - 1 - 2 * CAP as u64 - 1024,
        "it really fell behind"
    );

    assert_eq!(lossless.seqs(), (0..N).collect::<Vec<_>>());
    let report = d.shutdown(Duration::from_secs(5)).await;
    let line = report.handlers.iter().find(|h| h.id == lossy_id).unwrap();
    assert_eq!(line.stats.dropped, stats.dropped);
    assert!(!report.is_clean(), "a report with drops is not clean");
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
    let stats = &parent.handler_stats()[0].1;
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
    assert_eq!(d.handler_stats()[0].1.dropped, 0);
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
        .handler_stats()
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
