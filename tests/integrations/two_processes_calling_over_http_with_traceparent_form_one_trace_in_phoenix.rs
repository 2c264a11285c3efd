//! Phoenix test 2: two OS processes. Process A (this test) starts process B (this same test
//! binary, re-executed with `SPANBUS_TEST_SERVER_MODE` set to run only this test, named by its
//! full path in the binary: see [`harness_name`]), calls it over loopback HTTP with a
//! `traceparent` header, and both export to Phoenix. Read back, the spans of both processes
//! form one trace, with B's root parented under A's calling span. Run by
//! `.ci/phoenix-tests.sh` (ignored otherwise).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use crate::support::phoenix::{
    by_name, phoenix_url, require_phoenix, unique_project, wait_for_spans,
};
use serde_json::{Value, json};
use spanbus::context::Context;
use spanbus::events::{QueryEndEvent, QueryStartEvent};
use spanbus::integrations::otlp::OtlpExporter;
use spanbus::propagation::{extract, inject};
use spanbus::{Dispatcher, SpanFutureExt, current_span};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SERVER_MODE: &str = "SPANBUS_TEST_SERVER_MODE";
const PROJECT: &str = "SPANBUS_TEST_PROJECT";
const TEST: &str = "two_processes_form_one_trace_in_phoenix";

/// This test's name as the test harness knows it, for `--exact`: its module path in this
/// binary (the path without the binary's own name), then the fn.
fn harness_name() -> String {
    match module_path!().split_once("::") {
        Some((_binary, module)) => format!("{module}::{TEST}"),
        None => TEST.to_owned(),
    }
}

fn exporter(project: &str, service: &str) -> OtlpExporter {
    OtlpExporter::builder()
        .endpoint(format!("{}/v1/traces", phoenix_url()))
        .project_name(project)
        .service_name(service)
        // B.lookup's return value is read back as its output.
        .capture_content(true)
        .build()
        .unwrap()
}

/// Reads an HTTP/1.1 request or response head; returns the first line and the headers with
/// lower-cased names.
async fn read_head(stream: &mut BufReader<TcpStream>) -> (String, HashMap<String, String>) {
    let mut first = String::new();
    stream.read_line(&mut first).await.unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    (first.trim_end().to_owned(), headers)
}

