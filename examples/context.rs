// Run with: cargo run --example context
//
// One root span, and the current span carried across every kind of crossing: an `.await`, a
// spawned task, the blocking pool, a std thread, a JoinSet, a stream, and a context captured,
// serialized to JSON and restored in a task that starts from nothing (as another process
// would). A SimpleSpanHandler records the spans; the trace tree is printed by parent at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use serde::Serialize;
use spanbus::context::Context;
use spanbus::handlers::{ClosedSpan, SimpleSpanHandler, SpanOutcome};
use spanbus::{Event, JoinSetExt, SpanId, SpanStreamExt};
use tokio::task::JoinSet;

#[derive(Serialize)]
struct ChunkStreamed {
    text: String,
}

impl Event for ChunkStreamed {
    const NAME: &'static str = "ChunkStreamed";
}

struct Retriever {
    top_k: usize,
}

#[spanbus::span(dispatcher = "demo.retriever")]
impl Retriever {
    async fn retrieve(&self, query: &str) -> Vec<String> {
        tokio::task::yield_now().await; // crossing 1: an .await
        (0..self.top_k).map(|i| format!("{query}#{i}")).collect()
    }

    fn score(&self, doc: &str) -> usize {
        doc.len()
    }
}

#[spanbus::span(dispatcher = "demo")]
fn embed_blocking(text: String) -> Vec<f32> {
    text.bytes().map(f32::from).collect()
}

#[spanbus::span(dispatcher = "demo")]
async fn rerank(doc: String) -> usize {
    doc.len()
}

#[spanbus::span(dispatcher = "demo")]
fn on_a_thread(worker: u32) -> u32 {
    worker * 10
}

#[spanbus::span(dispatcher = "demo", name = "remote_job")]
async fn remote_job(payload: String) -> Result<usize, String> {
    if payload.is_empty() {
        return Err("empty payload".into());
    }
    Ok(payload.len())
}

#[spanbus::span(dispatcher = "demo", tags(pipeline = "context-demo"))]
async fn query(question: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let retriever = Retriever { top_k: 3 };
    let docs = retriever.retrieve(&question).await;
    let _ = docs.iter().map(|d| retriever.score(d)).sum::<usize>();

    // crossing 2: a spawned task
    let first = docs[0].clone();
    spanbus::spawn(rerank(first)).await?;

    // crossing 3: the blocking pool
    let q = question.clone();
    spanbus::spawn_blocking(move || embed_blocking(q)).await?;

    // crossing 4: a std thread
    let worker = spanbus::thread::spawn(|| on_a_thread(7));
    worker.join().map_err(|_| "the worker thread panicked")?;

    // crossing 5: a JoinSet
    let mut set = JoinSet::new();
    for doc in docs.clone() {
        set.spawn_in_current_span(rerank(doc));
    }
    while let Some(done) = set.join_next().await {
        done?;
    }

    // crossing 6: a stream, spanned until it ends; each chunk's event belongs to it
    let d = spanbus::get_dispatcher("demo")?;
    let chunks: Vec<String> = stream::iter(["The ", "answer ", "is 42."])
        .then(|c| {
            let d = d.clone();
            async move {
                d.event(ChunkStreamed { text: c.into() }).await.ok();
                c.to_owned()
            }
        })
        .in_span(d.span("stream_answer"))
        .collect()
        .await;
    println!("streamed: {}", chunks.concat());

    // crossing 7: capture -> JSON -> restore, as another process would
    let wire = serde_json::to_string(&Context::current().with_extra("tracestate", "demo=1"))?;
    println!("context on the wire: {wire}");
    let remote = tokio::spawn(async move {
        // A raw task starts from an empty context; the restored one puts it back in the trace.
        let restored: Context = serde_json::from_str(&wire)?;
        let out = restored.attach(remote_job("payload".into())).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out)
    });
    remote.await??;
    Ok(())
}

fn print_tree(spans: &[ClosedSpan]) {
    let mut children: BTreeMap<Option<SpanId>, Vec<&ClosedSpan>> = BTreeMap::new();
    for span in spans {
        children.entry(span.parent).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start);
    }
    fn walk(
        children: &BTreeMap<Option<SpanId>, Vec<&ClosedSpan>>,
        parent: Option<SpanId>,
        depth: usize,
    ) {
        for span in children.get(&parent).into_iter().flatten() {
            let outcome = match &span.outcome {
                SpanOutcome::Exited => String::new(),
                SpanOutcome::Dropped { reason, message } => {
                    format!("  [dropped: {reason} {message}]")
                }
            };
            println!(
                "{:indent$}{} ({} µs, {}){outcome}",
                "",
                span.name,
                span.duration().num_microseconds().unwrap_or(0),
                span.dispatcher,
                indent = depth * 2
            );
            walk(children, Some(span.id), depth + 1);
        }
    }
    walk(&children, None, 0);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let spans = SimpleSpanHandler::new();
    spanbus::get_dispatcher("demo")?.add_span_handler(spans.clone())?;

    query("what is the answer?".into()).await?;

    let report = spanbus::shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");

    let closed = spans.spans();
    println!("\ntrace tree ({} spans):", closed.len());
    print_tree(&closed);

    // Every span is in one trace.
    let traces: std::collections::BTreeSet<_> = closed.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), 1, "the crossings split the trace");
    Ok(())
}
