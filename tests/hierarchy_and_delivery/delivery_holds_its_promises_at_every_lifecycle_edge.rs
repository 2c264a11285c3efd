//! The lifecycle edges of delivery: a dropped dispatcher, shutdown from places with no usable
//! runtime, a dropped runtime, a cancelled or never-polled emit, and handlers that flush each
//! other. Each test prints its figure.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde::Serialize;
use spanbus::error::EmitError;
use spanbus::{Dispatcher, Event, Handler, Record, Registry, ShutdownReport};
use tokio::sync::Semaphore;

#[derive(Serialize)]
struct Ping {
    n: u64,
}
impl Event for Ping {
    const NAME: &'static str = "Ping";
}

/// Counts what it handles and its `close` calls; waits for a permit per record when gated.
#[derive(Clone, Default)]
struct Probe {
    handled: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    /// The `n` of each `Ping` handled, summed with a marker so a test can look for one.
    seen_marker: Arc<AtomicU64>,
    gate: Option<Arc<Semaphore>>,
    /// Calls of `handle` begun (before the gate).
    entered: Arc<AtomicU64>,
}

const MARKER: u64 = 999_999;

impl Handler for Probe {
    async fn handle(&mut self, record: &Record) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        if record.event::<Ping>().is_some_and(|p| p.n == MARKER) {
            self.seen_marker.fetch_add(1, Ordering::SeqCst);
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
    }

    async fn close(&mut self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A handler that never returns from its first record.
struct Hangs;
impl Handler for Hangs {
    async fn handle(&mut self, _: &Record) {
        std::future::pending::<()>().await;
    }
}

/// Waits (up to `limit`) until `done` holds, checking between short sleeps: the tests assert
/// the condition, the wait only bounds how long a broken build would hang.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn within(elapsed: Duration, deadline: Duration) -> bool {
    elapsed <= deadline + deadline / 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_dropped_dispatchers_leave_no_handler_task_and_close_every_handler() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let probe = Probe::default();
    const N: u64 = 10_000;
    for n in 0..N {
        let d = Dispatcher::new("edges.dropped").expect("name");
        d.add_handler(probe.clone()).expect("runtime");
        d.event(Ping { n }).await.expect("emit");
        drop(d);
    }
    let ended = eventually(Duration::from_secs(60), || {
        probe.closed.load(Ordering::SeqCst) == N && metrics.num_alive_tasks() == before
    })
    .await;
    println!(
        "dropped dispatchers: {N}; close() calls {}; records handled {}; live handler tasks left {}",
        probe.closed.load(Ordering::SeqCst),
        probe.handled.load(Ordering::SeqCst),
        metrics.num_alive_tasks() - before
    );
    assert!(ended, "every handler task drains, closes and ends");
    assert_eq!(
        probe.handled.load(Ordering::SeqCst),
        N,
        "and handles what was queued"
    );
}

/// A dispatcher on its own runtime with one handler that finishes and one that hangs.
fn dispatcher_with_a_hung_handler(rt: &tokio::runtime::Runtime, name: &str) -> Dispatcher {
    rt.block_on(async {
        let d = Dispatcher::new(name).expect("name");
        d.add_handler(Probe::default()).expect("runtime");
        d.add_handler(Hangs).expect("runtime");
        d.event(Ping { n: 1 }).await.expect("emit");
        d
    })
}

fn assert_report_names_the_hung_handler(report: &ShutdownReport) {
    assert_eq!(report.handlers.len(), 2);
    let hung: Vec<_> = report.timed_out().map(|h| h.stats.name.clone()).collect();
    assert_eq!(hung.len(), 1, "{report:?}");
    assert!(hung[0].ends_with("Hangs"), "{hung:?}");
}

#[test]
fn shutdown_from_a_thread_with_no_runtime_returns_by_its_deadline_and_again_later() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let d = dispatcher_with_a_hung_handler(&rt, "edges.no_runtime");
    let deadline = Duration::from_millis(300);
    let (first, second) = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let start = Instant::now();
        let report = futures::executor::block_on(d.shutdown(deadline));
        let first = start.elapsed();
        assert_report_names_the_hung_handler(&report);
        let start = Instant::now();
        let again = futures::executor::block_on(d.shutdown(deadline));
        assert_eq!(
            again, report,
            "a second call returns the first call's report"
        );
        (first, start.elapsed())
    })
    .join()
    .expect("no panic");
    println!(
        "no-runtime shutdown: deadline {deadline:?}, returned in {first:?}; second call {second:?}"
    );
    assert!(within(first, deadline), "{first:?}");
    assert!(second < deadline / 10, "{second:?}");
}

