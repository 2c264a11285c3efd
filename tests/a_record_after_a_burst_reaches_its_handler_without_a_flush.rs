//! After a burst, a handler task parks lazily (pushes do not wake it until it is a batch
//! behind); the linger must still deliver a lone record that follows, without any flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use spanbus::{Dispatcher, Event, EventHandler, Record};

#[derive(Serialize)]
struct Tick(u64);

impl Event for Tick {
    const NAME: &'static str = "Tick";
}

struct Count(Arc<AtomicU64>);

impl EventHandler for Count {
    async fn handle(&mut self, _: &Record) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Waits (without flushing) until `seen` reaches `want`, for at most 5 s.
async fn wait_for(seen: &AtomicU64, want: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if seen.load(Ordering::Acquire) >= want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_after_a_burst_reaches_its_handler_without_a_flush() {
    let d = Dispatcher::new("burst").unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    d.add_event_handler(Count(Arc::clone(&seen))).unwrap();

    for i in 0..1000 {
        d.event(Tick(i)).await.unwrap();
    }
    assert!(
        wait_for(&seen, 1000).await,
        "burst: saw {}",
        seen.load(Ordering::Acquire)
    );

    // The handler just handled a batch, so it is parked lazily: this push alone does not
    // wake it.
    for round in 1..=3 {
        d.event(Tick(1000 + round)).now().unwrap();
        let want = 1000 + round;
        assert!(
            wait_for(&seen, want).await,
            "lone record {round}: saw {}",
            seen.load(Ordering::Acquire)
        );
    }
    d.shutdown(Duration::from_secs(5)).await;
}
