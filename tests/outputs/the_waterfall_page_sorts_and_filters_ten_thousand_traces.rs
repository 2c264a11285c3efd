//! The HTML page at 10,000 traces, opened in headless Chromium: it renders in under two
//! seconds (its own clock, from navigation to the end of its script), draws a first batch of
//! traces rather than all of them, and its view — kept in the address's `#fragment`, as the
//! page's controls write it — sorts by cost (the most expensive trace first), filters to the
//! failed traces only (every one, and nothing else), to one model, and finds a trace by its id.
//! Each trace header carries its totals: duration, tokens, cost, errors.
//!
//! Needs `/usr/bin/chromium` (`.ci/chromium.sh` installs it). Without it the test fails when
//! `CI` is set, and is skipped with a message otherwise.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use spanbus::handlers::{HtmlReport, HtmlReportOptions};
use spanbus::llm::Prices;
use spanbus::{Dispatcher, Event, SpanFutureExt, TraceId, current_span};

use crate::support::chromium::{chromium_available, dump_dom};

const TRACES: usize = 10_000;

#[derive(Serialize)]
struct ChatStart {
    messages: Value,
    model_dict: Value,
}
impl Event for ChatStart {
    const NAME: &'static str = "LLMChatStartEvent";
}

#[derive(Serialize)]
struct ChatEnd {
    messages: Value,
    response: Value,
}
impl Event for ChatEnd {
    const NAME: &'static str = "LLMChatEndEvent";
}

/// What one trace of the workload is.
struct Planned {
    model: &'static str,
    input: u64,
    output: u64,
    fails: bool,
}

fn plan(i: usize) -> Planned {
    Planned {
        model: if i.is_multiple_of(3) {
            "gpt-4o"
        } else {
            "gpt-4o-mini"
        },
        // The most expensive trace is number 4321: ten times the largest other count.
        input: if i == 4321 {
            50_000
        } else {
            100 + (i as u64 % 500)
        },
        output: if i == 4321 {
            5_000
        } else {
            10 + (i as u64 % 50)
        },
        fails: i % 7 == 3,
    }
}

/// The `data-*` attribute `name` of every element with it, in document order.
fn attrs<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!("{name}=\"");
    dom.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &dom[at + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

fn attr<'a>(dom: &'a str, name: &str) -> &'a str {
    attrs(dom, name)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {name} in the page"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_traces_open_fast_and_sort_and_filter() {
    if !chromium_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("spanbus-waterfall-10k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("traces.html");
    let prices = Prices::new()
        .model("gpt-4o", 2.50, 10.00)
        .model("gpt-4o-mini", 0.15, 0.60);
    let report = HtmlReport::with_options(
        &page,
        HtmlReportOptions::new()
            .max_spans(3 * TRACES)
            .max_events(3 * TRACES)
            .prices(prices),
    )
    .unwrap();
    let d = Dispatcher::new("rag.html10k").unwrap();
    d.add_handler(report).unwrap();

    let mut failed: HashSet<String> = HashSet::new();
    let mut expensive: Option<TraceId> = None;
    let mut gpt4o = 0usize;
    for i in 0..TRACES {
        let p = plan(i);
        let d2 = d.clone();
        let (trace, result) = async move {
            let trace = current_span().unwrap().trace_id();
            let result: Result<(), String> = async {
                d2.event(ChatStart {
                    messages: json!([{"role": "user", "content": format!("question {i}")}]),
                    model_dict: json!({"model": p.model}),
                })
                .await
                .unwrap();
                d2.event(ChatEnd {
                    messages: json!([]),
                    response: json!({"message": {"role": "assistant", "content": "answer"},
                        "additional_kwargs": {"prompt_tokens": p.input, "completion_tokens": p.output}}),
                })
                .await
                .unwrap();
                if p.fails {
                    Err(format!("upstream timeout in query {i}"))
                } else {
                    Ok(())
                }
            }
            .in_span_result(d2.span("llm.chat"))
            .await;
            (trace, result)
        }
        .in_span(d.span("query"))
        .await;
        if result.is_err() {
            failed.insert(trace.to_string());
        }
        if i == 4321 {
            expensive = Some(trace);
        }
        if p.model == "gpt-4o" {
            gpt4o += 1;
        }
    }
    d.flush().await; // writes the page
    let expensive = expensive.unwrap().to_string();
    let size = std::fs::metadata(&page).unwrap().len();
    println!(
        "page: {TRACES} traces, {} failed, {:.1} MiB",
        failed.len(),
        size as f64 / (1 << 20) as f64
    );

    // Opened as is: start order, a first batch drawn, totals in each header.
    let started = Instant::now();
    let dom = dump_dom(&page, "", &dir.join("profile"));
    let wall = started.elapsed();
    let render_ms: u64 = attr(&dom, "data-render-ms").parse().unwrap();
    let drawn = attrs(&dom, "data-trace-id").len();
    println!(
        "opened in {render_ms} ms by the page's clock ({:.1} s with Chromium's start); {drawn} traces drawn of {}",
        wall.as_secs_f64(),
        attr(&dom, "data-shown")
    );
    assert!(render_ms < 2_000, "the page took {render_ms} ms to render");
    assert_eq!(attr(&dom, "data-shown"), TRACES.to_string());
    assert!(
        drawn > 0 && drawn < TRACES,
        "{drawn} traces drawn: not lazy"
    );
    assert!(dom.contains("→") && dom.contains(" tok"), "no token totals");
    assert!(dom.contains("$0.0"), "no cost in the headers");

    // Sorted by cost: the most expensive trace first.
    let dom = dump_dom(&page, "#sort=cost", &dir.join("profile"));
    let order = attrs(&dom, "data-trace-id");
    println!("by cost: first {} (expected {expensive})", order[0]);
    assert_eq!(order[0], expensive);
    let costs: Vec<f64> = attrs(&dom, "data-cost")
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "not sorted by cost");

    // Only failed traces: all of them, each one failed.
    let dom = dump_dom(&page, "#errors=1", &dir.join("profile"));
    println!("errors filter: {} shown", attr(&dom, "data-shown"));
    assert_eq!(attr(&dom, "data-shown"), failed.len().to_string());
    let shown = attrs(&dom, "data-trace-id");
    assert!(!shown.is_empty());
    assert!(
        shown.iter().all(|t| failed.contains(*t)),
        "a trace that did not fail is shown"
    );
    assert!(attrs(&dom, "data-errors").iter().all(|e| *e != "0"));

    // One model; a search by trace id.
    let dom = dump_dom(&page, "#model=gpt-4o", &dir.join("profile"));
    assert_eq!(attr(&dom, "data-shown"), gpt4o.to_string());
    let dom = dump_dom(&page, &format!("#q={expensive}"), &dir.join("profile"));
    assert_eq!(attr(&dom, "data-shown"), "1");
    assert_eq!(attrs(&dom, "data-trace-id"), [expensive.as_str()]);

    d.shutdown(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&dir).ok();
}