#[test]
fn shutdown_from_drop_after_the_runtime_is_gone_reports_by_its_deadline_and_names_the_loss() {
    struct ShutDownOnDrop(
        Registry,
        Arc<std::sync::Mutex<Option<(ShutdownReport, Duration)>>>,
    );
    impl Drop for ShutDownOnDrop {
        fn drop(&mut self) {
            let start = Instant::now();
            let report = futures::executor::block_on(self.0.shutdown(Duration::from_millis(300)));
            *self.1.lock().expect("lock") = Some((report, start.elapsed()));
        }
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = Registry::new();
    let d = registry.get_dispatcher("edges.drop_guard").expect("name");
    let probe = Probe::default();
    rt.block_on(async {
        d.add_handler(probe.clone()).expect("runtime");
        d.event(Ping { n: 1 }).await.expect("emit");
        d.flush().await;
    });
    drop(rt);
    let out = Arc::default();
    drop(ShutDownOnDrop(registry.clone(), Arc::clone(&out)));
    let (report, took) = out.lock().expect("lock").take().expect("the guard ran");
    println!("shutdown in Drop after the runtime was dropped: {took:?}; {report:?}");
    assert!(within(took, Duration::from_millis(300)));
    assert_eq!(report.handlers.len(), 1);
    assert!(
        report.handlers[0].runtime_gone,
        "its close() never ran: {report:?}"
    );
    assert!(!report.is_clean());
    assert_eq!(probe.closed.load(Ordering::SeqCst), 0);
    // And a later call still works.
    let again = futures::executor::block_on(registry.shutdown(Duration::from_millis(300)));
    assert_eq!(again.handlers.len(), 1);
}

#[test]
fn shutdown_blocked_on_inside_a_current_thread_runtime_returns_by_its_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Duration::from_millis(300);
    let (report, took, again) = rt.block_on(async {
        let d = Dispatcher::new("edges.current_thread").expect("name");
        d.add_handler(Probe::default()).expect("runtime");
        d.event(Ping { n: 1 }).await.expect("emit");
        // What a `Drop` guard does at the end of `main`: blocks the runtime's only thread.
        let start = Instant::now();
        let report = futures::executor::block_on(d.shutdown(deadline));
        let took = start.elapsed();
        let again = futures::executor::block_on(d.shutdown(deadline));
        (report, took, again)
    });
    println!("block_on(shutdown) on a current-thread runtime: {took:?}; {report:?}");
    assert!(within(took, deadline), "{took:?}");
    assert_eq!(report.handlers.len(), 1);
    // Its runtime could not run it while the caller blocked: named, not waited for forever.
    assert!(report.handlers[0].timed_out);
    assert_eq!(again, report);
}

#[test]
fn emits_after_the_handlers_runtime_is_dropped_fail_typed_and_are_counted_lost() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = Registry::new();
    let d = registry.get_dispatcher("edges.runtime_gone").expect("name");
    let probe = Probe::default();
    rt.block_on(async {
        d.add_handler(probe.clone()).expect("runtime");
        d.event(Ping { n: 0 }).await.expect("emit");
        d.flush().await;
    });
    drop(rt); // the `#[tokio::test]`-per-runtime pattern: the handler's task is gone
    let mut gone = 0;
    for n in 0..1_000 {
        match d.event(Ping { n }).now() {
            Err(EmitError::HandlersGone { .. }) => gone += 1,
            other => panic!("expected HandlersGone, got {other:?}"),
        }
    }
    let awaited = futures::executor::block_on(d.event(Ping { n: 1_000 }).into_future());
    assert!(
        matches!(awaited, Err(EmitError::HandlersGone { .. })),
        "{awaited:?}"
    );
    let span = d.span("after").in_scope(|| 1);
    assert_eq!(span, 1);
    let lost = d.all_handler_stats()[0].1.lost;
    let report = futures::executor::block_on(registry.shutdown(Duration::from_secs(1)));
    println!(
        "emits after the runtime dropped: {gone} of 1000 now() refused as HandlersGone; lost {lost}; report clean: {}",
        report.is_clean()
    );
    assert_eq!(gone, 1_000);
    // 1,000 `now()`, one awaited emit, the span's enter and exit.
    assert_eq!(lost, 1_003);
    assert!(!report.is_clean());
    assert_eq!(report.handlers[0].stats.lost, 1_003);
    assert_eq!(report.handlers[0].stats.delivered, 1);
}

#[test]
fn a_live_handler_beside_a_gone_one_still_gets_every_record_and_the_gone_one_counts_them() {
    let old = tokio::runtime::Runtime::new().expect("runtime");
    let registry = Registry::new();
    let d = registry.get_dispatcher("edges.half_gone").expect("name");
    let gone = Probe::default();
    old.block_on(async { d.add_handler(gone.clone()).expect("runtime") });
    drop(old);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let live = Probe::default();
    rt.block_on(async {
        d.add_handler(live.clone()).expect("runtime");
        for n in 0..100 {
            d.event(Ping { n }).await.expect("a live handler gets it");
        }
        let report = registry.shutdown(Duration::from_secs(5)).await;
        let lost: Vec<u64> = report.handlers.iter().map(|h| h.stats.lost).collect();
        println!(
            "one live, one gone handler: live handled {}, lost per handler {lost:?}",
            live.handled.load(Ordering::SeqCst)
        );
        assert_eq!(live.handled.load(Ordering::SeqCst), 100);
        assert_eq!(lost.iter().sum::<u64>(), 100);
        assert!(!report.is_clean());
    });
}

