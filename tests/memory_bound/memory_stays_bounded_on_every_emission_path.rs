//! The bound (crate docs, "The bound") measured on each emission path against a slow lossless
//! handler: span-only async code waits for room, sync `#[span]` fns on a runtime thread go past
//! the capacity up to the hard cap and have their enters dropped and counted past it, and sync
//! spans on a plain thread block for room. In each, peak RSS growth stays below
//! `(capacity + overflow) records × 1 KiB + 16 MiB` and every span is accounted for. Each test
//! prints its figures.
//!
//! The tests measure the whole process's RSS, so they run one at a time (`SERIAL`), in a binary
//! of their own (`memory_bound`): another test beside them would count in their figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;
use spanbus::dispatcher::DEFAULT_CAPACITY;
use spanbus::{Dispatcher, Event, Handler, Record, RecordKind, SpanFutureExt};

/// Held for each test: RSS is per process.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a broken build may hang a wait before the test fails instead.
const PATIENCE: Duration = Duration::from_secs(60);

/// A generous size for one queued record with its envelope, name and captured arguments.
const PER_RECORD: u64 = 1024;
/// Room for the runtime, the handler's timers and the allocator's own slack.
const SLACK: u64 = 16 << 20;

/// The documented bound on what one channel can hold, in bytes.
fn bound(capacity: usize, overflow: usize) -> u64 {
    (capacity + overflow) as u64 * PER_RECORD + SLACK
}

const MIB: f64 = (1 << 20) as f64;

/// The value of a `kB` line of `/proc/self/status`, in bytes.
fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// The process's resident set now, in bytes.
fn rss() -> u64 {
    status_kib("VmRSS:").expect("/proc/self/status has VmRSS")
}

/// Watches RSS from a thread of its own: samples it every 5 ms and, where the kernel lets us
/// reset the high-water mark (`/proc/self/clear_refs`), also reads the exact peak at the end.
struct PeakRss {
    baseline: u64,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
    hwm_reset: bool,
}

/// What [`PeakRss::finish`] measured, in bytes.
struct Growth {
    baseline: u64,
    sampled_peak: u64,
    /// The kernel's `VmHWM` since the start, when it could be reset.
    hwm: Option<u64>,
}

impl Growth {
    fn peak(&self) -> u64 {
        self.sampled_peak.max(self.hwm.unwrap_or(0))
    }

    fn growth(&self) -> u64 {
        self.peak().saturating_sub(self.baseline)
    }

    fn describe(&self) -> String {
        format!(
            "baseline RSS {:.1} MiB, peak {:.1} MiB (sampled {:.1}, VmHWM {}), growth {:.1} MiB",
            self.baseline as f64 / MIB,
            self.peak() as f64 / MIB,
            self.sampled_peak as f64 / MIB,
            self.hwm
                .map_or("n/a".to_owned(), |h| format!("{:.1}", h as f64 / MIB)),
            self.growth() as f64 / MIB,
        )
    }
}

impl PeakRss {
    /// Takes the baseline (RSS right now) and starts watching.
    fn start() -> PeakRss {
        // "5" resets VmHWM to the current RSS (Linux >= 4.0); without it, sampling alone.
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let baseline = rss();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut peak = baseline;
                while !stop.load(Ordering::Acquire) {
                    peak = peak.max(rss());
                    std::thread::sleep(Duration::from_millis(5));
                }
                peak.max(rss())
            })
        };
        PeakRss {
            baseline,
            stop,
            sampler,
            hwm_reset,
        }
    }

    fn finish(self) -> Growth {
        self.stop.store(true, Ordering::Release);
        let sampled_peak = self.sampler.join().expect("sampler");
        let hwm = if self.hwm_reset {
            status_kib("VmHWM:")
        } else {
            None
        };
        Growth {
            baseline: self.baseline,
            sampled_peak,
            hwm,
        }
    }
}

#[derive(Serialize)]
struct Tick {
    n: u64,
}
impl Event for Tick {
    const NAME: &'static str = "Tick";
}

/// When a [`Tally`] takes its time.
#[derive(Clone)]
enum Pace {
    /// 1 ms per record while the flag is set.
    SlowWhile(Arc<AtomicBool>),
    /// 1 ms per record for the first this many records.
    SlowFirst(u64),
}

