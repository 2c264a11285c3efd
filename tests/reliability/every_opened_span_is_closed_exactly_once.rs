//! 10,000 futures, nested spans, cancelled at random points (aborted, timed out, or left open
//! until shutdown): every span that was entered is closed exactly once — exited or dropped —
//! and none is left open after shutdown.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::recorder::{Recorder, Seq};
use spanbus::{DropReason, Registry, SpanFutureExt, SpanId};

/// A small deterministic generator, so a failure can be replayed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_futures_cancelled_at_random_points_close_every_span_exactly_once() {
    const FUTURES: u64 = 10_000;
    let reg = Registry::new();
    let app = reg.get_dispatcher("app").unwrap();
    let leaf = reg.get_dispatcher("app.leaf").unwrap();
    let all = Recorder::new();
    app.add_handler(all.clone()).unwrap();

    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut handles = Vec::new();
    for i in 0..FUTURES {
        let (app, leaf, gate) = (app.clone(), leaf.clone(), gate.clone());
        let depth = next(&mut rng) % 4;
        let steps = next(&mut rng) % 5;
        let fate = next(&mut rng) % 4;
        let work = async move {
            // Some nested spans, some yields, some events, maybe waiting forever.
            async move {
                for s in 0..steps {
                    leaf.event(Seq { emitter: i, n: s }).await.ok();
                    tokio::task::yield_now().await;
                }
                if depth > 0 {
                    async {
                        tokio::task::yield_now().await;
                        if depth > 1 {
                            async { gate.notified().await }
                                .in_span(leaf.span("deep"))
                                .await;
                        }
                    }
                    .in_span(leaf.span("middle"))
                    .await;
                }
            }
            .in_span(app.span("top"))
            .await
        };
        handles.push((fate, tokio::spawn(work)));
    }
    // Fates: 0 aborted now, 1 aborted after a yield, 2 timed out, 3 left to shutdown.
    let mut cancel_later = Vec::new();
    for (fate, handle) in handles {
        match fate {
            0 => handle.abort(),
            1 => cancel_later.push(handle),
            2 => {
                let _ = tokio::time::timeout(Duration::from_micros(50), handle).await;
            }
            _ => {}
        }
    }
    tokio::task::yield_now().await;
    for handle in cancel_later {
        handle.abort();
    }
    let report = reg.shutdown(Duration::from_secs(20)).await;
    assert!(report.timed_out().next().is_none());

    let mut ends: HashMap<SpanId, Vec<&'static str>> = HashMap::new();
    let mut entered = 0u64;
    let mut reasons: HashMap<String, u64> = HashMap::new();
    for r in all.records() {
        match r.class {
            "SpanEnter" => {
                entered += 1;
                assert!(
                    ends.insert(r.span.unwrap(), Vec::new()).is_none(),
                    "entered twice"
                );
            }
            "SpanExit" | "SpanDrop" => {
                ends.get_mut(&r.span.unwrap())
                    .expect("ended after being entered")
                    .push(r.class);
                let reason = r
                    .reason
                    .map_or("exit".to_owned(), |d: DropReason| d.to_string());
                *reasons.entry(reason).or_default() += 1;
            }
            _ => {}
        }
    }
    let unclosed = ends.values().filter(|e| e.is_empty()).count() as u64;
    let twice = ends.values().filter(|e| e.len() > 1).count();
    println!(
        "cancellation: futures={FUTURES} spans={entered} closed={} unclosed={unclosed} \
         closed_twice={twice} by_reason={reasons:?} spans_dropped_at_shutdown={}",
        entered - unclosed,
        report.spans_dropped
    );
    assert!(entered >= FUTURES / 2, "most futures were polled");
    assert_eq!(unclosed, 0);
    assert_eq!(twice, 0);
    assert_eq!(
        reasons.get("shutdown").copied().unwrap_or(0),
        report.spans_dropped
    );
}
