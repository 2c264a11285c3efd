// Run with: cargo run --example quickstart
//
// A two-step pipeline on a dispatcher hierarchy: spans around async functions, an event in
// each, a span handler that records them, an event handler that prints them, and a shutdown
// that flushes everything and reports.

use std::time::Duration;

use serde::Serialize;
use spanbus::handlers::{SimpleSpanHandler, SpanOutcome};
use spanbus::{Dispatcher, Event, EventHandler, Record, SpanFutureExt};

#[derive(Serialize)]
struct Retrieved {
    query: String,
    documents: usize,
}

impl Event for Retrieved {
    const NAME: &'static str = "Retrieved";
}

#[derive(Serialize)]
struct Answered {
    tokens: u64,
}

impl Event for Answered {
    const NAME: &'static str = "Answered";
}

/// Prints every event as a JSON line.
struct PrintEvents;

impl EventHandler for PrintEvents {
    async fn handle(&mut self, record: &Record) {
        match record.to_json() {
            Ok(json) => println!("event: {}", serde_json::Value::Object(json)),
            Err(e) => eprintln!("unprintable event: {e}"),
        }
    }
}

async fn retrieve(retriever: &Dispatcher, query: &str) -> Result<usize, spanbus::error::EmitError> {
    let documents = query.split_whitespace().count();
    retriever
        .event(Retrieved {
            query: query.to_owned(),
            documents,
        })
        .await?;
    Ok(documents)
}

async fn answer(app: &Dispatcher, retriever: &Dispatcher, query: &str) -> Result<u64, String> {
    let documents = retrieve(retriever, query)
        .in_span_result(retriever.span("retrieve"))
        .await
        .map_err(|e| e.to_string())?;
    if documents == 0 {
        return Err("nothing to answer from".to_owned());
    }
    let tokens = 10 * documents as u64;
    app.event(Answered { tokens })
        .await
        .map_err(|e| e.to_string())?;
    Ok(tokens)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = spanbus::get_dispatcher("quickstart")?;
    let retriever = spanbus::get_dispatcher("quickstart.retriever")?;

    let spans = SimpleSpanHandler::new();
    app.add_span_handler(spans.clone())?;
    app.add_event_handler(PrintEvents)?;

    for query in ["what is a span", ""] {
        let outcome = spanbus::with_tags(
            [("query", query)],
            answer(&app, &retriever, query).in_span_result(app.span("query")),
        )
        .await;
        println!("query {query:?} -> {outcome:?}");
    }

    let report = spanbus::shutdown(Duration::from_secs(5)).await;
    for span in spans.spans() {
        let outcome = match &span.outcome {
            SpanOutcome::Exited => "ok".to_owned(),
            SpanOutcome::Dropped { reason, message } => format!("{reason}: {message}"),
        };
        println!(
            "span {:<10} {:>8.3} ms  {outcome}",
            span.name,
            span.duration().num_microseconds().unwrap_or(0) as f64 / 1000.0
        );
    }
    for h in &report.handlers {
        println!(
            "handler {} delivered={} dropped={} panicked={} timed_out={}",
            h.stats.name, h.stats.delivered, h.stats.dropped, h.stats.panicked, h.timed_out
        );
    }
    Ok(())
}