/// Process B: serve one request under the caller's trace context, export, exit.
async fn serve_one_request() {
    let project = std::env::var(PROJECT).unwrap();
    let d = Dispatcher::new("service_b").unwrap();
    let exporter = exporter(&project, "service-b");
    let stats = exporter.handle();
    d.add_handler(exporter).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("LISTENING {}", listener.local_addr().unwrap().port());
    let (stream, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
        .await
        .expect("process A never called")
        .unwrap();
    let mut stream = BufReader::new(stream);
    let (request_line, headers) = read_head(&mut stream).await;
    assert!(request_line.starts_with("GET /answer "), "{request_line}");

    let ctx = extract(&headers).expect("a valid traceparent from process A");
    let handled = ctx
        .attach(
            async {
                let handled = current_span().unwrap();
                async {
                    d.event(QueryStartEvent {
                        query: json!("what is spanbus?"),
                    })
                    .await
                    .unwrap();
                    d.event(QueryEndEvent {
                        query: json!("what is spanbus?"),
                        response: json!({"response": "an instrumentation bus"}),
                    })
                    .await
                    .unwrap();
                }
                .in_span(d.span("B.lookup"))
                .await;
                handled
            }
            .in_span(d.span("B.handle").tag("process", "B")),
        )
        .await;

    let body = format!("{} {}", handled.trace_id(), handled.span_id());
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
    stream.get_mut().shutdown().await.unwrap();

    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    let s = stats.stats();
    println!("process B exporter: {s:?}");
    assert_eq!(s.exported, 2, "last error: {:?}", stats.last_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Phoenix: bash .ci/phoenix-tests.sh"]
async fn two_processes_form_one_trace_in_phoenix() {
    if std::env::var_os(SERVER_MODE).is_some() {
        return serve_one_request().await;
    }
    let Some(base) = require_phoenix(TEST).await else {
        return;
    };
    let project = unique_project("spanbus-two-processes");

    // Start process B: this test binary, in server mode.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            &harness_name(),
            "--exact",
            "--include-ignored",
            "--nocapture",
        ])
        .env(SERVER_MODE, "1")
        .env(PROJECT, &project)
        .env("SPANBUS_PHOENIX_URL", &base)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut child_out = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = child_out.next_line().await.unwrap() {
            if let Some(port) = line.strip_prefix("LISTENING ") {
                return port.trim().parse().unwrap();
            }
        }
        panic!("process B ended without listening");
    })
    .await
    .expect("process B did not start listening");
    let rest_of_b = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = child_out.next_line().await {
            lines.push(line);
        }
        lines
    });

    // Process A: a request span, and inside it the span that calls B.
    let d = Dispatcher::new("service_a").unwrap();
    let exporter = exporter(&project, "service-a");
    let stats = exporter.handle();
    d.add_handler(exporter).unwrap();
    let (root, caller, reply) = async {
        let root = current_span().unwrap();
        let (caller, reply) = async {
            let caller = current_span().unwrap();
            let mut headers: Vec<(String, String)> = Vec::new();
            inject(&Context::current(), &mut headers);
            let mut request = String::from("GET /answer HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            for (k, v) in &headers {
                request.push_str(&format!("{k}: {v}\r\n"));
            }
            request.push_str("Connection: close\r\n\r\n");
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut stream = BufReader::new(stream);
            stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .unwrap();
            let (status, _) = read_head(&mut stream).await;
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            let mut body = String::new();
            stream.read_to_string(&mut body).await.unwrap();
            (caller, body)
        }
        .in_span(d.span("A.call_b").tag("peer", "B"))
        .await;
        (root, caller, reply)
    }
    .in_span(d.span("A.request"))
    .await;

    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("process B did not exit")
        .unwrap();
    let b_output = rest_of_b.await.unwrap();
    println!("process B said: {b_output:?}");
    assert!(status.success(), "process B failed: {status}");

    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        stats.stats().exported,
        2,
        "last error: {:?}",
        stats.last_error()
    );

    // B answered with its root span, in A's trace.
    let (b_trace, b_root) = reply.split_once(' ').unwrap();
    let trace_id = root.trace_id().to_string();
    assert_eq!(b_trace, trace_id);

    let spans = wait_for_spans(&base, &project, &trace_id, 4, Duration::from_secs(60)).await;
    println!(
        "Phoenix returned {} spans for trace {trace_id}: {:?}",
        spans.len(),
        spans.iter().map(|s| s["name"].clone()).collect::<Vec<_>>()
    );
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let a_request = by_name(&spans, "A.request");
    let a_call = by_name(&spans, "A.call_b");
    let b_handle = by_name(&spans, "B.handle");
    let b_lookup = by_name(&spans, "B.lookup");
    assert_eq!(a_request["parent_id"], Value::Null);
    assert_eq!(a_call["parent_id"], root.span_id().to_string());
    assert_eq!(a_call["context"]["span_id"], caller.span_id().to_string());
    assert_eq!(b_handle["context"]["span_id"], b_root);
    assert_eq!(
        b_handle["parent_id"],
        caller.span_id().to_string(),
        "B's root is parented under A's calling span"
    );
    assert_eq!(b_lookup["parent_id"], b_root);
    assert_eq!(b_handle["attributes"]["process"], "B");
    assert_eq!(
        b_lookup["attributes"]["output.value"],
        "an instrumentation bus"
    );
    println!(
        "one trace across two processes: A.request -> A.call_b -> B.handle -> B.lookup (project {project})"
    );
}
