//! A span is tracked by its dispatcher where it was entered (one registry shard per thread), so
//! that shutdown can drop it if it is still open. Spans entered on one thread and ended on
//! another, on more threads than there are shards, must still be closed exactly once for their
//! handlers: by their code, or by a shutdown racing with it — never twice, never not at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use spanbus::Dispatcher;
use spanbus::span::OpenSpan;

use crate::support::spans::{SpanEnds as Recorder, tally_span_ends};

/// Threads that enter spans and hand them to the next thread to end (exit or fail).
const THREADS: usize = 20;

fn run_round(rt: &tokio::runtime::Runtime, spans_before_shutdown: u64) -> [u64; 4] {
    let d = Dispatcher::new("threads.span_race").unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    rt.block_on(async { d.add_handler(Recorder(Arc::clone(&seen))).unwrap() });
    let entered = Arc::new(AtomicU64::new(0));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<OpenSpan>()).unzip();
    let threads: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, from_previous)| {
            let next = senders[(i + 1) % THREADS].clone();
            let (d, entered) = (d.clone(), Arc::clone(&entered));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !d.is_shut_down() {
                    let span = d.span("handed-over").enter();
                    entered.fetch_add(1, Ordering::Relaxed);
                    if next.send(span).is_err() {
                        break;
                    }
                    // End whatever the previous thread handed over, on this thread.
                    while let Ok(theirs) = from_previous.try_recv() {
                        n += 1;
                        if n.is_multiple_of(3) {
                            theirs.fail("handed over and failed");
                        } else {
                            theirs.exit();
                        }
                    }
                }
                drop(next);
                // Spans still in flight end after shutdown: they must emit nothing more.
                while let Ok(theirs) = from_previous.recv_timeout(Duration::from_millis(50)) {
                    theirs.exit();
                }
            })
        })
        .collect();
    drop(senders);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while entered.load(Ordering::Relaxed) < spans_before_shutdown
        && std::time::Instant::now() < deadline
    {
        std::thread::yield_now();
    }
    let report = rt.block_on(d.shutdown(Duration::from_secs(30)));
    for t in threads {
        t.join().unwrap();
    }
    assert!(report.handlers.iter().all(|h| !h.timed_out));
    let (total, unclosed, broken) = tally_span_ends(&seen.lock().unwrap());
    [
        total as u64,
        unclosed as u64,
        broken as u64,
        report.spans_dropped,
    ]
}

#[test]
fn spans_ended_on_other_threads_are_closed_exactly_once_even_racing_shutdown() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const ROUNDS: u64 = 10;
    let mut totals = [0u64; 4];
    for round in 0..ROUNDS {
        let counts = run_round(&rt, 500 + round * 300);
        for (t, c) in totals.iter_mut().zip(counts) {
            *t += c;
        }
    }
    let [spans, unclosed, broken, dropped_by_shutdown] = totals;
    println!(
        "spans ended on other threads: rounds={ROUNDS} spans_seen={spans} \
         dropped_by_shutdown={dropped_by_shutdown} entered_never_closed={unclosed} \
         closed_twice_or_before_enter={broken}"
    );
    assert!(spans > 0, "no span reached the handler");
    // Spans in flight between threads when shutdown came: shutdown dropped them.
    assert!(
        dropped_by_shutdown > 0,
        "the race with shutdown was never hit"
    );
    assert_eq!(
        (unclosed, broken),
        (0, 0),
        "a handler saw a span entered but not closed exactly once"
    );
}
