//! The OTLP endpoint is down (a closed port on 127.0.0.1), then comes back (a tiny local
//! server that accepts OTLP POSTs and answers 200). The application is never blocked, the
//! overflow of a small queue is counted exactly, and export resumes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use spanbus::integrations::otlp::{OtlpExporter, OtlpExporterBuilder, OtlpHandle, OtlpStats};
use spanbus::{Dispatcher, Event, SpanId, current_span};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Serialize)]
struct Step {
    n: usize,
}
impl Event for Step {
    const NAME: &'static str = "Step";
}

const QUEUE: usize = 8;
const BATCH: usize = 4;

/// Enters and exits `n` spans, each with one event; returns their ids and how long it took.
fn burst(d: &Dispatcher, n: usize) -> (Vec<SpanId>, Duration) {
    let started = Instant::now();
    let ids = (0..n)
        .map(|i| {
            d.span(format!("work-{i}")).in_scope(|| {
                d.event(Step { n: i }).now().unwrap();
                current_span().unwrap().span_id()
            })
        })
        .collect();
    (ids, started.elapsed())
}

async fn wait_until(handle: &OtlpHandle, what: &str, ok: impl Fn(&OtlpStats) -> bool) -> OtlpStats {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let s = handle.stats();
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A minimal OTLP/HTTP endpoint: reads each POST (keep-alive), keeps its body, answers 200.
async fn serve(listener: TcpListener, bodies: Arc<Mutex<Vec<Vec<u8>>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(connection(stream, bodies.clone()));
    }
}

async fn connection(mut stream: TcpStream, bodies: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("post /v1/traces "), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        bodies
            .lock()
            .unwrap()
            .push(buf[head_end..head_end + len].to_vec());
        buf.drain(..head_end + len);
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn found(bodies: &Mutex<Vec<Vec<u8>>>, ids: &[SpanId]) -> usize {
    let bodies = bodies.lock().unwrap();
    ids.iter()
        .filter(|id| {
            let bytes = id.to_u64().to_be_bytes();
            bodies.iter().any(|b| b.windows(8).any(|w| w == bytes))
        })
        .count()
}

/// A loopback port with nothing listening on it (the endpoint is down).
async fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An exporter to `port` on loopback with the small queue and batches of these tests.
fn exporter_to(port: u16) -> OtlpExporterBuilder {
    OtlpExporter::builder()
        .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .queue_capacity(QUEUE)
        .batch_size(BATCH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_never_blocks_counts_overflow_and_resumes() {
    let port = unused_port().await;
    let flush_timeout = Duration::from_millis(300);
    let exporter = exporter_to(port)
        .scheduled_delay(Duration::from_millis(5))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .export_timeout(Duration::from_secs(2))
        .flush_timeout(flush_timeout)
        .build()
        .unwrap();
    let handle = exporter.handle();
    let d = Dispatcher::new("down").unwrap();
    d.add_handler(exporter).unwrap();

    // Endpoint down: 500 spans with an event each, as fast as the application can go.
    let (first, took) = burst(&d, 500);
    let started = Instant::now();
    d.flush().await;
    let flushed = started.elapsed();
    println!(
        "500 spans entered/exited in {took:?}; flush returned after {flushed:?} (endpoint down)"
    );
    assert!(
        took < Duration::from_secs(2),
        "the application was slowed: {took:?}"
    );
    assert!(
        flushed < flush_timeout + Duration::from_secs(1),
        "flush waited {flushed:?}"
    );

    let s = wait_until(&handle, "two failed attempts", |s| s.failed_batches >= 2).await;
    println!("endpoint down: {s:?}, last error {:?}", handle.last_error());
    assert_eq!(s.exported, 0);
    assert_eq!(
        s.dropped + s.pending,
        500,
        "every span counted exactly once"
    );
    assert!(s.pending <= (QUEUE + BATCH) as u64, "{s:?}");
    assert!(s.dropped >= (500 - QUEUE - BATCH) as u64, "{s:?}");
    assert!(s.retries >= 1, "{s:?}");

    // While the exporter keeps retrying, the application still runs at full speed.
    let before = handle.stats();
    let (second, took) = burst(&d, 200);
    println!("200 more spans in {took:?} while retrying");
    assert!(
        took < Duration::from_secs(2),
        "the application was slowed: {took:?}"
    );
    d.flush().await;
    let s = wait_until(&handle, "the second burst counted", |s| {
        s.dropped + s.pending == 700
    })
    .await;
    assert!(
        s.dropped >= before.dropped + 200 - (QUEUE + BATCH) as u64,
        "{s:?}"
    );

    // The endpoint comes back on the same port.
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let server = tokio::spawn(serve(listener, bodies.clone()));
    let s = wait_until(&handle, "the queued spans exported", |s| {
        s.pending == 0 && s.exported > 0
    })
    .await;
    println!("endpoint back: {s:?}");
    assert_eq!(s.exported + s.dropped, 700, "{s:?}");
    assert_eq!(s.abandoned, 0);
    let all: Vec<SpanId> = first.iter().chain(&second).copied().collect();
    assert_eq!(
        found(&bodies, &all) as u64,
        s.exported,
        "the exported spans arrived"
    );

    // And new spans flow normally again.
    let (third, _) = burst(&d, 5);
    d.flush().await;
    let s = handle.stats();
    assert_eq!(s.exported + s.dropped, 705, "{s:?}");
    assert_eq!(found(&bodies, &third), 5);

    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    let s = handle.stats();
    println!("final: {s:?}");
    assert_eq!((s.pending, s.abandoned), (0, 0));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_endpoint_down_returns_by_its_deadline_and_counts_what_was_abandoned() {
    let port = unused_port().await;
    let close_timeout = Duration::from_millis(400);
    let exporter = exporter_to(port)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .flush_timeout(Duration::from_millis(100))
        .close_timeout(close_timeout)
        .build()
        .unwrap();
    let handle = exporter.handle();
    let d = Dispatcher::new("down_at_shutdown").unwrap();
    d.add_handler(exporter).unwrap();
    let _ = burst(&d, 50);

    let started = Instant::now();
    let report = d.shutdown(Duration::from_secs(3)).await;
    let took = started.elapsed();
    let s = handle.stats();
    println!("shutdown with the endpoint down took {took:?}: {s:?}");
    assert!(report.is_clean(), "{report:?}");
    assert!(
        took >= close_timeout,
        "the final export was retried until its deadline"
    );
    assert!(took < close_timeout + Duration::from_secs(1), "{took:?}");
    assert_eq!(s.exported, 0);
    assert_eq!(s.pending, 0);
    assert_eq!(s.dropped + s.abandoned, 50, "{s:?}");
    assert!(
        s.abandoned >= 1 && s.abandoned <= (QUEUE + BATCH) as u64,
        "{s:?}"
    );
}
