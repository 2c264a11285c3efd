//! Criterion micro-benchmarks of spanbus's hot paths: emitting with 0, 1 and 4 handlers, a
//! span's enter and exit (closure and future forms), reading the current span, and a record's
//! way through a handler task called generically or boxed (`BoxHandler`).
//!
//! Run: `cargo bench --bench hot_paths`.
//!
//! Emitting with handlers measures the emitter's side only (`Emit::now`: build the record and
//! push it); the handler tasks drain on the runtime's workers meanwhile, and each batch ends
//! with a flush so the queue never grows past one batch.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde::Serialize;
use spanbus::handlers::NullEventHandler;
use spanbus::{Dispatcher, Event, Handler, Record, SpanFutureExt, current_span};

#[derive(Serialize)]
struct Small {
    n: u64,
    s: &'static str,
}

impl Event for Small {
    const NAME: &'static str = "Small";
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn emit(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("emit_now");
    for handlers in [0usize, 1, 4] {
        let d = Dispatcher::new("bench").expect("name");
        {
            let _enter = rt.enter();
            for _ in 0..handlers {
                d.add_event_handler(NullEventHandler).expect("handler");
            }
        }
        group.bench_function(format!("{handlers}_handlers"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let _ = black_box(d.event(Small { n: i, s: "abc" }).now());
                }
                let elapsed = start.elapsed();
                rt.block_on(d.flush());
                elapsed
            });
        });
        rt.block_on(d.shutdown(Duration::from_secs(5)));
    }
    group.finish();
}

fn spans(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("span_enter_exit");
    let idle = Dispatcher::new("idle").expect("name");
    group.bench_function("closure_no_handler", |b| {
        b.iter(|| idle.span("s").in_scope(|| black_box(current_span())));
    });
    group.bench_function("future_no_handler", |b| {
        b.iter(|| rt.block_on(async { black_box(current_span()) }.in_span(idle.span("s"))));
    });
    let d = Dispatcher::new("busy").expect("name");
    {
        let _enter = rt.enter();
        d.add_span_handler(spanbus::handlers::NullSpanHandler)
            .expect("handler");
    }
    group.bench_function("closure_1_handler", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                d.span("s").in_scope(|| black_box(current_span()));
            }
            let elapsed = start.elapsed();
            rt.block_on(d.flush());
            elapsed
        });
    });
    group.bench_function("future_1_handler", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    async { black_box(current_span()) }
                        .in_span(d.span("s"))
                        .await;
                }
                let elapsed = start.elapsed();
                d.flush().await;
                elapsed
            })
        });
    });
    group.finish();
    rt.block_on(d.shutdown(Duration::from_secs(5)));
}

fn context(c: &mut Criterion) {
    let mut group = c.benchmark_group("context");
    group.bench_function("current_span_outside", |b| {
        b.iter(|| black_box(current_span()))
    });
    let d = Dispatcher::new("ctx").expect("name");
    let open = d.span("s").enter();
    open.in_scope(|| {
        group.bench_function("current_span_inside", |b| {
            b.iter(|| black_box(current_span()))
        });
        group.bench_function("context_current_inside", |b| {
            b.iter(|| black_box(spanbus::context::Context::current()))
        });
    });
    open.exit();
    group.finish();
}

/// Handles a record by reading its class: the least a handler does.
struct Touch;

impl Handler for Touch {
    async fn handle(&mut self, record: &Record) {
        black_box(record.class_name());
    }
}

/// A record's handling on its handler task, the same handler added generically and boxed, so
/// the difference is the boxed call (one future allocated per record). On a current-thread
/// runtime the handler task runs only inside the flush: records are emitted untimed, in chunks,
/// and only the flush that drains them is timed.
fn handler_task(c: &mut Criterion) {
    const CHUNK: u64 = 4096;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("handler_task");
    for form in ["generic", "boxed"] {
        let d = Dispatcher::new("bench").expect("name");
        {
            let _enter = rt.enter();
            match form {
                "generic" => d.add_handler(Touch),
                _ => d.add_handler(spanbus::handler::boxed(Touch)),
            }
            .expect("handler");
        }
        group.bench_function(form, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    for i in 0..n {
                        let _ = black_box(d.event(Small { n: i, s: "abc" }).now());
                    }
                    let start = Instant::now();
                    rt.block_on(d.flush());
                    elapsed += start.elapsed();
                    left -= n;
                }
                elapsed
            });
        });
        rt.block_on(d.shutdown(Duration::from_secs(5)));
    }
    group.finish();
}

criterion_group!(benches, emit, spans, context, handler_task);
criterion_main!(benches);
