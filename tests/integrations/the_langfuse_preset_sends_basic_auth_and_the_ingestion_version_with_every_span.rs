//! The Langfuse preset, against a loopback endpoint standing in for Langfuse (it has no server
//! to run locally): credentials and host from `LANGFUSE_*` variables, every request to
//! `/api/public/otel/v1/traces` as OTLP/HTTP protobuf with `Authorization: Basic
//! base64(public:secret)` and `x-langfuse-ingestion-version: 4`, whatever the
//! `OTEL_EXPORTER_OTLP_*` variables say; the body holds every span with its LLM attributes. A
//! missing key is a typed error.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use serde_json::json;
use spanbus::Dispatcher;
use spanbus::error::OtlpError;
use spanbus::events::{LLMChatEndEvent, LLMChatStartEvent};
use spanbus::integrations::otlp::{
    ENDPOINT_ENV, LANGFUSE_BASE_URL_ENV, LANGFUSE_DEFAULT_HOST, LANGFUSE_HOST_ENV,
    LANGFUSE_PUBLIC_KEY_ENV, LANGFUSE_SECRET_KEY_ENV, Langfuse, OtlpExporter, PROTOCOL_ENV,
};
use spanbus::{SpanFutureExt, current_span};

use crate::support::otlp_endpoint::{Answer, Endpoint};
use crate::support::typed;

/// Standard base64 (with padding) decoded, for the test to read the Basic credentials back.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_basic_auth_and_the_ingestion_version_and_every_span() {
    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let langfuse = Langfuse::from_vars([
        (LANGFUSE_PUBLIC_KEY_ENV, "pk-lf-1234"),
        (LANGFUSE_SECRET_KEY_ENV, "sk-lf-5678"),
        (LANGFUSE_HOST_ENV, &format!("{}/", endpoint.base_url())),
    ])
    .unwrap();
    println!("preset: {langfuse:?} -> {}", langfuse.traces_endpoint());
    assert!(!format!("{langfuse:?}").contains("sk-lf-5678"));
    let exporter = OtlpExporter::builder()
        .langfuse(langfuse)
        // The preset's settings win over variables pointing elsewhere, in another protocol.
        .environment([
            (PROTOCOL_ENV, "http/json"),
            (ENDPOINT_ENV, "http://127.0.0.1:9/elsewhere"),
        ])
        .service_name("langfuse-test")
        .scheduled_delay(Duration::from_millis(5))
        .flush_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let handle = exporter.handle();
    let app = Dispatcher::new("lf").unwrap();
    app.add_handler(exporter).unwrap();

    let mut trace_ids = Vec::new();
    for i in 0..5 {
        let root = async {
            async {
                app.event(LLMChatStartEvent {
                    messages: vec![typed(json!({"role": "user", "content": format!("question {i}")}))],
                    additional_kwargs: Default::default(),
                    model_dict: json!({"model": "gpt-4o-mini"}).as_object().unwrap().clone(),
                })
                .await
                .unwrap();
                app.event(LLMChatEndEvent {
                    messages: vec![],
                    response: Some(typed(json!({
                        "message": {"role": "assistant", "content": "an answer"},
                        "raw": {"usage": {"prompt_tokens": 10 + i, "completion_tokens": 3, "total_tokens": 13 + i}},
                    }))),
                })
                .await
                .unwrap();
            }
            .in_span(app.span("OpenAI.chat"))
            .await;
            current_span().unwrap()
        }
        .in_span(app.span("RAG.query"))
        .await;
        trace_ids.push(root.trace_id());
    }
    app.flush().await;
    let report = app.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");

    let requests = endpoint.requests();
    let s = handle.stats();
    let r = &requests[0];
    let authorization = r.header("authorization").unwrap_or_default().to_owned();
    let credentials = String::from_utf8(base64_decode(
        authorization.strip_prefix("Basic ").unwrap_or_default(),
    ))
    .unwrap();
    println!(
        "{} requests to {}; authorization decodes to {credentials:?}; \
         x-langfuse-ingestion-version {:?}; content-type {:?}; {} spans; {s:?}",
        requests.len(),
        r.path,
        r.header("x-langfuse-ingestion-version"),
        r.header("content-type"),
        endpoint.accepted_spans().len()
    );
    assert_eq!(
        handle.endpoint(),
        endpoint
            .url()
            .replace("/v1/traces", "/api/public/otel/v1/traces")
    );
    for r in &requests {
        assert_eq!(r.path, "/api/public/otel/v1/traces");
        assert_eq!(r.header("authorization"), Some(authorization.as_str()));
        assert_eq!(r.header("x-langfuse-ingestion-version"), Some("4"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert!(r.decoded);
    }
    assert_eq!(credentials, "pk-lf-1234:sk-lf-5678");
    assert_eq!(s.exported, 10, "{s:?}");

    let spans = endpoint.accepted_spans();
    assert_eq!(spans.len(), 10);
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    };
    // The LLM spans, by their model attribute (their name may follow a naming convention).
    let llm: Vec<_> = spans
        .iter()
        .filter(|s| attribute(s, "llm.model_name").is_some())
        .collect();
    assert_eq!(llm.len(), 5);
    for span in &llm {
        assert_eq!(
            attribute(span, "llm.model_name"),
            Some(Value::StringValue("gpt-4o-mini".into())),
            "{span:?}"
        );
        assert!(
            matches!(
                attribute(span, "llm.token_count.completion"),
                Some(Value::IntValue(3))
            ),
            "{span:?}"
        );
        let parent = spans
            .iter()
            .find(|s| s.span_id == span.parent_span_id)
            .expect("the parent was exported too");
        assert_eq!(parent.name, "RAG.query");
        assert_eq!(parent.trace_id, span.trace_id);
    }
    let exported_traces: std::collections::BTreeSet<Vec<u8>> =
        spans.iter().map(|s| s.trace_id.clone()).collect();
    assert_eq!(
        exported_traces.len(),
        trace_ids.len(),
        "one trace per query"
    );
}

