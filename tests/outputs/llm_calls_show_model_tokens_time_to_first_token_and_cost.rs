//! What an LLM engineer looks at, from one piece of code (`spanbus::llm::LlmSummary`): the
//! model, tokens in and out, time to first token, chunks, finish reason and cost of each LLM
//! span, on its trace-tree line and rolled up per trace, session and model. A stream dropped
//! early still reports the chunks and tokens it saw, and its span says cancelled.
//!
//! The events here are emitted under the catalog's class names with the JSON fields the
//! catalog writes, so the summary is checked on the JSON every output reads.

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use futures::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use spanbus::handlers::{ClosedSpan, SimpleSpanHandler, SpanOutcome, TraceTrees};
use spanbus::llm::{LlmSummary, Prices, Rollups};
use spanbus::{Dispatcher, DropReason, Event, SpanFutureExt, SpanId, TraceId};

macro_rules! catalog_event {
    ($ty:ident, $name:literal, $($field:ident),*) => {
        #[derive(Serialize)]
        struct $ty {
            $($field: Value),*
        }
        impl Event for $ty {
            const NAME: &'static str = $name;
        }
    };
}

catalog_event!(ChatStart, "LLMChatStartEvent", messages, model_dict);
catalog_event!(ChatChunk, "LLMChatInProgressEvent", messages, response);
catalog_event!(ChatEnd, "LLMChatEndEvent", messages, response);

fn fields(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().expect("an object").clone()
}

fn prices() -> Prices {
    Prices::new()
        .model("gpt-4o", 2.50, 10.00)
        .model("gpt-4o-mini", 0.15, 0.60)
}

/// A chat call as llama-index's OpenAI integration reports it: streamed in three chunks,
/// answered by a dated model name, with cached and reasoning counts.
fn hand_built_call() -> LlmSummary {
    let t0 = Utc.timestamp_opt(1_767_225_600, 0).unwrap();
    let at = |us: i64| t0 + TimeDelta::microseconds(us);
    let mut llm = LlmSummary::default();
    llm.observe(
        "LLMChatStartEvent",
        at(0),
        &fields(
            json!({"messages": [], "model_dict": {"model": "gpt-4o-mini", "class_name": "OpenAI"}}),
        ),
    );
    llm.observe(
        "ExceptionEvent",
        at(10),
        &fields(json!({"exception": "ignored"})),
    );
    for us in [9_100, 12_000, 15_500] {
        llm.observe(
            "LLMChatInProgressEvent",
            at(us),
            &fields(json!({"messages": [], "response": {"delta": "tok"}})),
        );
    }
    llm.observe(
        "LLMChatEndEvent",
        at(40_824),
        &fields(json!({"messages": [], "response": {
            "message": {"role": "assistant", "content": "A span is a stretch of work."},
            "additional_kwargs": {
                "prompt_tokens": 312, "completion_tokens": 85, "total_tokens": 397,
                "cached_tokens": 256, "reasoning_tokens": 20,
                "model": "gpt-4o-mini-2024-07-18", "finish_reason": "stop",
            },
        }})),
    );
    llm
}

