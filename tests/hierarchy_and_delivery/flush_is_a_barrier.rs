//! `flush().await` is a barrier: when it returns, every record emitted before the call has been
//! handled by every handler, and each handler's flush hook ran after those records.

use std::time::Duration;

use crate::support::recorder::{Recorder, Seen, Seq};
use spanbus::{Dispatcher, Handler, HandlerOptions, Record, Registry};

/// A recorder that gives its thread away on every record, so it lags behind the others.
#[derive(Clone, Default)]
struct Sluggish(Recorder);

impl Handler for Sluggish {
    async fn handle(&mut self, record: &Record) {
        tokio::task::yield_now().await;
        self.0.handle(record).await;
    }

    async fn flush(&mut self) {
        tokio::time::sleep(Duration::from_millis(5)).await; // a slow flush, still awaited
        self.0.flush().await;
    }
}

/// Checks that `seen` holds exactly the numbers `0..n` and ends with a flush after them.
fn assert_flushed_after(seen: &[Seen], n: u64) {
    let last_record = seen
        .iter()
        .rposition(|s| matches!(s, Seen::Record(_)))
        .expect("records");
    let last_flush = seen.iter().rposition(|s| *s == Seen::Flush);
    assert!(
        last_flush.is_some_and(|f| f > last_record),
        "a flush hook ran after the last record"
    );
    let seqs: Vec<u64> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Record(r) => r.seq.map(|(_, n)| n),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_flush_every_handler_has_handled_every_earlier_record() {
    let d = Dispatcher::builder("barrier")
        .capacity(64.try_into().unwrap())
        .build()
        .unwrap();
    let (fast, slow, lossy) = (Recorder::new(), Sluggish::default(), Recorder::new());
    d.add_handler(fast.clone()).unwrap();
    d.add_handler(slow.clone()).unwrap();
    d.add_handler_with(lossy.clone(), HandlerOptions::new().lossy(1 << 20))
        .unwrap();
    for round in 0..5u64 {
        for n in round * 1_000..(round + 1) * 1_000 {
            if n % 2 == 0 {
                d.event(Seq { emitter: 0, n }).await.unwrap();
            } else {
                d.event(Seq { emitter: 0, n }).now().unwrap();
            }
        }
        d.flush().await;
        // No waiting here: the barrier must already hold.
        let n = (round + 1) * 1_000;
        assert_flushed_after(&fast.seen(), n);
        assert_flushed_after(&slow.0.seen(), n);
        assert_flushed_after(&lossy.seen(), n);
    }
    let flushes = slow.0.seen().iter().filter(|s| **s == Seen::Flush).count();
    assert_eq!(flushes, 5, "one flush hook call per flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_a_child_waits_for_its_ancestors_handlers() {
    let reg = Registry::new();
    let app = reg.get_dispatcher("app").unwrap();
    let leaf = reg.get_dispatcher("app.a.b").unwrap();
    let slow = Sluggish::default();
    app.add_handler(slow.clone()).unwrap();
    for n in 0..2_000 {
        leaf.event(Seq { emitter: 0, n }).await.unwrap();
    }
    leaf.flush().await;
    assert_flushed_after(&slow.0.seen(), 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_flush_covers_every_dispatcher() {
    let _process_wide = crate::support::process_wide().await;
    let reg = Registry::new();
    let names = ["one", "two", "two.sub", "three.x"];
    let mut recorders = Vec::new();
    for name in names {
        let slow = Sluggish::default();
        reg.get_dispatcher(name)
            .unwrap()
            .add_handler(slow.clone())
            .unwrap();
        recorders.push(slow);
    }
    let root = Sluggish::default();
    reg.root().add_handler(root.clone()).unwrap();
    for name in names {
        let d = reg.get_dispatcher(name).unwrap();
        for n in 0..500 {
            d.event(Seq { emitter: 0, n }).now().unwrap();
        }
    }
    reg.flush().await;
    // `two` also gets `two.sub`'s records; the root gets everyone's.
    let expected = [500, 1_000, 500, 500];
    for (r, n) in recorders.iter().zip(expected) {
        assert_eq!(r.0.records().len(), n);
        assert_eq!(r.0.seen().last(), Some(&Seen::Flush));
    }
    assert_eq!(root.0.records().len(), 2_000);
    assert_eq!(root.0.seen().last(), Some(&Seen::Flush));

    // The process-wide flush returns at once: no other test's handler on the global registry
    // is busy while this test holds the lock (one that ran before left only gone handlers).
    tokio::time::timeout(Duration::from_secs(5), spanbus::flush())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_all_return_and_flush_without_handlers_is_immediate() {
    let d = Dispatcher::new("many").unwrap();
    tokio::time::timeout(Duration::from_secs(5), d.flush())
        .await
        .unwrap();
    let slow = Sluggish::default();
    d.add_handler(slow.clone()).unwrap();
    for n in 0..300 {
        d.event(Seq { emitter: 0, n }).now().unwrap();
    }
    let flushes: Vec<_> = (0..8)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.flush().await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(flushes))
        .await
        .unwrap();
    d.flush().await;
    assert_flushed_after(&slow.0.seen(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_during_concurrent_emission_covers_every_emit_completed_before_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const EMITTERS: usize = 6;
    let reg = Registry::new();
    let leaf = reg.get_dispatcher("a.b").unwrap();
    let top = reg.get_dispatcher("a").unwrap();
    let seen: Vec<Arc<AtomicU64>> = (0..EMITTERS).map(|_| Arc::default()).collect();

    /// Counts, per emitter, the highest number seen + 1 (numbers arrive in order).
    struct Progress(Vec<Arc<AtomicU64>>);
    impl Handler for Progress {
        async fn handle(&mut self, record: &Record) {
            if let Some(s) = record.event::<Seq>() {
                self.0[s.emitter as usize].store(s.n + 1, Ordering::SeqCst);
            }
        }
    }
    top.add_handler_with(
        Progress(seen.clone()),
        HandlerOptions::new().name("progress"),
    )
    .unwrap();
    leaf.add_handler(Sluggish::default()).unwrap();

    let done: Vec<Arc<AtomicU64>> = (0..EMITTERS).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..EMITTERS)
        .map(|e| {
            let (leaf, done, stop) = (leaf.clone(), Arc::clone(&done[e]), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let event = Seq {
                        emitter: e as u64,
                        n,
                    };
                    if n % 2 == 0 {
                        leaf.event(event).await.unwrap();
                    } else {
                        leaf.event(event).now().unwrap();
                    }
                    n += 1;
                    done.store(n, Ordering::SeqCst);
                    if n % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for round in 0..20 {
        let before: Vec<u64> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
        if round % 2 == 0 {
            leaf.flush().await;
        } else {
            reg.flush().await;
        }
        for (e, (b, s)) in before.iter().zip(&seen).enumerate() {
            let s = s.load(Ordering::SeqCst);
            assert!(
                s >= *b,
                "round {round}: emitter {e} completed {b} before flush, {s} handled"
            );
        }
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
}
