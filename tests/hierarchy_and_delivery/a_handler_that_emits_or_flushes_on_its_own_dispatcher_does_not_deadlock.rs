//! A handler may emit (with `.await`) or flush on the dispatcher it listens to. Waiting for
//! room there would wait on the handler itself; spanbus makes such emits behave like `.now()`
//! and skips the handler's own channel in a flush, so neither deadlocks and nothing is lost.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use spanbus::{Dispatcher, Event, EventHandler, Record};

#[derive(Serialize)]
struct Ping(u64);
impl Event for Ping {
    const NAME: &'static str = "Ping";
}

#[derive(Serialize)]
struct Echo(u64);
impl Event for Echo {
    const NAME: &'static str = "Echo";
}

/// Echoes every ping back onto its own dispatcher, then flushes it.
struct Echoer {
    dispatcher: Dispatcher,
}

impl EventHandler for Echoer {
    async fn handle(&mut self, record: &Record) {
        if let Some(Ping(n)) = record.event() {
            self.dispatcher.event(Echo(*n)).await.unwrap();
            self.dispatcher.flush().await;
        }
    }
}

struct CountEchoes(Arc<AtomicU64>);

impl EventHandler for CountEchoes {
    async fn handle(&mut self, record: &Record) {
        if record.event::<Echo>().is_some() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_on_a_tiny_lossless_channel_complete_and_none_is_lost() {
    let d = Dispatcher::builder("echo")
        .capacity(NonZeroUsize::new(2).unwrap())
        .build()
        .unwrap();
    let echoes = Arc::new(AtomicU64::new(0));
    d.add_event_handler(Echoer {
        dispatcher: d.clone(),
    })
    .unwrap();
    d.add_event_handler(CountEchoes(Arc::clone(&echoes)))
        .unwrap();

    let pings = 500;
    let run = async {
        for n in 0..pings {
            d.event(Ping(n)).await.unwrap();
        }
        d.flush().await;
        // Echoes emitted by the last handled pings are handled by the next flush.
        d.flush().await;
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("emitting and flushing finished: no handler waited on itself");
    assert_eq!(echoes.load(Ordering::Relaxed), pings);
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}