/// A lossless handler that counts what it sees, by kind, and what it is told it missed.
#[derive(Clone)]
struct Tally {
    pace: Pace,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    handled: AtomicU64,
    enters: AtomicU64,
    exits: AtomicU64,
    drops: AtomicU64,
    events: AtomicU64,
    missed: AtomicU64,
}

/// What a [`Counts`] holds at one moment.
#[derive(Debug, Clone, Copy)]
struct Seen {
    enters: u64,
    exits: u64,
    drops: u64,
    events: u64,
    missed: u64,
}

impl Counts {
    fn seen(&self) -> Seen {
        let get = |field: &AtomicU64| field.load(Ordering::SeqCst);
        Seen {
            enters: get(&self.enters),
            exits: get(&self.exits),
            drops: get(&self.drops),
            events: get(&self.events),
            missed: get(&self.missed),
        }
    }
}

impl Tally {
    fn new(pace: Pace) -> Tally {
        Tally {
            pace,
            counts: Arc::default(),
        }
    }
}

impl Handler for Tally {
    async fn handle(&mut self, record: &Record) {
        let before = self.counts.handled.fetch_add(1, Ordering::SeqCst);
        let slow = match &self.pace {
            Pace::SlowWhile(flag) => flag.load(Ordering::SeqCst),
            Pace::SlowFirst(n) => before < *n,
        };
        if slow {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let field = match record.kind() {
            RecordKind::SpanEnter(_) => &self.counts.enters,
            RecordKind::SpanExit(_) => &self.counts.exits,
            RecordKind::SpanDrop(_) => &self.counts.drops,
            RecordKind::Event(_) => &self.counts.events,
            _ => return,
        };
        field.fetch_add(1, Ordering::SeqCst);
    }

    async fn missed(&mut self, count: u64) {
        self.counts.missed.fetch_add(count, Ordering::SeqCst);
    }
}

/// The sum of `HandlerStats::dropped` over a dispatcher's handlers.
fn stats_dropped(d: &Dispatcher) -> u64 {
    d.all_handler_stats().iter().map(|(_, s)| s.dropped).sum()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn within_patience<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {PATIENCE:?}"),
    }
}

#[test]
fn span_only_async_code_under_a_slow_handler_stays_within_the_bound_and_loses_no_span() {
    let _serial = serial();
    const SPANS: u64 = 5_000_000;
    const TASKS: usize = 64;
    const BUDGET: Duration = Duration::from_secs(3);

    let rt = runtime();
    let d = Dispatcher::new("memory_bound.async_spans").expect("name");
    let slow = Arc::new(AtomicBool::new(true));
    let tally = Tally::new(Pace::SlowWhile(Arc::clone(&slow)));
    let counts = Arc::clone(&tally.counts);
    rt.block_on(async { d.add_handler(tally) })
        .expect("runtime");

    // Spans whose code ran: counted inside each span, so a span is counted once it entered.
    let started = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let limit = bound(DEFAULT_CAPACITY, DEFAULT_CAPACITY);

    let watch = PeakRss::start();
    let start = Instant::now();
    let (load_time, drain_time) = rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (d, started, stop) = (d.clone(), Arc::clone(&started), Arc::clone(&stop));
                tokio::spawn(async move {
                    // A stop lets the iteration in flight finish: no span is cancelled.
                    while !stop.load(Ordering::SeqCst) && started.load(Ordering::SeqCst) < SPANS {
                        async {
                            started.fetch_add(1, Ordering::SeqCst);
                            async {
                                started.fetch_add(1, Ordering::SeqCst);
                                tokio::task::yield_now().await;
                            }
                            .in_span(d.span("inner"))
                            .await;
                        }
                        .in_span(d.span("work"))
                        .await;
                    }
                })
            })
            .collect();
        // The time budget (the 1 ms handler ends it long before `SPANS`).
        while start.elapsed() < BUDGET && started.load(Ordering::SeqCst) < SPANS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let load_time = start.elapsed();
        stop.store(true, Ordering::SeqCst);
        slow.store(false, Ordering::SeqCst);
        within_patience("the emitting tasks", async {
            for task in tasks {
                task.await.expect("no panic");
            }
        })
        .await;
        within_patience("flush", d.flush()).await;
        (load_time, start.elapsed() - load_time)
    });
    let growth = watch.finish();

    let started = started.load(Ordering::SeqCst);
    let Seen {
        enters,
        exits,
        drops,
        missed,
        ..
    } = counts.seen();
    let dropped = stats_dropped(&d);
    println!(
        "span-only async, {TASKS} tasks, 1 ms/record handler, budget {BUDGET:?}: \
         spans started {started} in {load_time:?} (drained in {drain_time:?}); \
         delivered: enters {enters}, exits {exits}, drops {drops}; dropped (missed) {missed}, \
         HandlerStats::dropped {dropped}; {}; bound {:.1} MiB",
        growth.describe(),
        limit as f64 / MIB
    );
    assert!(started > 0, "the load ran");
    assert_eq!(enters, started, "every span started was seen entered");
    assert_eq!(exits + drops, enters, "and ended exactly once");
    assert_eq!(drops, 0, "no span was cancelled or failed");
    assert_eq!(missed, 0, "awaiting emitters never lose a record");
    assert_eq!(dropped, 0);
    assert!(
        growth.growth() < limit,
        "peak RSS growth {:.1} MiB is past the bound {:.1} MiB",
        growth.growth() as f64 / MIB,
        limit as f64 / MIB
    );
}

