//! Reliability matrix, row "10,000 futures cancelled at random points" (SPEC §4): every span
//! that was opened must be closed (exited or dropped) exactly once, and none may be open after
//! shutdown.
//!
//! Each future is a random tree of nested spans (depth 1–3) that emit events and yield between
//! steps; its root span is on a dispatcher and the deeper ones on a child of it, whose records
//! reach the recording handler on the parent. Each is then, at random: run to completion;
//! dropped after a random number of polls; spawned and aborted from another task after a random
//! number of yields; polled once and kept alive across shutdown; or spawned inside one more
//! span that waits forever after the tree, so that its task is still running at shutdown.
//! Shutdown must drop the spans of the last two, and dropping them afterwards must not close
//! them a second time. The recording handler counts, per span id, the enters against the exits
//! plus drops, and the ends it saw before the enter. The seed is printed; set `SPANBUS_SEED` to
//! replay one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::support::recorder::wait_until;
use serde::Serialize;
use spanbus::{
    Dispatcher, DropReason, Event, Handler, Record, RecordKind, Registry, SpanFutureExt, SpanId,
};

#[derive(Serialize)]
struct Step(u32);

impl Event for Step {
    const NAME: &'static str = "Step";
}

/// xorshift64*: a tiny deterministic generator, so a failing seed can be replayed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    enters: u32,
    exits: u32,
    drops: u32,
    /// Exits and drops seen before the span's enter.
    early: u32,
}

#[derive(Default)]
struct Log {
    spans: HashMap<SpanId, Counts>,
    drop_reasons: HashMap<DropReason, u64>,
}

/// Records every span signal it sees; publishes at close.
struct Recorder {
    log: Log,
    out: Arc<Mutex<Option<Log>>>,
}

impl Handler for Recorder {
    async fn handle(&mut self, record: &Record) {
        match record.kind() {
            RecordKind::SpanEnter(e) => self.log.spans.entry(e.id).or_default().enters += 1,
            RecordKind::SpanExit(e) => {
                let c = self.log.spans.entry(e.id).or_default();
                c.exits += 1;
                c.early += u32::from(c.enters == 0);
            }
            RecordKind::SpanDrop(e) => {
                let c = self.log.spans.entry(e.id).or_default();
                c.drops += 1;
                c.early += u32::from(c.enters == 0);
                *self.log.drop_reasons.entry(e.reason).or_default() += 1;
            }
            _ => {}
        }
    }

