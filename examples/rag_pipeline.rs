// Run with: cargo run --release --example rag_pipeline
//
// A simulated RAG service under load: 100 concurrent queries, each going
// embed → retrieve → rerank → LLM chat (streamed chunks), instrumented with spans and
// llama-index's catalog events on a dispatcher hierarchy (`rag`, `rag.embedding`,
// `rag.retriever`, `rag.reranker`, `rag.llm`). Some queries fail (the vector store or the
// reranker returns an error) and some time out (the LLM stalls; `tokio::time::timeout` drops
// the query future, so its spans end as `Cancelled`).
//
// It prints a progress line while running, the trace trees of three queries (one ok, one
// failed, one timed out) and a summary; it writes target/spanbus/trace.jsonl (every record,
// one JSON object per line, and a summary line per trace) and target/spanbus/trace.html (a
// waterfall of every trace, open it in a browser); and it ends with
// `spanbus::shutdown(..).await`.
//
// With `--features otlp` and OTEL_EXPORTER_OTLP_ENDPOINT set, it also exports every span to
// that OTLP endpoint, prompts and responses included (it opts in to content capture; see the
// README's "See your traces in Phoenix, MLflow, Langfuse or any OTLP backend"):
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:6006 cargo run --release --example rag_pipeline --features otlp
// The other OTEL_EXPORTER_OTLP_* variables apply too; over gRPC, to Phoenix's gRPC port:
//   OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \
//     cargo run --release --example rag_pipeline --features otlp-grpc
// For MLflow, also name the experiment the traces go to:
//   MLFLOW_EXPERIMENT_ID=1 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:5000 cargo run --release --example rag_pipeline --features otlp

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use spanbus::error::EmitError;
use spanbus::events::{
    ChatMessage, ChatResponse, Document, EmbeddingEndEvent, EmbeddingStartEvent, LLMChatEndEvent,
    LLMChatInProgressEvent, LLMChatStartEvent, NodeWithScore, QueryEndEvent, QueryStartEvent,
    ReRankEndEvent, ReRankStartEvent, RetrievalEndEvent, RetrievalStartEvent, TokenUsage,
};
use spanbus::handlers::{
    ClosedSpan, HtmlReport, HtmlReportOptions, JsonlHandler, SimpleSpanHandler, SpanOutcome,
};
use spanbus::llm::{Prices, Rollups};
use spanbus::{Dispatcher, EventHandler, Record, SpanFutureExt, TraceId, current_span};
use tokio::sync::Semaphore;

const QUERIES: usize = 100;
/// Queries arrive this far apart (all 100 are in flight as concurrent tasks from the start).
const ARRIVAL_GAP: Duration = Duration::from_millis(8);
/// Each query's deadline, enforced with `tokio::time::timeout`.
const DEADLINE: Duration = Duration::from_millis(500);
/// The LLM provider's concurrency limit.
const LLM_SLOTS: usize = 16;

/// Prices per million input and output tokens, for the costs in the trees, the summary and
/// the page. They are this example's, not spanbus's (which ships none): put your contract's.
fn prices() -> Prices {
    Prices::new()
        .model("gpt-4o-mini", 0.15, 0.60)
        .model("text-embedding-3-small", 0.02, 0.0)
}

const QUESTIONS: [&str; 8] = [
    "What is a span?",
    "How do handlers get events?",
    "Why is shutdown awaited?",
    "What does lossy delivery drop?",
    "How does the context cross an await?",
    "What is a dispatcher hierarchy?",
    "How are cancelled futures reported?",
    "Which fields does a record carry?",
];

/// What happens to query `i` (deterministic, so every run shows the same mix).
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Fine,
    VectorStoreDown,
    RerankerError,
    LlmStalls,
}

fn fate(i: usize) -> Fate {
    if i % 10 == 3 {
        Fate::VectorStoreDown
    } else if i % 25 == 11 {
        Fate::RerankerError
    } else if i % 12 == 7 {
        Fate::LlmStalls
    } else {
        Fate::Fine
    }
}

/// A small deterministic pseudo-random number for query `i`, draw `k`.
fn noise(i: usize, k: u64) -> u64 {
    let mut x =
        (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}

fn ms(i: usize, k: u64, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + noise(i, k) % (hi - lo + 1))
}

