//! Reliability matrix, row "a handler hangs at shutdown" (SPEC §4): `shutdown(deadline)` must
//! return by the deadline plus 10%, name the hanging handler as timed out, and still close the
//! healthy handlers with everything delivered.
//!
//! Two ways to hang are covered: in `close()` (after every record was handled) and in
//! `handle()` (with records still queued behind the stuck one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use spanbus::{Dispatcher, Event, Handler, HandlerOptions, Record};

#[derive(Serialize)]
struct Seq(u64);

impl Event for Seq {
    const NAME: &'static str = "Seq";
}

#[derive(Clone, Copy, PartialEq)]
enum Hang {
    InClose,
    InHandle { at: u64 },
}

struct Hangs(Hang);

impl Handler for Hangs {
    async fn handle(&mut self, record: &Record) {
        if let (Hang::InHandle { at }, Some(Seq(n))) = (self.0, record.event::<Seq>())
            && *n == at
        {
            std::future::pending::<()>().await;
        }
    }

    async fn close(&mut self) {
        if self.0 == Hang::InClose {
            std::future::pending::<()>().await;
        }
    }
}

struct Healthy(Arc<AtomicU64>);

impl Handler for Healthy {
    async fn handle(&mut self, _: &Record) {}

    async fn close(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn hang_at_shutdown(hang: Hang, label: &str) {
    const N: u64 = 10_000;
    let deadline = Duration::from_millis(1000);
    let d = Dispatcher::new("reliability.hang").unwrap();
    let closed = Arc::new(AtomicU64::new(0));
    // The hanging handler is attached first, so shutdown waits on it before the others.
    d.add_handler_with(Hangs(hang), HandlerOptions::new().name("hangs"))
        .unwrap();
    for i in 0..2 {
        d.add_handler_with(
            Healthy(Arc::clone(&closed)),
            HandlerOptions::new().name(format!("healthy-{i}")),
        )
        .unwrap();
    }
    // Sync emission never waits, even if the hanging handler holds the channel full.
    for i in 0..N {
        d.event(Seq(i)).now().unwrap();
    }

    let start = Instant::now();
    let report = d.shutdown(deadline).await;
    let took = start.elapsed();

    let timed_out: Vec<&str> = report.timed_out().map(|h| h.stats.name.as_str()).collect();
    let healthy_delivered: Vec<u64> = report
        .handlers
        .iter()
        .filter(|h| !h.timed_out)
        .map(|h| h.stats.delivered)
        .collect();
    println!(
        "hang ({label}): deadline={}ms returned_after={}ms timed_out={timed_out:?} \
         healthy_delivered={healthy_delivered:?} healthy_closed={}",
        deadline.as_millis(),
        took.as_millis(),
        closed.load(Ordering::SeqCst),
    );

    assert!(
        took <= deadline + deadline / 10,
        "shutdown took {took:?} for a deadline of {deadline:?}"
    );
    assert_eq!(timed_out, ["hangs"]);
    assert_eq!(healthy_delivered, [N, N]);
    assert_eq!(closed.load(Ordering::SeqCst), 2);
    assert!(!report.is_clean());
    // Shutdown is idempotent: a second call returns the same report at once.
    let again = d.shutdown(deadline).await;
    assert_eq!(again, report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_hanging_in_close_is_named_and_shutdown_keeps_its_deadline() {
    hang_at_shutdown(Hang::InClose, "in close").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_hanging_in_handle_is_named_and_shutdown_keeps_its_deadline() {
    hang_at_shutdown(Hang::InHandle { at: 5_000 }, "in handle").await;
}