/// `a.b.c` with a probe on each level; the probe on level `full` (0 = the leaf `a.b.c`) is
/// gated shut and its channel holds 4 records, the others 1,024 (so only that one fills).
fn chain(full: usize) -> (Vec<Dispatcher>, Vec<Probe>, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let cap = |level: usize| {
        std::num::NonZeroUsize::new(if level == full { 4 } else { 1024 }).expect("non-zero")
    };
    let a = Dispatcher::builder("a")
        .capacity(cap(2))
        .build()
        .expect("name");
    let b = Dispatcher::builder("a.b")
        .parent(&a)
        .capacity(cap(1))
        .build()
        .expect("name");
    let c = Dispatcher::builder("a.b.c")
        .parent(&b)
        .capacity(cap(0))
        .build()
        .expect("name");
    let levels = vec![c, b, a];
    let probes: Vec<Probe> = (0..3)
        .map(|level| Probe {
            gate: (level == full).then(|| Arc::clone(&gate)),
            ..Probe::default()
        })
        .collect();
    for (d, p) in levels.iter().zip(&probes) {
        d.add_handler(p.clone()).expect("runtime");
    }
    (levels, probes, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awaited_emit_cancelled_while_waiting_reaches_every_level_or_none() {
    for full in 0..3 {
        let (levels, probes, gate) = chain(full);
        // The gated handler takes a first record and blocks on it at the gate: from then on
        // nothing leaves its channel until the gate opens.
        levels[full].event(Ping { n: 0 }).await.expect("emit");
        let blocked = eventually(Duration::from_secs(20), || {
            probes[full].entered.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(blocked, "the gated handler took its first record");
        // Fill its channel; the emit that finds no room is cancelled at once (`now_or_never`
        // drops it) before any channel took it.
        let mut n = 1;
        while let Some(done) = levels[full].event(Ping { n }).into_future().now_or_never() {
            done.expect("emit");
            n += 1;
        }
        // The emit under test, on the leaf: cancelled while waiting for room at `full`.
        let cancelled = levels[0]
            .event(Ping { n: MARKER })
            .into_future()
            .now_or_never();
        assert!(cancelled.is_none(), "it waits for room at level {full}");
        gate.add_permits(1_000_000);
        for d in &levels {
            d.flush().await;
        }
        let seen: Vec<u64> = probes
            .iter()
            .map(|p| p.seen_marker.load(Ordering::SeqCst))
            .collect();
        println!("full level {full} (0 = leaf): the cancelled emit reached levels {seen:?}");
        // Waiting at the leaf, no channel took it; waiting above, the levels below had: then
        // every level gets it.
        let expected = if full == 0 { [0, 0, 0] } else { [1, 1, 1] };
        assert_eq!(seen, expected, "every level sees it or none does");
    }
}

#[tokio::test]
async fn an_emit_future_never_polled_delivers_nothing() {
    let d = Dispatcher::new("edges.lazy").expect("name");
    let probe = Probe::default();
    d.add_handler(probe.clone()).expect("runtime");
    let future = d.event(Ping { n: MARKER }).into_future();
    drop(future);
    d.event(Ping { n: 1 }).await.expect("emit");
    d.flush().await;
    println!(
        "never-polled emit: handler saw the marker {} times, {} records",
        probe.seen_marker.load(Ordering::SeqCst),
        probe.handled.load(Ordering::SeqCst)
    );
    assert_eq!(probe.seen_marker.load(Ordering::SeqCst), 0);
    assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
}

/// Calls the process-wide flush from inside `handle`.
#[derive(Clone, Default)]
struct FlushesEverything(Arc<AtomicU64>);
impl Handler for FlushesEverything {
    async fn handle(&mut self, _: &Record) {
        spanbus::flush().await;
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handlers_flushing_globally_from_handle_both_finish() {
    let _process_wide = crate::support::process_wide().await;
    let one = spanbus::get_dispatcher("edges.flush.one").expect("name");
    let two = spanbus::get_dispatcher("edges.flush.two").expect("name");
    let done = FlushesEverything::default();
    one.add_handler(done.clone()).expect("runtime");
    two.add_handler(done.clone()).expect("runtime");
    for round in 0..50 {
        one.event(Ping { n: round }).await.expect("emit");
        two.event(Ping { n: round }).await.expect("emit");
    }
    let finished = tokio::time::timeout(Duration::from_secs(20), spanbus::flush()).await;
    println!(
        "handlers flushing each other: {} of 100 handle calls finished",
        done.0.load(Ordering::SeqCst)
    );
    assert!(finished.is_ok(), "no deadlock");
    assert_eq!(done.0.load(Ordering::SeqCst), 100);
}