#[test]
fn the_keys_are_required_and_the_host_defaults_to_langfuse_cloud() {
    let e = Langfuse::from_vars([(LANGFUSE_SECRET_KEY_ENV, "sk")]).unwrap_err();
    println!("{e}");
    assert_eq!(
        e,
        OtlpError::MissingEnv {
            name: LANGFUSE_PUBLIC_KEY_ENV,
            needed_by: "the Langfuse preset"
        }
    );
    let e = Langfuse::from_vars([
        (LANGFUSE_PUBLIC_KEY_ENV, "pk"),
        (LANGFUSE_SECRET_KEY_ENV, " "),
    ])
    .unwrap_err();
    println!("{e}");
    assert!(matches!(e, OtlpError::MissingEnv { name, .. } if name == LANGFUSE_SECRET_KEY_ENV));

    let keys = [
        (LANGFUSE_PUBLIC_KEY_ENV, "pk"),
        (LANGFUSE_SECRET_KEY_ENV, "sk"),
    ];
    let cloud = Langfuse::from_vars(keys).unwrap();
    assert_eq!(
        cloud.traces_endpoint(),
        format!("{LANGFUSE_DEFAULT_HOST}/api/public/otel/v1/traces")
    );
    let mut with_base_url = keys.to_vec();
    with_base_url.push((LANGFUSE_BASE_URL_ENV, "https://us.cloud.langfuse.com"));
    assert_eq!(
        Langfuse::from_vars(with_base_url.clone())
            .unwrap()
            .traces_endpoint(),
        "https://us.cloud.langfuse.com/api/public/otel/v1/traces"
    );
    with_base_url.push((LANGFUSE_HOST_ENV, "http://localhost:3000"));
    assert_eq!(
        Langfuse::from_vars(with_base_url)
            .unwrap()
            .traces_endpoint(),
        "http://localhost:3000/api/public/otel/v1/traces",
        "LANGFUSE_HOST first"
    );

    let c = OtlpExporter::builder()
        .langfuse(cloud)
        .environment(Vec::<(String, String)>::new())
        .resolve();
    println!("the cloud preset resolves to {c:?}");
    #[cfg(feature = "otlp-tls")]
    {
        let c = c.unwrap();
        assert!(c.uses_tls());
        assert_eq!(c.header("x-langfuse-ingestion-version"), Some("4"));
        assert_eq!(c.header("authorization"), Some("Basic cGs6c2s="));
    }
    #[cfg(not(feature = "otlp-tls"))]
    assert!(matches!(
        c,
        Err(OtlpError::FeatureDisabled {
            feature: "otlp-tls",
            ..
        })
    ));
}
