//! Reliability matrix, row "futures cancelled … 0 open after shutdown", at its edge: spans that
//! are being entered and ended while `shutdown()` runs. A handler that saw a span's enter must
//! also see exactly one exit or drop for it — from the code, or from shutdown — after the
//! enter, and never an end without an enter. Checked over many rounds so the race is actually hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spanbus::{Dispatcher, SpanFutureExt};

use crate::support::spans::{SpanEnds as Recorder, tally_span_ends};

async fn one_round(round: u32) -> (usize, usize, usize) {
    let d = Dispatcher::new("reliability.span_race").unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    d.add_handler(Recorder(Arc::clone(&seen))).unwrap();
    let started = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4u32)
        .map(|w| {
            let (d, started) = (d.clone(), Arc::clone(&started));
            tokio::spawn(async move {
                while !d.is_shut_down() {
                    started.fetch_add(1, Ordering::Relaxed);
                    if w % 2 == 0 {
                        async { tokio::task::yield_now().await }
                            .in_span(d.span("future"))
                            .await;
                    } else {
                        let span = d.span("by-hand").enter();
                        tokio::task::yield_now().await;
                        span.exit();
                    }
                }
            })
        })
        .collect();
    while started.load(Ordering::Relaxed) < 1_000 + u64::from(round % 5) * 200 {
        tokio::task::yield_now().await;
    }
    let report = d.shutdown(Duration::from_secs(30)).await;
    for w in workers {
        w.await.unwrap();
    }
    assert!(report.handlers.iter().all(|h| !h.timed_out));
    tally_span_ends(&seen.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_racing_shutdown_are_closed_exactly_once() {
    const ROUNDS: u32 = 50;
    let (mut spans, mut unclosed, mut broken, mut bad_rounds) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        let (s, u, b) = one_round(round).await;
        spans += s;
        unclosed += u;
        broken += b;
        bad_rounds += u32::from(u + b > 0);
    }
    println!(
        "spans racing shutdown: rounds={ROUNDS} spans_seen={spans} entered_never_closed={unclosed} \
         closed_twice_or_before_enter={broken} rounds_with_a_bad_span={bad_rounds}"
    );
    assert_eq!(
        (unclosed, broken),
        (0, 0),
        "a handler saw a span entered but not closed exactly once"
    );
}
