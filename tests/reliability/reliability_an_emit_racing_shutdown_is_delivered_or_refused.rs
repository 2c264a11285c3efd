//! Reliability matrix, row "emit after shutdown", at its edge: emitters that race
//! `shutdown()`. Each emit must either be delivered or return
//! [`EmitError::ShutDown`](spanbus::error::EmitError::ShutDown) — an `Ok` for a record no handler
//! ever sees would be a silent loss. Both `.await` and `.now()` emitters are checked, over
//! many rounds so the race is actually hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use spanbus::error::EmitError;
use spanbus::{Dispatcher, Event, Handler, Record};

#[derive(Serialize)]
struct Seq {
    emitter: u32,
    n: u64,
}

impl Event for Seq {
    const NAME: &'static str = "Seq";
}

/// Per emitter: how many records arrived, and whether they arrived as 0, 1, 2, …
struct PerEmitter(Arc<Mutex<HashMap<u32, (u64, bool)>>>);

impl Handler for PerEmitter {
    async fn handle(&mut self, record: &Record) {
        if let Some(Seq { emitter, n }) = record.event::<Seq>() {
            let mut map = self.0.lock().unwrap();
            let (count, in_order) = map.entry(*emitter).or_insert((0, true));
            *in_order &= *n == *count;
            *count += 1;
        }
    }
}

async fn one_round(round: u32) -> (u64, u64) {
    const EMITTERS: u32 = 4;
    let d = Dispatcher::builder("reliability.race")
        .capacity(std::num::NonZeroUsize::new(64).unwrap())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    d.add_handler(PerEmitter(Arc::clone(&seen))).unwrap();
    let total = Arc::new(AtomicU64::new(0));
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|emitter| {
            let (d, total) = (d.clone(), Arc::clone(&total));
            tokio::spawn(async move {
                let mut n = 0;
                loop {
                    let sent = if emitter % 2 == 0 {
                        d.event(Seq { emitter, n }).await
                    } else {
                        let sent = d.event(Seq { emitter, n }).now();
                        tokio::task::yield_now().await;
                        sent
                    };
                    match sent {
                        Ok(()) => n += 1,
                        Err(EmitError::ShutDown { .. }) => return n,
                        // Past the hard cap a sync emit on a runtime thread is dropped and
                        // counted, not accepted: send the same record again.
                        Err(EmitError::Overflow { .. }) => continue,
                        Err(e) => panic!("unexpected {e}"),
                    }
                    total.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Shut down while every emitter is busy: wait for a real amount of traffic first.
    while total.load(Ordering::Relaxed) < 2_000 + u64::from(round % 7) * 100 {
        tokio::task::yield_now().await;
    }
    let report = d.shutdown(Duration::from_secs(30)).await;
    assert!(report.handlers.iter().all(|h| !h.timed_out));
    let mut accepted = 0;
    let mut lost = 0;
    let seen = seen.lock().unwrap().clone();
    for (emitter, task) in emitters.into_iter().enumerate() {
        let ok = task.await.unwrap();
        let (delivered, in_order) = seen.get(&(emitter as u32)).copied().unwrap_or((0, true));
        assert!(in_order, "round {round}: emitter {emitter} out of order");
        accepted += ok;
        lost += ok.saturating_sub(delivered);
        assert!(
            delivered <= ok,
            "round {round}: more delivered than emitted"
        );
    }
    (accepted, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_emit_is_delivered_even_when_racing_shutdown() {
    const ROUNDS: u32 = 50;
    let (mut accepted, mut lost, mut lossy_rounds) = (0, 0, 0);
    for round in 0..ROUNDS {
        let (a, l) = one_round(round).await;
        accepted += a;
        lost += l;
        lossy_rounds += u32::from(l > 0);
    }
    println!(
        "emit racing shutdown: rounds={ROUNDS} accepted={accepted} lost={lost} \
         rounds_with_loss={lossy_rounds}"
    );
    assert_eq!(
        lost, 0,
        "an emit returned Ok but its record was never delivered"
    );
}