/// The registry dispatcher the sync `#[span]` fn reports to; no other test uses it.
const SYNC_ATTR_DISPATCHER: &str = "memory_bound.sync_attr_fn";

/// A sync fn whose arguments (about 100 bytes of text and a number) are captured as the span's
/// arguments.
#[spanbus::span(dispatcher = "memory_bound.sync_attr_fn")]
fn summarize(text: String, n: u64) -> u64 {
    text.len() as u64 + n
}

/// The figure. 5 M calls take about 12 s in a debug build (`cargo test`), under the
/// ~20 s at which this would move to an `#[ignore]`d test, so every run makes all of them.
const SYNC_CALLS: u64 = 5_000_000;

/// Calls `summarize` `SYNC_CALLS` times in one runtime task against a 1 ms/record lossless
/// handler on the registry's dispatcher: enters past the hard cap are dropped and counted.
#[test]
fn sync_span_attribute_fns_under_a_slow_handler_stay_within_the_bound_and_account_for_every_span() {
    let _serial = serial();
    let rt = runtime();
    let d = spanbus::get_dispatcher(SYNC_ATTR_DISPATCHER).expect("name");
    let slow = Arc::new(AtomicBool::new(true));
    let tally = Tally::new(Pace::SlowWhile(Arc::clone(&slow)));
    let counts = Arc::clone(&tally.counts);
    let id = rt
        .block_on(async { d.add_handler(tally) })
        .expect("runtime");
    let limit = bound(DEFAULT_CAPACITY, DEFAULT_CAPACITY);
    let text =
        "a question about a document, long enough to be a realistic argument of a traced fn, "
            .repeat(2)[..100]
            .to_owned();

    let watch = PeakRss::start();
    let start = Instant::now();
    let (load_time, drain_time, checksum) = rt.block_on(async {
        let caller = tokio::spawn(async move {
            let mut checksum = 0u64;
            for i in 0..SYNC_CALLS {
                checksum = checksum.wrapping_add(summarize(text.clone(), i));
                if i % 10_000 == 0 {
                    // Lets the handler's task run if it was woken onto this worker's LIFO slot
                    // (which other workers cannot steal from); the emits stay sync.
                    tokio::task::yield_now().await;
                }
            }
            checksum
        });
        // A compute load (about 12 s on an idle machine), not a wait: more patience.
        let checksum = tokio::time::timeout(3 * PATIENCE, caller)
            .await
            .expect("the calls finish within three minutes")
            .expect("no panic");
        let load_time = start.elapsed();
        slow.store(false, Ordering::SeqCst);
        within_patience("flush", d.flush()).await;
        (load_time, start.elapsed() - load_time, checksum)
    });
    let growth = watch.finish();

    let Seen {
        enters,
        exits,
        drops,
        missed,
        ..
    } = counts.seen();
    let dropped = stats_dropped(&d);
    println!(
        "sync #[span] fn with captured args on a runtime thread, 1 ms/record handler: \
         calls {SYNC_CALLS} in {load_time:?} (drained in {drain_time:?}); delivered: \
         enters {enters}, exits {exits}, drops {drops}; enters dropped and counted (missed) \
         {missed}, HandlerStats::dropped {dropped}; {}; bound {:.1} MiB",
        growth.describe(),
        limit as f64 / MIB
    );
    assert!(d.remove_handler(id));
    assert_eq!(
        checksum,
        (0..SYNC_CALLS).fold(0u64, |s, i| s.wrapping_add(100 + i))
    );
    assert_eq!(
        enters + missed,
        SYNC_CALLS,
        "every span accounted for: delivered + counted drops = emitted"
    );
    assert_eq!(exits, enters, "every span that got in ended, by exit");
    assert_eq!(drops, 0, "no call failed");
    assert_eq!(dropped, missed, "HandlerStats::dropped agrees with missed");
    assert!(
        growth.growth() < limit,
        "peak RSS growth {:.1} MiB is past the bound {:.1} MiB",
        growth.growth() as f64 / MIB,
        limit as f64 / MIB
    );
}

