//! A handler that is busy is woken once per batch, not once per record (it "lingers"), but no
//! record waits for a batch that never fills: a few records emitted after a burst reach the
//! handler by themselves, within the lingering delay (about a millisecond), with no flush. On a
//! runtime without tokio's time driver, handlers do not linger and still get every record.

use std::time::{Duration, Instant};

use crate::support::recorder::Seq;
use spanbus::{Dispatcher, EventHandler, Record};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Forwards each event's number as it handles it.
struct Forward(UnboundedSender<u64>);

impl EventHandler for Forward {
    async fn handle(&mut self, record: &Record) {
        if let Some(seq) = record.event::<Seq>() {
            let _ = self.0.send(seq.n);
        }
    }
}

fn forwarding(name: &str) -> (Dispatcher, UnboundedReceiver<u64>) {
    let d = Dispatcher::new(name).expect("a valid name");
    let (tx, rx) = unbounded_channel();
    d.add_event_handler(Forward(tx)).expect("a runtime");
    (d, rx)
}

async fn emit(d: &Dispatcher, ns: std::ops::Range<u64>) {
    for n in ns {
        d.event(Seq { emitter: 0, n }).await.expect("open");
    }
}

/// Receives `ns`, in order, each within `within`.
async fn expect(rx: &mut UnboundedReceiver<u64>, ns: std::ops::Range<u64>, within: Duration) {
    for n in ns {
        let got = tokio::time::timeout(within, rx.recv()).await;
        assert_eq!(
            got,
            Ok(Some(n)),
            "record {n} reached the handler without a flush"
        );
    }
}

/// Emits `ns` and receives them, with no flush; returns how long that took.
async fn deliver(
    d: &Dispatcher,
    rx: &mut UnboundedReceiver<u64>,
    ns: std::ops::Range<u64>,
) -> Duration {
    let start = Instant::now();
    emit(d, ns.clone()).await;
    expect(rx, ns, Duration::from_secs(5)).await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_records_after_a_burst_arrive_within_the_lingering_delay() {
    let (d, mut rx) = forwarding("linger");
    // A quiet handler is woken by the first record at once.
    deliver(&d, &mut rx, 0..1).await;
    for round in 0..20u64 {
        let base = round * 1_000;
        // A burst: the handler lingers after it, waiting for a batch of 256.
        deliver(&d, &mut rx, base + 1..base + 600).await;
        // Three more, far fewer than a batch, then nothing: the timer delivers them, in about
        // a millisecond plus the timer's resolution (the bound is generous for a loaded
        // machine).
        let waited = deliver(&d, &mut rx, base + 600..base + 603).await;
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
        deliver(&d, &mut rx, base + 603..base + 1_001).await;
    }
}

#[test]
fn on_a_runtime_without_a_time_driver_handlers_get_every_record_without_a_flush() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime without timers");
    runtime.block_on(async {
        let (d, mut rx) = forwarding("no_timer");
        for round in 0..20u64 {
            emit(&d, round * 100..(round + 1) * 100).await;
            for n in round * 100..(round + 1) * 100 {
                // No `tokio::time` here: this runtime has no timer.
                assert_eq!(rx.recv().await, Some(n));
            }
        }
    });
}
