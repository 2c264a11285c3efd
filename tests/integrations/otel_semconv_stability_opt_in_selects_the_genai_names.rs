//! `OTEL_SEMCONV_STABILITY_OPT_IN` selects the GenAI names as the OpenTelemetry
//! instrumentations read it: the resolver on explicit values (no process environment is
//! changed: the tests of this binary run in parallel), the name table per version, and a
//! chosen version's names on the wire.

use std::time::Duration;

use serde_json::{Map, json};
use spanbus::Dispatcher;
use spanbus::events::{LLMChatEndEvent, LLMChatStartEvent};
use spanbus::integrations::genai::{Attr, LATEST_EXPERIMENTAL, Operation, SemconvVersion};
use spanbus::integrations::otlp::{OtlpExporter, capture_content_from};

use crate::support::otlp_endpoint::{Answer, Endpoint, attributes};
use crate::support::typed;

#[test]
fn the_opt_in_list_selects_the_latest_names_and_anything_else_the_pinned_ones() {
    let cases = [
        (None, SemconvVersion::V1_41),
        (Some(""), SemconvVersion::V1_41),
        (Some("gen_ai_latest_experimental"), SemconvVersion::Latest),
        (Some(" GEN_AI_LATEST_EXPERIMENTAL "), SemconvVersion::Latest),
        (
            Some("http,gen_ai_latest_experimental"),
            SemconvVersion::Latest,
        ),
        (
            Some("database/dup, gen_ai_latest_experimental ,http"),
            SemconvVersion::Latest,
        ),
        (Some("http/dup"), SemconvVersion::V1_41),
        (
            Some("gen_ai_latest_experimental_not"),
            SemconvVersion::V1_41,
        ),
        (Some("gen_ai"), SemconvVersion::V1_41),
    ];
    for (value, want) in cases {
        let got = SemconvVersion::from_opt_in(value);
        println!(
            "OTEL_SEMCONV_STABILITY_OPT_IN={value:?} → {got:?} ({})",
            got.release()
        );
        assert_eq!(got, want, "{value:?}");
    }
    assert_eq!(SemconvVersion::PINNED, SemconvVersion::V1_41);
    assert_eq!(LATEST_EXPERIMENTAL, "gen_ai_latest_experimental");
}

#[test]
fn the_name_table_switches_names_by_version() {
    println!("attribute: v1.36.0 | v1.41.1 | latest");
    for attr in [
        Attr::ProviderName,
        Attr::CacheReadInputTokens,
        Attr::ReasoningOutputTokens,
        Attr::InputMessages,
        Attr::RetrievalQueryText,
    ] {
        let names = [
            SemconvVersion::V1_36,
            SemconvVersion::V1_41,
            SemconvVersion::Latest,
        ]
        .map(|v| v.name(attr).unwrap_or("—"));
        println!("  {attr:?}: {}", names.join(" | "));
    }
    assert_eq!(
        SemconvVersion::V1_36.name(Attr::ProviderName),
        Some("gen_ai.system")
    );
    assert_eq!(
        SemconvVersion::V1_41.name(Attr::ProviderName),
        Some("gen_ai.provider.name")
    );
    assert_eq!(
        SemconvVersion::Latest.name(Attr::ProviderName),
        Some("gen_ai.provider.name")
    );
    assert_eq!(SemconvVersion::V1_36.name(Attr::CacheReadInputTokens), None);
    assert_eq!(
        SemconvVersion::V1_41.name(Attr::CacheReadInputTokens),
        Some("gen_ai.usage.cache_read.input_tokens")
    );
    assert_eq!(SemconvVersion::V1_36.operation(Operation::Retrieval), None);
    assert_eq!(
        SemconvVersion::V1_41.operation(Operation::Retrieval),
        Some("retrieval")
    );
}

#[test]
fn the_content_capture_variable_is_read_as_the_genai_instrumentations_read_it() {
    for (value, on) in [
        (None, false),
        (Some("true"), true),
        (Some("TRUE"), true),
        (Some("1"), true),
        (Some("SPAN_ONLY"), true),
        (Some("span_and_event"), true),
        (Some("false"), false),
        (Some("NO_CONTENT"), false),
        (Some("EVENT_ONLY"), false),
        (Some("maybe"), false),
    ] {
        println!("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT={value:?} → capture {on}");
        assert_eq!(capture_content_from(value), on, "{value:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_version_writes_its_names_on_the_wire() {
    let mut seen = Vec::new();
    for version in [SemconvVersion::V1_36, SemconvVersion::Latest] {
        let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
        let exporter = OtlpExporter::builder()
            .endpoint(endpoint.url())
            .scheduled_delay(Duration::from_millis(5))
            .semconv_version(version)
            .build()
            .unwrap();
        let d = Dispatcher::new("semconv.wire").unwrap();
        d.add_handler(exporter).unwrap();
        d.span("Llm.chat").in_scope(|| {
            d.event(LLMChatStartEvent {
                messages: vec![],
                additional_kwargs: Map::new(),
                model_dict: json!({"model": "gpt-4o-mini", "provider": "openai"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            })
            .now()
            .unwrap();
            d.event(LLMChatEndEvent {
                messages: vec![],
                response: Some(typed(json!({"message": {"role": "assistant"},
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1,
                    "prompt_tokens_details": {"cached_tokens": 4}}}))),
            })
            .now()
            .unwrap();
        });
        d.shutdown(Duration::from_secs(5)).await;
        let spans = endpoint.spans();
        assert_eq!(spans.len(), 1);
        let a = attributes(&spans[0]);
        let genai: Vec<String> = a
            .iter()
            .filter(|(k, _)| k.starts_with("gen_ai."))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("{version:?}: {genai:?}");
        seen.push((version, a));
    }
    let (_, old) = &seen[0];
    assert_eq!(old["gen_ai.system"], "openai");
    assert!(!old.contains_key("gen_ai.provider.name"));
    assert!(!old.contains_key("gen_ai.usage.cache_read.input_tokens"));
    assert_eq!(old["gen_ai.usage.input_tokens"], 5);
    let (_, latest) = &seen[1];
    assert_eq!(latest["gen_ai.provider.name"], "openai");
    assert!(!latest.contains_key("gen_ai.system"));
    assert_eq!(latest["gen_ai.usage.cache_read.input_tokens"], 4);
}