#[test]
fn sync_spans_on_a_plain_thread_block_for_room_and_lose_nothing() {
    let _serial = serial();
    const N: u64 = 20_000;
    const CAPACITY: usize = 64;
    const OVERFLOW: usize = 64;
    const SLOW_RECORDS: u64 = 200;

    let rt = runtime();
    let d = Dispatcher::builder("memory_bound.plain_thread")
        .capacity(CAPACITY.try_into().expect("non-zero"))
        .overflow(OVERFLOW)
        .build()
        .expect("name");
    let tally = Tally::new(Pace::SlowFirst(SLOW_RECORDS));
    let counts = Arc::clone(&tally.counts);
    rt.block_on(async { d.add_handler(tally) })
        .expect("runtime");
    let limit = bound(CAPACITY, OVERFLOW);

    let watch = PeakRss::start();
    let start = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    let thread = {
        let d = d.clone();
        std::thread::spawn(move || {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "a plain thread"
            );
            let mut longest = Duration::ZERO;
            let mut ran = 0u64;
            for n in 0..N {
                let call = Instant::now();
                d.span("plain").in_scope(|| ran += 1);
                d.event(Tick { n })
                    .now()
                    .expect("a plain thread never loses an emit");
                longest = longest.max(call.elapsed());
            }
            done_tx.send((ran, longest)).expect("test waits");
        })
    };
    let (ran, longest) = done_rx
        .recv_timeout(PATIENCE)
        .expect("the plain thread finishes");
    thread.join().expect("no panic");
    let emit_time = start.elapsed();
    rt.block_on(within_patience("flush", d.flush()));
    let growth = watch.finish();

    let Seen {
        enters,
        exits,
        drops,
        events,
        missed,
    } = counts.seen();
    let dropped = stats_dropped(&d);
    println!(
        "plain thread, capacity {CAPACITY} + overflow {OVERFLOW}, 1 ms/record for the first \
         {SLOW_RECORDS} records: {N} spans + {N} events emitted in {emit_time:?} (longest \
         span+event {longest:?}); delivered: enters {enters}, exits {exits}, drops {drops}, \
         events {events}; missed {missed}, HandlerStats::dropped {dropped}; total {:?}; {}; \
         bound {:.1} MiB",
        start.elapsed(),
        growth.describe(),
        limit as f64 / MIB
    );
    assert_eq!(ran, N);
    assert_eq!(missed, 0, "a plain thread blocks, it does not drop");
    assert_eq!(dropped, 0);
    assert_eq!(enters, N, "every span entered");
    assert_eq!(exits, N, "and exited");
    assert_eq!(drops, 0);
    assert_eq!(events, N, "every event seen");
    assert!(
        growth.growth() < limit,
        "peak RSS growth {:.1} MiB is past the bound {:.1} MiB",
        growth.growth() as f64 / MIB,
        limit as f64 / MIB
    );
}