#[derive(Debug)]
enum RagError {
    VectorStore(&'static str),
    Reranker(u16),
    Emit(EmitError),
}

impl fmt::Display for RagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RagError::VectorStore(why) => write!(f, "vector store: {why}"),
            RagError::Reranker(status) => write!(f, "reranker returned HTTP {status}"),
            RagError::Emit(e) => write!(f, "instrumentation: {e}"),
        }
    }
}

impl From<EmitError> for RagError {
    fn from(e: EmitError) -> Self {
        RagError::Emit(e)
    }
}

struct Rag {
    app: Dispatcher,
    embedding: Dispatcher,
    retriever: Dispatcher,
    reranker: Dispatcher,
    llm: Dispatcher,
    llm_slots: Semaphore,
}

/// A model's `model_dict`, as llama-index's `to_dict()` gives it (`class_name` names the
/// provider's integration).
fn model(class_name: &str, name: &str) -> Map<String, Value> {
    json!({"class_name": class_name, "model_name": name, "temperature": 0.1})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[spanbus::span(dispatcher = "rag.embedding", name = "embed", skip(rag, i))]
async fn embed(rag: &Rag, i: usize, query: &str) -> Result<Vec<f64>, RagError> {
    rag.embedding
        .event(EmbeddingStartEvent {
            model_dict: model("OpenAIEmbedding", "text-embedding-3-small"),
        })
        .await?;
    tokio::time::sleep(ms(i, 1, 2, 4)).await;
    let vector: Vec<f64> = (0..8)
        .map(|k| (noise(i, 10 + k) % 1000) as f64 / 1000.0)
        .collect();
    rag.embedding
        .event(EmbeddingEndEvent {
            chunks: vec![query.to_owned()],
            embeddings: vec![vector.clone()],
            token_count: Some(query.split_whitespace().count() as u64),
        })
        .await?;
    Ok(vector)
}

#[spanbus::span(dispatcher = "rag.retriever", name = "retrieve", skip(rag, i, _vector))]
async fn retrieve(
    rag: &Rag,
    i: usize,
    query: &str,
    _vector: &[f64],
) -> Result<Vec<NodeWithScore>, RagError> {
    rag.retriever
        .event(RetrievalStartEvent {
            str_or_query_bundle: json!(query),
        })
        .await?;
    tokio::time::sleep(ms(i, 2, 3, 8)).await;
    if fate(i) == Fate::VectorStoreDown {
        return Err(RagError::VectorStore("connection reset by peer"));
    }
    let nodes: Vec<NodeWithScore> = (0..8u64)
        .map(|k| {
            let doc = Document::new(format!("doc-{}", noise(i, 20 + k) % 500), "…");
            NodeWithScore::new(doc, 0.9 - k as f64 * 0.05)
        })
        .collect();
    rag.retriever
        .event(RetrievalEndEvent {
            str_or_query_bundle: json!(query),
            nodes: nodes.clone(),
        })
        .await?;
    Ok(nodes)
}

#[spanbus::span(dispatcher = "rag.reranker", name = "rerank", skip(rag, i, nodes))]
async fn rerank(
    rag: &Rag,
    i: usize,
    query: &str,
    nodes: Vec<NodeWithScore>,
) -> Result<Vec<NodeWithScore>, RagError> {
    rag.reranker
        .event(ReRankStartEvent {
            query: Some(json!(query)),
            nodes: nodes.clone(),
            top_n: 3,
            model_name: "cross-encoder/ms-marco-MiniLM-L-6-v2".to_owned(),
        })
        .await?;
    tokio::time::sleep(ms(i, 3, 2, 4)).await;
    if fate(i) == Fate::RerankerError {
        return Err(RagError::Reranker(503));
    }
    let top: Vec<NodeWithScore> = nodes.into_iter().take(3).collect();
    rag.reranker
        .event(ReRankEndEvent { nodes: top.clone() })
        .await?;
    Ok(top)
}

#[spanbus::span(dispatcher = "rag.llm", name = "llm.chat", skip(rag, i, context))]
async fn chat(
    rag: &Rag,
    i: usize,
    query: &str,
    context: &[NodeWithScore],
) -> Result<String, RagError> {
    // Waiting for a free slot at the provider is part of the call's latency.
    let _slot = rag.llm_slots.acquire().await.ok();
    let messages = vec![
        ChatMessage::system(format!("Answer from {} documents.", context.len())),
        ChatMessage::user(query),
    ];
    rag.llm
        .event(LLMChatStartEvent {
            messages: messages.clone(),
            additional_kwargs: Map::new(),
            model_dict: model("openai_llm", "gpt-4o-mini"),
        })
        .await?;
    let chunks = 6 + (noise(i, 4) % 7) as usize;
    let mut answer = String::new();
    for k in 0..chunks {
        tokio::time::sleep(ms(i, 100 + k as u64, 1, 3)).await;
        if fate(i) == Fate::LlmStalls && k == 3 {
            // The provider stops streaming; the query's deadline will cancel us.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let delta = format!("tok{k} ");
        answer.push_str(&delta);
        rag.llm
            .event(LLMChatInProgressEvent {
                messages: messages.clone(),
                response: ChatResponse::new(ChatMessage::assistant(answer.clone()))
                    .with_delta(delta),
            })
            .await?;
    }
    // What the provider would report with the answer. The simulated model has no tokenizer,
    // so the counts are made up from the text: about 4 characters per token, the usual rule of
    // thumb for English.
    let prompt_chars: usize = messages
        .iter()
        .filter_map(|m| m.content.as_deref())
        .map(|text| text.chars().count())
        .sum();
    let usage = TokenUsage::new(
        approx_tokens(prompt_chars),
        approx_tokens(answer.chars().count()),
    );
    rag.llm
        .event(LLMChatEndEvent {
            messages,
            response: Some(
                ChatResponse::new(ChatMessage::assistant(answer.clone()))
                    // Every fourth prompt is partly served from the provider's cache.
                    .with_usage(if i.is_multiple_of(4) {
                        usage.with_cache_read(64.min(usage.input))
                    } else {
                        usage
                    })
                    .with_model("gpt-4o-mini")
                    .with_finish_reason("stop"),
            ),
        })
        .await?;
    Ok(answer)
}

/// A token count for `chars` characters of text, at about 4 characters per token.
fn approx_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// One query through the pipeline; each stage is a child span of the query's span.
async fn query(rag: &Rag, i: usize, text: &str) -> Result<String, RagError> {
    rag.app
        .event(QueryStartEvent { query: json!(text) })
        .await?;
    // Each stage is spanned by its #[spanbus::span] attribute, on its own dispatcher.
    let vector = embed(rag, i, text).await?;
    let nodes = retrieve(rag, i, text, &vector).await?;
    let top = rerank(rag, i, text, nodes).await?;
    let answer = chat(rag, i, text, &top).await?;
    rag.app
        .event(QueryEndEvent {
            query: json!(text),
            response: json!({"response": answer}),
        })
        .await?;
    Ok(answer)
}

/// Counts events by class name.
#[derive(Clone, Default)]
struct EventCensus(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl EventCensus {
    fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

impl EventHandler for EventCensus {
    async fn handle(&mut self, record: &Record) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(record.class_name()).or_default() += 1;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    Failed,
    TimedOut,
}

#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    ok: AtomicUsize,
    failed: AtomicUsize,
    timed_out: AtomicUsize,
}

impl Progress {
    fn line(&self) -> String {
        format!(
            "queries {:>3}/{QUERIES}  ok {:>3}  failed {:>2}  timed out {:>2}",
            self.done.load(Ordering::Acquire),
            self.ok.load(Ordering::Acquire),
            self.failed.load(Ordering::Acquire),
            self.timed_out.load(Ordering::Acquire),
        )
    }
}

// ---- OpenTelemetry export: the attachment point ---------------------------------------------
// When OTEL_EXPORTER_OTLP_ENDPOINT (a base URL such as http://127.0.0.1:6006, the Phoenix
// default) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a full URL) is set and the example is built
// with `--features otlp`, the OTLP exporter is attached to the `rag` dispatcher HERE, next to the
// other handlers; the Phoenix project is $PHOENIX_PROJECT_NAME or `spanbus-rag`, the MLflow
// experiment $MLFLOW_EXPERIMENT_ID (sent as the header `x-mlflow-experiment-id`). Returns a
// function that describes the exporter's counters, for the summary.
type ExportStats = Box<dyn Fn() -> String>;

#[cfg(feature = "otlp")]
fn attach_otlp_exporter(rag: &Dispatcher) -> Option<ExportStats> {
    use spanbus::integrations::otlp::{OtlpExporter, endpoint_from_env};
    endpoint_from_env()?;
    let project = std::env::var("PHOENIX_PROJECT_NAME").unwrap_or_else(|_| "spanbus-rag".into());
    // The endpoint, protocol, headers and the rest come from the OTEL_EXPORTER_OTLP_* variables.
    let mut builder = OtlpExporter::builder();
    // MLflow files the traces it receives under the experiment this header names.
    if let Ok(experiment) = std::env::var("MLFLOW_EXPERIMENT_ID") {
        builder = builder.header("x-mlflow-experiment-id", experiment);
    }
    let exporter = builder
        .project_name(&project)
        .service_name("rag_pipeline")
        // Prompts, responses, queries and retrieved text leave the process only on opt-in:
        // this demo's are made up, so it opts in and Phoenix and MLflow show them.
        .capture_content(true)
        // Flush and close (shutdown runs both) within the 5 s shutdown deadline below, even
        // when the endpoint is down.
        .flush_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_secs(2))
        .build();
    let handle = match exporter.map(|e| (e.handle(), rag.add_handler(e))) {
        Ok((handle, Ok(_))) => handle,
        Ok((_, Err(e))) => {
            eprintln!("OTLP exporter not attached: {e}");
            return None;
        }
        Err(e) => {
            eprintln!("OTLP exporter not built: {e}");
            return None;
        }
    };
    println!(
        "exporting spans over OTLP to {} (Phoenix project {project:?})",
        handle.endpoint()
    );
    Some(Box::new(move || {
        let s = handle.stats();
        format!(
            "{} spans exported to {}, {} dropped (queue full), {} abandoned at shutdown, {} failed requests{}",
            s.exported,
            handle.endpoint(),
            s.dropped,
            s.abandoned,
            s.failed_batches,
            handle
                .last_error()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )
    }))
}

#[cfg(not(feature = "otlp"))]
fn attach_otlp_exporter(_rag: &Dispatcher) -> Option<ExportStats> {
    if let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        println!(
            "OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: built without the `otlp` feature; not exporting \
             (cargo run --release --example rag_pipeline --features otlp)"
        );
    }
    None
}

/// The part of the summary an LLM engineer reads: tokens and cost per model, latency per
/// stage, and the slowest and most expensive queries (by trace, as the trees show them).
fn print_llm_summary(closed: &[ClosedSpan], traces: &[Option<TraceId>]) {
    let prices = prices();
    let rollups = Rollups::of(closed, &prices);
    let query_of = |trace: TraceId| traces.iter().position(|t| *t == Some(trace));
    println!(
        "  llm        {} calls, {}→{} tokens, ${:.4}",
        rollups.total.calls,
        rollups.total.input_tokens,
        rollups.total.output_tokens,
        rollups.total.cost
    );
    for (model, t) in &rollups.by_model {
        println!(
            "    {model:<24} {:>4} calls  {:>7}→{:<6} tok  ${:.4}{}",
            t.calls,
            t.input_tokens,
            t.output_tokens,
            t.cost,
            if t.unpriced > 0 {
                format!("  ({} unpriced)", t.unpriced)
            } else {
                String::new()
            }
        );
    }
    let sessions: Vec<String> = rollups
        .by_session
        .iter()
        .map(|(s, t)| format!("{s} ${:.4}", t.cost))
        .collect();
    println!("    by session: {}", sessions.join(", "));

    // Latency per stage, over the spans that exited (a failure's time says little).
    let mut stages: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for span in closed.iter().filter(|s| s.outcome.is_ok()) {
        let ms = span.duration().num_microseconds().unwrap_or(0) as f64 / 1e3;
        stages.entry(&span.name).or_default().push(ms);
    }
    println!("  latency    per stage, ms (spans that exited): p50 / p95 / max");
    for (stage, mut ms) in stages {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        println!(
            "    {stage:<24} {:>4} spans  {:>7.1} / {:>7.1} / {:>7.1}",
            ms.len(),
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }

    let mut queries: Vec<&ClosedSpan> = closed.iter().filter(|s| s.name == "query").collect();
    queries.sort_by_key(|s| std::cmp::Reverse(s.duration()));
    let slowest: Vec<String> = queries
        .iter()
        .take(3)
        .filter_map(|s| {
            let i = query_of(s.trace_id?)?;
            Some(format!(
                "#{i} {:.1} ms",
                s.duration().num_microseconds()? as f64 / 1e3
            ))
        })
        .collect();
    println!("  slowest    {}", slowest.join(", "));
    let mut costly: Vec<(TraceId, f64)> = rollups
        .by_trace
        .iter()
        .map(|(trace, t)| (*trace, t.cost))
        .collect();
    costly.sort_by(|a, b| b.1.total_cmp(&a.1));
    let costly: Vec<String> = costly
        .iter()
        .take(3)
        .filter_map(|(trace, cost)| Some(format!("#{} ${cost:.6}", query_of(*trace)?)))
        .collect();
    println!("  costliest  {}", costly.join(", "));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("spanbus");
    let jsonl_path = out_dir.join("trace.jsonl");
    let html_path = out_dir.join("trace.html");

    let app = spanbus::get_dispatcher("rag")?;
    let rag = Arc::new(Rag {
        embedding: spanbus::get_dispatcher("rag.embedding")?,
        retriever: spanbus::get_dispatcher("rag.retriever")?,
        reranker: spanbus::get_dispatcher("rag.reranker")?,
        llm: spanbus::get_dispatcher("rag.llm")?,
        app: app.clone(),
        llm_slots: Semaphore::new(LLM_SLOTS),
    });

    // Handlers on `rag` see every record of its children too.
    let spans = SimpleSpanHandler::new();
    app.add_span_handler(spans.clone())?;
    let census = EventCensus::default();
    app.add_event_handler(census.clone())?;
    let jsonl = JsonlHandler::create(&jsonl_path)?.with_trace_summaries(prices());
    let jsonl_status = jsonl.status();
    app.add_handler(jsonl)?;
    let html = HtmlReport::with_options(&html_path, HtmlReportOptions::new().prices(prices()))?;
    let html_status = html.status();
    app.add_handler(html)?;
    let otlp = attach_otlp_exporter(&app);

    println!(
        "serving {QUERIES} concurrent queries (deadline {DEADLINE:?} each, {LLM_SLOTS} LLM slots)"
    );
    let progress = Arc::new(Progress::default());
    let traces: Arc<Mutex<Vec<Option<TraceId>>>> = Arc::new(Mutex::new(vec![None; QUERIES]));
    let mut tasks = Vec::with_capacity(QUERIES);
    for i in 0..QUERIES {
        let (rag, progress, traces) = (rag.clone(), progress.clone(), traces.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(ARRIVAL_GAP * i as u32).await;
            let text = QUESTIONS[i % QUESTIONS.len()];
            let traced = async {
                if let (Some(span), Ok(mut traces)) = (current_span(), traces.lock()) {
                    traces[i] = Some(span.trace_id());
                }
                query(&rag, i, text).await
            }
            .in_span_result(
                rag.app
                    .span("query")
                    .args(json!({"query": text}))
                    .tag("query_id", i)
                    .tag("session.id", format!("session-{}", i % 4)),
            );
            let outcome = match tokio::time::timeout(DEADLINE, traced).await {
                Ok(Ok(_)) => Outcome::Ok,
                Ok(Err(_)) => Outcome::Failed,
                Err(_) => Outcome::TimedOut,
            };
            let counter = match outcome {
                Outcome::Ok => &progress.ok,
                Outcome::Failed => &progress.failed,
                Outcome::TimedOut => &progress.timed_out,
            };
            counter.fetch_add(1, Ordering::AcqRel);
            progress.done.fetch_add(1, Ordering::AcqRel);
            outcome
        }));
    }

    // The progress line, redrawn in place on a terminal (a new line every 250 ms otherwise)
    // until every query is done.
    let terminal = std::io::stdout().is_terminal();
    let ticker = {
        let (progress, spans, census) = (progress.clone(), spans.clone(), census.clone());
        tokio::spawn(async move {
            let period = Duration::from_millis(if terminal { 100 } else { 250 });
            loop {
                tokio::time::sleep(period).await;
                let line = format!(
                    "{}  spans {:>4}  events {:>5}",
                    progress.line(),
                    spans.len() as u64 + spans.evicted(),
                    census.total()
                );
                if terminal {
                    print!("\r{line}");
                    let _ = std::io::stdout().flush();
                } else {
                    println!("{line}");
                }
            }
        })
    };
    let mut outcomes = Vec::with_capacity(QUERIES);
    for task in tasks {
        outcomes.push(task.await?);
    }
    ticker.abort();
    let serve_time = started.elapsed();

    // Everything emitted so far reaches every handler (and the files are written).
    spanbus::flush().await;
    println!(
        "{}{}  spans {:>4}  events {:>5}",
        if terminal { "\r" } else { "" },
        progress.line(),
        spans.len() as u64 + spans.evicted(),
        census.total()
    );

    // Three queries as trace trees: the first ok, the first failed, the first timed out.
    let trees = spans.trace_trees().with_prices(prices());
    let traces = traces.lock().map(|t| t.clone()).unwrap_or_default();
    for (wanted, label) in [
        (Outcome::Ok, "ok"),
        (Outcome::Failed, "failed"),
        (Outcome::TimedOut, "timed out"),
    ] {
        let Some(i) = outcomes.iter().position(|o| *o == wanted) else {
            continue;
        };
        let text = QUESTIONS[i % QUESTIONS.len()];
        println!("\n── query #{i} ({label}): {text:?}");
        match traces[i].and_then(|id| trees.trace(id)) {
            Some(tree) => print!("{tree}"),
            None => println!("(no spans recorded)"),
        }
    }

    // The summary.
    let closed = spans.spans();
    let mut drops: BTreeMap<String, usize> = BTreeMap::new();
    for span in &closed {
        if let SpanOutcome::Dropped { reason, .. } = &span.outcome {
            *drops.entry(reason.to_string()).or_default() += 1;
        }
    }
    let events = census.0.lock().map(|m| m.clone()).unwrap_or_default();
    let mut by_count: Vec<_> = events.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    println!("\nsummary");
    println!(
        "  queries    {QUERIES}: {} ok, {} failed, {} timed out",
        count(Outcome::Ok),
        count(Outcome::Failed),
        count(Outcome::TimedOut)
    );
    println!(
        "  spans      {} recorded ({} evicted); dropped: {}",
        closed.len(),
        spans.evicted(),
        if drops.is_empty() {
            "none".to_owned()
        } else {
            drops
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "  events     {} in {} classes",
        census.total(),
        events.len()
    );
    for (name, n) in by_count {
        println!("    {n:>6}  {name}");
    }
    let stats: Vec<_> = app.all_handler_stats();
    let lost: u64 = stats.iter().map(|(_, s)| s.dropped).sum();
    let panics: u64 = stats.iter().map(|(_, s)| s.panicked).sum();
    print_llm_summary(&closed, &traces);
    println!(
        "  handlers   {}: {} records lost, {} panics",
        stats.len(),
        lost,
        panics
    );
    println!(
        "  wall time  {:.2} s serving, {:.2} s in all",
        serve_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let report = spanbus::shutdown(Duration::from_secs(5)).await;
    println!(
        "\nshutdown: {} ({} handlers, {} open spans dropped)",
        if report.is_clean() {
            "clean"
        } else {
            "NOT clean"
        },
        report.handlers.len(),
        report.spans_dropped,
    );
    if let Some(stats) = otlp {
        println!("OTLP: {}", stats());
    }
    println!(
        "wrote {} ({} lines{}) and {} ({} pages{})",
        jsonl_path.display(),
        jsonl_status.written(),
        jsonl_status
            .last_error()
            .map(|e| format!(", error: {e}"))
            .unwrap_or_default(),
        html_path.display(),
        html_status.written(),
        html_status
            .last_error()
            .map(|e| format!(", error: {e}"))
            .unwrap_or_default(),
    );
    let back = spanbus::jsonl::read(&jsonl_path)?;
    println!(
        "read back {} records from the JSON Lines file ({} malformed lines)",
        back.records.len(),
        back.errors.len()
    );
    Ok(())
}
