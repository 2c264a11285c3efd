//! Isolation: a handler that panics on every 1,000th record neither loses records for the other
//! handlers nor slows or breaks emitters; its panics are counted with the first message, and it
//! keeps receiving the records after each panic.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seq};
use spanbus::{Dispatcher, Handler, HandlerOptions, Record};

/// Keeps the test output readable: the deliberate panics are not printed.
fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.starts_with("deliberate") {
                default(info);
            }
        }));
    });
}

/// Panics on every 1,000th `Seq` of each emitter (n = 999, 1999, ...); records the others.
struct Flaky {
    handled: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Handler for Flaky {
    async fn handle(&mut self, record: &Record) {
        let Seq { emitter, n } = *record.event::<Seq>().unwrap();
        if (n + 1) % 1_000 == 0 {
            panic!("deliberate panic at record {n} of emitter {emitter}");
        }
        self.handled.lock().unwrap().push((emitter, n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_isolated_counted_and_the_handler_goes_on() {
    quiet_deliberate_panics();
    const N: u64 = 100_000;
    let d = Dispatcher::builder("flaky")
        .capacity(256.try_into().unwrap())
        .build()
        .unwrap();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let flaky = d
        .add_handler_with(
            Flaky {
                handled: Arc::clone(&handled),
            },
            HandlerOptions::new().name("flaky"),
        )
        .unwrap();
    let (a, b) = (Recorder::new(), Recorder::new());
    d.add_handler(a.clone()).unwrap();
    d.add_handler(b.clone()).unwrap();

    // Two emitter tasks, each numbering its own records 0..N/2.
    let emitters: Vec<_> = (0..2u64)
        .map(|emitter| {
            let d = d.clone();
            tokio::spawn(async move {
                for n in 0..N / 2 {
                    if emitter == 0 {
                        d.event(Seq { emitter, n }).await.unwrap();
                    } else {
                        // A sync emitter on a runtime thread that outruns the lossless
                        // handlers by the hard cap is told so (the record is dropped and
                        // counted); this one yields and sends it again, losing nothing.
                        while let Err(e) = d.event(Seq { emitter, n }).now() {
                            assert!(matches!(e, spanbus::EmitError::Overflow { .. }), "{e}");
                            tokio::task::yield_now().await;
                        }
                    }
                }
            })
        })
        .collect();
    for e in emitters {
        // Emitters are unaffected: each finishes, and none panicked.
        tokio::time::timeout(Duration::from_secs(60), e)
            .await
            .unwrap()
            .unwrap();
    }
    d.flush().await;

    let expected: Vec<u64> = (0..N / 2).collect();
    for r in [&a, &b] {
        let recs = r.records();
        for emitter in 0..2 {
            let got: Vec<u64> = recs
                .iter()
                .filter_map(|r| r.seq.filter(|s| s.0 == emitter).map(|s| s.1))
                .collect();
            assert!(got == expected, "emitter {emitter}: {} records", got.len());
        }
    }
    let survivors: Vec<u64> = (0..N / 2).filter(|n| (n + 1) % 1_000 != 0).collect();
    let handled = handled.lock().unwrap().clone();
    for emitter in 0..2 {
        let got: Vec<u64> = handled
            .iter()
            .filter(|(e, _)| *e == emitter)
            .map(|(_, n)| *n)
            .collect();
        assert!(got == survivors, "it keeps receiving after each panic");
    }

    let stats = d
        .handler_stats()
        .into_iter()
        .find(|(id, _)| *id == flaky)
        .unwrap()
        .1;
    println!(
        "panicking handler: records={N} panicked={} delivered={} first={:?}",
        stats.panicked, stats.delivered, stats.first_panic
    );
    assert_eq!(stats.panicked, N / 1_000);
    assert_eq!(stats.delivered, N - N / 1_000);
    let first = stats.first_panic.unwrap();
    assert!(
        first.starts_with("deliberate panic at record 999 of emitter"),
        "{first}"
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    let line = report.handlers.iter().find(|h| h.id == flaky).unwrap();
    assert_eq!(line.stats.panicked, N / 1_000);
    assert!(!line.timed_out);
    assert!(!report.is_clean(), "panics make a report unclean");
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