    async fn close(&mut self) {
        *self.out.lock().unwrap() = Some(std::mem::take(&mut self.log));
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The dispatchers of the spans: the root span of each tree on `top`, the deeper ones on its
/// child `leaf`.
#[derive(Clone)]
struct Chain {
    top: Dispatcher,
    leaf: Dispatcher,
}

/// A random tree of spans: each level yields, emits, and awaits 0–2 children.
fn work(chain: Chain, depth: u32, mut rng: Rng, started: Arc<AtomicU64>) -> BoxFuture {
    let d = if depth == 1 {
        chain.top.clone()
    } else {
        chain.leaf.clone()
    };
    let span = d.span(format!("level-{depth}"));
    Box::pin(
        async move {
            started.fetch_add(1, Ordering::Relaxed);
            for step in 0..rng.below(3) as u32 {
                tokio::task::yield_now().await;
                d.event(Step(step)).await.expect("emit before shutdown");
            }
            if depth < 3 {
                for _ in 0..rng.below(3) {
                    let child = Rng(rng.next() | 1);
                    work(chain.clone(), depth + 1, child, Arc::clone(&started)).await;
                    tokio::task::yield_now().await;
                }
            }
        }
        .in_span(span),
    )
}

/// Polls `inner` at most `polls` times, then drops it (a cancellation at that point).
struct DropAfter {
    inner: Option<BoxFuture>,
    polls: u64,
}

impl Future for DropAfter {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(false);
        };
        match inner.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.inner = None;
                Poll::Ready(true)
            }
            Poll::Pending => {
                self.polls -= 1;
                if self.polls == 0 {
                    self.inner = None; // cancelled here
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

async fn cancel_at_random(n: u64) {
    let seed = std::env::var("SPANBUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = Rng(seed);
    let registry = Registry::new();
    let chain = Chain {
        top: registry.get_dispatcher("reliability.cancel").unwrap(),
        leaf: registry.get_dispatcher("reliability.cancel.leaf").unwrap(),
    };
    let d = &chain.top;
    let out = Arc::new(Mutex::new(None));
    d.add_handler(Recorder {
        log: Log::default(),
        out: Arc::clone(&out),
    })
    .unwrap();
    let started = Arc::new(AtomicU64::new(0));

    let mut tasks = Vec::new();
    let mut kept_open = Vec::new();
    let mut parked = Vec::new();
    let parked_ready = Arc::new(AtomicU64::new(0));
    let (mut completed, mut dropped_after_polls, mut aborted) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let fut = work(chain.clone(), 1, Rng(rng.next() | 1), Arc::clone(&started));
        match rng.below(100) {
            // Kept alive, half-run, across shutdown.
            0 => {
                let mut fut = fut;
                let _ = futures::poll!(&mut fut);
                kept_open.push(fut);
            }
            // Still running at shutdown, parked inside a span of the child dispatcher.
            1 => {
                let (started, ready) = (Arc::clone(&started), Arc::clone(&parked_ready));
                parked.push(tokio::spawn(
                    async move {
                        started.fetch_add(1, Ordering::Relaxed);
                        fut.await;
                        ready.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                    .in_span(chain.leaf.span("parked")),
                ));
            }
            2..=33 => tasks.push(tokio::spawn(async move {
                fut.await;
                0u8
            })),
            34..=66 => {
                let polls = 1 + rng.below(6);
                tasks.push(tokio::spawn(async move {
                    let finished = DropAfter {
                        inner: Some(fut),
                        polls,
                    }
                    .await;
                    if finished { 0 } else { 1 }
                }));
            }
            _ => {
                let victim = tokio::spawn(async move {
                    fut.await;
                    0u8
                });
                let yields = rng.below(8);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    victim.abort();
                    match victim.await {
                        Ok(_) => 0,
                        Err(e) if e.is_cancelled() => 2,
                        Err(e) => panic!("task {i} failed: {e}"),
                    }
                }));
            }
        }
    }
    for t in tasks {
        match t.await.expect("driver task") {
            0 => completed += 1,
            1 => dropped_after_polls += 1,
            _ => aborted += 1,
        }
    }

    // Every parked task is inside its span before shutdown begins (a span entered once it has
    // begun emits nothing, and would not be seen).
    let parked_all = parked.len() as u64;
    let all_parked = || parked_ready.load(Ordering::SeqCst) == parked_all;
    assert!(
        wait_until(Duration::from_secs(60), all_parked).await,
        "the parked tasks reached their wait"
    );

    let report = registry.shutdown(Duration::from_secs(60)).await;
    // After shutdown: dropping these must not close anything a second time.
    let (kept, parked_tasks) = (kept_open.len(), parked.len());
    drop(kept_open);
    for task in parked {
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }

    let log = out.lock().unwrap().take().expect("recorder closed");
    let opened = log.spans.values().filter(|c| c.enters > 0).count() as u64;
    let closed_once = log
        .spans
        .values()
        .filter(|c| c.enters == 1 && c.exits + c.drops == 1)
        .count() as u64;
    let never_closed = log
        .spans
        .values()
        .filter(|c| c.enters > 0 && c.exits + c.drops == 0)
        .count();
    let closed_twice = log.spans.values().filter(|c| c.exits + c.drops > 1).count();
    let closed_unopened = log.spans.values().filter(|c| c.enters == 0).count();
    let closed_before_enter = log.spans.values().filter(|c| c.early > 0).count();
    let exits: u64 = log.spans.values().map(|c| u64::from(c.exits)).sum();
    let reason = |r| log.drop_reasons.get(&r).copied().unwrap_or(0);
    println!(
        "cancel: seed={seed} futures={n} completed={completed} dropped_after_polls={dropped_after_polls} \
         aborted={aborted} kept_open_across_shutdown={kept} running_at_shutdown={parked_tasks} \
         spans_opened={opened} closed_exactly_once={closed_once} never_closed={never_closed} \
         closed_twice={closed_twice} closed_unopened={closed_unopened} \
         closed_before_enter={closed_before_enter} exits={exits} drops_cancelled={} \
         drops_shutdown={} open_after_shutdown={}",
        reason(DropReason::Cancelled),
        reason(DropReason::Shutdown),
        opened - closed_once,
    );

    assert_eq!(
        opened,
        started.load(Ordering::Relaxed),
        "every entered span was seen"
    );
    assert!(opened >= n / 2, "most futures were polled");
    assert_eq!(closed_once, opened, "every opened span closed exactly once");
    assert_eq!(
        (
            never_closed,
            closed_twice,
            closed_unopened,
            closed_before_enter
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(reason(DropReason::Shutdown), report.spans_dropped);
    assert!(report.spans_dropped > 0 || kept + parked_tasks == 0);
    assert!(
        reason(DropReason::Cancelled) > 0,
        "the run cancelled something"
    );
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opened_span_is_closed_exactly_once() {
    cancel_at_random(10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "larger size: run with --ignored"]
async fn every_opened_span_is_closed_exactly_once_large() {
    cancel_at_random(100_000).await;
}