#[test]
fn a_summary_from_a_hand_built_event_sequence() {
    let llm = hand_built_call();
    println!("{llm:?}");
    assert_eq!(llm.operation.as_deref(), Some("chat"));
    assert_eq!(llm.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(llm.provider.as_deref(), Some("OpenAI"));
    assert_eq!((llm.input_tokens, llm.output_tokens), (Some(312), Some(85)));
    assert_eq!(
        (llm.cache_read_tokens, llm.reasoning_tokens),
        (Some(256), Some(20))
    );
    assert_eq!(llm.ttft, Some(TimeDelta::microseconds(9_100)));
    assert_eq!(llm.chunks, 3);
    assert_eq!(llm.finish_reason.as_deref(), Some("stop"));
    // The dated model takes the price of its prefix.
    let cost = llm.cost(&prices()).unwrap();
    let expected = (312.0 * 0.15 + 85.0 * 0.60) / 1e6;
    println!("cost ${cost:.7} (expected ${expected:.7})");
    assert!((cost - expected).abs() < 1e-12);
    assert_eq!(llm.cost(&Prices::new()), None, "no prices, no cost");

    // The provider's raw response is read as well as llama-index's kwargs.
    let mut raw = LlmSummary::default();
    raw.observe(
        "LLMCompletionEndEvent",
        Utc::now(),
        &fields(
            json!({"prompt": "hi", "response": {"text": "hello", "raw": {
                "model": "gpt-4o-2024-08-06",
                "choices": [{"finish_reason": "length"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3,
                          "prompt_tokens_details": {"cached_tokens": 4},
                          "completion_tokens_details": {"reasoning_tokens": 1}},
            }}}),
        ),
    );
    assert_eq!(raw.operation.as_deref(), Some("text_completion"));
    assert_eq!(raw.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!((raw.input_tokens, raw.output_tokens), (Some(7), Some(3)));
    assert_eq!(
        (raw.cache_read_tokens, raw.reasoning_tokens),
        (Some(4), Some(1))
    );
    assert_eq!(raw.finish_reason.as_deref(), Some("length"));
    assert_eq!(raw.ttft, None, "no start event, no time to first token");
}

#[test]
fn the_tree_line_shows_model_tokens_ttft_and_cost() {
    let t0 = Utc.timestamp_opt(1_767_225_600, 0).unwrap();
    let span = |id: u64, parent: Option<u64>, name: &'static str, us: i64, llm| ClosedSpan {
        id: SpanId::from_u64(id).unwrap(),
        parent: parent.and_then(SpanId::from_u64),
        trace_id: TraceId::from_u128(0x42),
        name: name.into(),
        dispatcher: "rag",
        start: t0,
        end: t0 + TimeDelta::microseconds(us),
        outcome: SpanOutcome::Exited,
        llm,
        tags: None,
    };
    let spans = vec![
        span(1, None, "query", 52_000, None),
        span(
            2,
            Some(1),
            "llm.chat",
            40_824,
            Some(Box::new(hand_built_call())),
        ),
    ];
    let text = TraceTrees::new(spans.clone())
        .with_prices(prices())
        .to_string();
    print!("{text}");
    assert_eq!(
        text,
        "trace 00000000000000000000000000000042  2 spans  52.000 ms  312→85 tok  $0.000098\n\
         query  52.000 ms  ok\n\
         └─ llm.chat  40.824 ms  gpt-4o-mini-2024-07-18  312→85 tok  ttft 9.1 ms  $0.000098  ok\n"
    );
    // Without prices: no cost, everything else.
    let unpriced = TraceTrees::new(spans).to_string();
    assert!(
        unpriced
            .contains("llm.chat  40.824 ms  gpt-4o-mini-2024-07-18  312→85 tok  ttft 9.1 ms  ok")
    );
    assert!(!unpriced.contains('$'));
}

#[tokio::test]
async fn a_stream_dropped_early_reports_the_chunks_and_tokens_it_saw() {
    let d = Dispatcher::new("llm.cancelled").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();
    let stream = async {
        d.event(ChatStart {
            messages: json!([{"role": "user", "content": "tell me a story"}]),
            model_dict: json!({"model": "gpt-4o-mini"}),
        })
        .await
        .unwrap();
        for n in 1..=3u64 {
            // The provider reports running usage on each chunk.
            d.event(ChatChunk {
                messages: json!([]),
                response: json!({"delta": "once", "raw": {"usage": {"prompt_tokens": 50, "completion_tokens": n}}}),
            })
            .await
            .unwrap();
        }
        std::future::pending::<()>().await;
    }
    .in_span(d.span("llm.stream"));
    // The caller stops reading after three chunks: the future is dropped mid-stream.
    assert!(stream.now_or_never().is_none());
    d.flush().await;
    let closed = spans.spans();
    let span = closed.iter().find(|s| s.name == "llm.stream").unwrap();
    let llm = span.llm.as_deref().expect("an LLM summary");
    println!(
        "cancelled stream: {:?}, {} chunks, {:?}→{:?} tokens, ttft {:?}",
        span.outcome.drop_reason(),
        llm.chunks,
        llm.input_tokens,
        llm.output_tokens,
        llm.ttft
    );
    assert_eq!(span.outcome.drop_reason(), Some(DropReason::Cancelled));
    assert_eq!(llm.chunks, 3);
    assert_eq!((llm.input_tokens, llm.output_tokens), (Some(50), Some(3)));
    assert!(
        llm.ttft
            .is_some_and(|t| t >= TimeDelta::zero() && t <= span.duration())
    );
    let line = TraceTrees::new(closed).with_prices(prices()).to_string();
    print!("{line}");
    assert!(line.contains("llm.stream"));
    assert!(line.contains("gpt-4o-mini  50→3 tok  ttft "));
    assert!(line.contains("  cancelled\n"));
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn llm_calls_roll_up_per_trace_session_user_and_model() {
    let d = Dispatcher::new("llm.rollup").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();
    let call = |model: &'static str, input: u64, output: u64| {
        let d = d.clone();
        async move {
            d.event(ChatStart {
                messages: json!([]),
                model_dict: json!({"model": model}),
            })
            .await
            .unwrap();
            d.event(ChatEnd {
                messages: json!([]),
                response: json!({"message": {"role": "assistant", "content": "ok"},
                                 "additional_kwargs": {"prompt_tokens": input, "completion_tokens": output}}),
            })
            .await
            .unwrap();
        }
    };
    for (session, user) in [("s1", "ada"), ("s1", "ada"), ("s2", "bob")] {
        let query = async {
            call("gpt-4o-mini", 1000, 100)
                .in_span(d.span("llm.chat"))
                .await;
            call("gpt-4o", 2000, 200).in_span(d.span("llm.chat")).await;
            call("local-llama", 10, 1).in_span(d.span("llm.chat")).await;
        }
        .in_span(d.span("query"));
        spanbus::with_tags([("session.id", session), ("user.id", user)], query).await;
    }
    d.flush().await;
    let closed = spans.spans();
    let r = Rollups::of(&closed, &prices());
    for (model, t) in &r.by_model {
        println!(
            "{model}: {} calls, {}→{} tok, ${:.4}, {} unpriced",
            t.calls, t.input_tokens, t.output_tokens, t.cost, t.unpriced
        );
    }
    assert_eq!(r.total.calls, 9);
    assert_eq!(r.by_trace.len(), 3);
    assert!(
        r.by_trace
            .values()
            .all(|t| t.calls == 3 && t.input_tokens == 3010)
    );
    assert_eq!(r.by_session["s1"].calls, 6);
    assert_eq!(r.by_session["s2"].calls, 3);
    assert_eq!(r.by_user["ada"].output_tokens, 602);
    assert_eq!(r.by_model["gpt-4o"].input_tokens, 6000);
    assert_eq!(r.by_model["local-llama"].unpriced, 3);
    let per_query = (1000.0 * 0.15 + 100.0 * 0.60 + 2000.0 * 2.50 + 200.0 * 10.00) / 1e6;
    assert!((r.total.cost - 3.0 * per_query).abs() < 1e-9);
    assert!((r.by_session["s2"].cost - per_query).abs() < 1e-9);
    // Spans without LLM events (the queries) carry no summary.
    assert!(
        closed
            .iter()
            .filter(|s| s.name == "query")
            .all(|s| s.llm.is_none())
    );
    d.shutdown(Duration::from_secs(5)).await;
}
