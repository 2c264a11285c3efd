//! A record's JSON form has llama-index's keys (`id_`, `timestamp`, `span_id`, `tags`,
//! `class_name`) plus the event's own fields, so Python tooling reads it unchanged.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value, json};
use spanbus::{Dispatcher, Handler, Record, SpanFutureExt, with_tags};

#[derive(Serialize)]
struct LLMChatStart {
    messages: Vec<String>,
    model_dict: Value,
}

impl spanbus::Event for LLMChatStart {
    const NAME: &'static str = "LLMChatStartEvent";
}

/// A unit struct serializes to `null`; a newtype of a number to a number.
#[derive(Serialize)]
struct Ping;
impl spanbus::Event for Ping {
    const NAME: &'static str = "Ping";
}

#[derive(Serialize)]
struct Count(u64);
impl spanbus::Event for Count {
    const NAME: &'static str = "Count";
}

#[derive(Clone, Default)]
struct Json(Arc<Mutex<Vec<Map<String, Value>>>>);

impl Handler for Json {
    async fn handle(&mut self, record: &Record) {
        let map = record.to_json().unwrap();
        // The envelope in JSON agrees with the accessors.
        assert_eq!(map["id_"], json!(record.id().to_string()));
        assert_eq!(map["class_name"], json!(record.class_name()));
        self.0.lock().unwrap().push(map);
    }
}

#[tokio::test]
async fn event_records_have_llama_index_keys_and_the_events_own_fields() {
    let d = Dispatcher::new("llm").unwrap();
    let sink = Json::default();
    d.add_handler(sink.clone()).unwrap();
    let before = chrono::Utc::now();
    with_tags([("user", "alice")], async {
        d.event(LLMChatStart {
            messages: vec!["hi".into()],
            model_dict: json!({"model": "gpt"}),
        })
        .await
        .unwrap();
    })
    .in_span(d.span("chat"))
    .await;
    d.event(Ping).await.unwrap();
    d.event(Count(3)).await.unwrap();
    d.flush().await;

    let out = sink.0.lock().unwrap().clone();
    let enter = out.iter().find(|m| m["class_name"] == "SpanEnter").unwrap();
    let event = out
        .iter()
        .find(|m| m["class_name"] == "LLMChatStartEvent")
        .unwrap();
    for key in ["id_", "timestamp", "span_id", "tags", "class_name"] {
        assert!(event.contains_key(key), "missing {key}: {event:?}");
    }
    assert_eq!(event["messages"], json!(["hi"]));
    assert_eq!(event["model_dict"], json!({"model": "gpt"}));
    assert_eq!(event["tags"], json!({"user": "alice"}));
    assert_eq!(event["span_id"], enter["span_id"]);
    assert_eq!(event["dispatcher"], json!("llm"));
    let span_id = event["span_id"].as_str().unwrap();
    assert_eq!(span_id.len(), 16);
    assert!(span_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let id = uuid::Uuid::parse_str(event["id_"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7, "record ids are time-ordered UUIDs");
    let ts = chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap();
    let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
    assert_eq!(
        (secs as i64, nanos / 1_000_000),
        (ts.timestamp(), ts.timestamp_subsec_millis()),
        "the id carries the record's own timestamp, to the millisecond"
    );
    // Record timestamps agree with the system clock to within a millisecond (the documented
    // bound of the cycle-counter clock), and JSON keeps microseconds.
    let slack = chrono::Duration::milliseconds(1);
    assert!(ts >= before - slack && ts <= chrono::Utc::now() + slack);

    // Outside any span: `span_id` is null, `tags` an empty object.
    let ping = out.iter().find(|m| m["class_name"] == "Ping").unwrap();
    assert_eq!(ping["span_id"], Value::Null);
    assert_eq!(ping["tags"], json!({}));
    let count = out.iter().find(|m| m["class_name"] == "Count").unwrap();
    assert_eq!(count["value"], json!(3));

    // Span signals use the same envelope.
    assert_eq!(enter["name"], json!("chat"));
    assert_eq!(enter["parent_span_id"], Value::Null);
    let exit = out.iter().find(|m| m["class_name"] == "SpanExit").unwrap();
    assert_eq!(exit["span_id"], enter["span_id"]);
}

#[tokio::test]
async fn a_span_drop_event_serializes_like_llama_indexs() {
    let d = Dispatcher::new("drops").unwrap();
    let sink = Json::default();
    d.add_handler(sink.clone()).unwrap();
    let _: Result<(), String> = d.span("fails").in_scope_result(|| Err("boom".to_owned()));
    d.flush().await;
    let out = sink.0.lock().unwrap().clone();
    let drop = out.iter().find(|m| m["class_name"] == "SpanDrop").unwrap();
    assert_eq!(drop["reason"], json!("Error"));
    assert_eq!(drop["err_str"], json!("boom"));
    let event = out
        .iter()
        .find(|m| m["class_name"] == "SpanDropEvent")
        .unwrap();
    assert_eq!(event["err_str"], json!("boom"));
    assert_eq!(event["span_id"], drop["span_id"]);
    let keys: std::collections::BTreeSet<&str> = event.keys().map(String::as_str).collect();
    for key in [
        "id_",
        "timestamp",
        "span_id",
        "tags",
        "class_name",
        "err_str",
    ] {
        assert!(keys.contains(key), "missing {key}");
    }
}
