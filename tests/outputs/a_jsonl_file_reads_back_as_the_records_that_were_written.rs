//! The JSON Lines handler writes every record (events and span enter/exit/drop) as one line;
//! the reader loads them back with the same ids, span ids and class names, typed span signals,
//! and a visible line for an event that could not be serialized.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::json;
use spanbus::events::{QueryEndEvent, QueryStartEvent};
use spanbus::handlers::JsonlHandler;
use spanbus::jsonl::{self, JsonKind, UNSERIALIZABLE_CLASS_NAME};
use spanbus::{Dispatcher, DropReason, Event, Handler, Record, SpanFutureExt};

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("spanbus-test-{}", std::process::id()))
        .join(name)
}

/// Remembers (id, span id, class name) of every record, in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<SeenRecord>>>);

/// A record's id, span id and class name.
type SeenRecord = (String, Option<String>, &'static str);

impl Handler for Seen {
    async fn handle(&mut self, record: &Record) {
        self.0.lock().unwrap().push((
            record.id().to_string(),
            record.span_id().map(|s| s.to_string()),
            record.class_name(),
        ));
    }
}

/// An event whose serialization fails: JSON object keys must be strings.
#[derive(Serialize)]
struct Unserializable {
    by_pair: HashMap<(u8, u8), u8>,
}

impl Event for Unserializable {
    const NAME: &'static str = "Unserializable";
}

#[tokio::test]
async fn records_round_trip_through_a_file() {
    let path = temp_path("round-trip.jsonl");
    let d = Dispatcher::new("jsonl.round_trip").unwrap();
    let handler = JsonlHandler::create(&path).unwrap();
    let status = handler.status();
    d.add_handler(handler).unwrap();
    let seen = Seen::default();
    d.add_handler(seen.clone()).unwrap();

    let result: Result<(), String> = async {
        d.event(QueryStartEvent {
            query: json!("what is a span?"),
        })
        .await
        .unwrap();
        async {
            d.event(Unserializable {
                by_pair: HashMap::from([((1, 2), 3)]),
            })
            .await
            .unwrap();
            Err::<(), _>("retriever offline".to_owned())
        }
        .in_span_result(d.span("retrieve").args(json!({"top_k": 3})))
        .await
    }
    .in_span_result(d.span("query"))
    .await;
    assert!(result.is_err());
    d.event(QueryEndEvent {
        query: json!("q"),
        response: json!({"response": "42"}),
    })
    .tag("user", "ada")
    .await
    .unwrap();
    d.flush().await;

    let seen = seen.0.lock().unwrap().clone();
    let read = jsonl::read(&path).unwrap();
    println!(
        "{} records written, {} read, {} unserializable",
        status.written(),
        read.records.len(),
        status.unserializable()
    );
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert_eq!(status.written(), seen.len() as u64);
    assert_eq!(read.records.len(), seen.len());
    assert_eq!(status.unserializable(), 1);
    assert_eq!(status.failed_writes(), 0);
    for (record, (id, span_id, class_name)) in read.records.iter().zip(&seen) {
        assert_eq!(&record.id.to_string(), id);
        assert_eq!(&record.span_id.map(|s| s.to_string()), span_id);
        if *class_name == "Unserializable" {
            assert_eq!(record.class_name, UNSERIALIZABLE_CLASS_NAME);
            assert_eq!(record.fields["event_class_name"], "Unserializable");
            assert!(
                record.fields["error"]
                    .as_str()
                    .unwrap()
                    .contains("key must be a string"),
                "{:?}",
                record.fields
            );
        } else {
            assert_eq!(&record.class_name, class_name);
        }
        assert_eq!(record.dispatcher.as_deref(), Some("jsonl.round_trip"));
    }

    // Span signals come back typed.
    let names: Vec<&str> = read.records.iter().map(|r| r.class_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SpanEnter",
            "QueryStartEvent",
            "SpanEnter",
            UNSERIALIZABLE_CLASS_NAME,
            "SpanDrop",
            "SpanDropEvent",
            "SpanDrop",
            "SpanDropEvent",
            "QueryEndEvent",
        ]
    );
    let JsonKind::SpanEnter(query) = &read.records[0].kind else {
        panic!("not an enter: {:?}", read.records[0]);
    };
    let JsonKind::SpanEnter(retrieve) = &read.records[2].kind else {
        panic!("not an enter: {:?}", read.records[2]);
    };
    assert_eq!(query.name, "query");
    assert_eq!(query.parent, None);
    assert_eq!(retrieve.name, "retrieve");
    assert_eq!(retrieve.parent, Some(query.id));
    assert_eq!(retrieve.args, Some(json!({"top_k": 3})));
    assert_eq!(read.records[2].trace_id, read.records[0].trace_id);
    let JsonKind::SpanDrop(drop) = &read.records[4].kind else {
        panic!("not a drop: {:?}", read.records[4]);
    };
    assert_eq!(drop.id, retrieve.id);
    assert_eq!(drop.reason, DropReason::Error);
    assert_eq!(drop.message, "retriever offline");

    // Events come back typed too, with their tags.
    let start: QueryStartEvent = read.records[1].event().unwrap();
    assert_eq!(start.query, "what is a span?");
    assert_eq!(read.records[1].span_id, Some(query.id));
    let end = &read.records[8];
    assert_eq!(end.tags["user"], "ada");
    assert_eq!(
        end.event::<QueryEndEvent>().unwrap().response["response"],
        "42"
    );

    d.shutdown(std::time::Duration::from_secs(5)).await;
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn lines_reach_the_file_at_flush_not_before() {
    let path = temp_path("buffered.jsonl");
    let d = Dispatcher::new("jsonl.buffered").unwrap();
    d.add_handler(JsonlHandler::create(&path).unwrap()).unwrap();
    d.event(QueryStartEvent { query: json!("q") })
        .await
        .unwrap();
    // Wait until the handler has taken the record (flush is the barrier) and the line is out.
    d.flush().await;
    let after_flush = std::fs::read_to_string(&path).unwrap();
    assert_eq!(after_flush.lines().count(), 1);

    d.event(QueryStartEvent { query: json!("q2") })
        .await
        .unwrap();
    let report = d.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(report.is_clean());
    let after_shutdown = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        after_shutdown.lines().count(),
        2,
        "shutdown flushes the buffer"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_file_that_cannot_be_created_is_a_typed_error() {
    let blocker = temp_path("not-a-dir");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"a file").unwrap();
    let err = JsonlHandler::create(blocker.join("trace.jsonl")).unwrap_err();
    assert!(err.to_string().starts_with("could not create "), "{err}");
    let err = jsonl::read(temp_path("does-not-exist.jsonl")).unwrap_err();
    assert!(
        matches!(err, spanbus::error::JsonlError::Open { .. }),
        "{err}"
    );
    std::fs::remove_file(&blocker).unwrap();
}

/// A sink that refuses every write.
struct Broken;

impl std::io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn write_failures_are_counted_not_fatal() {
    let d = Dispatcher::new("jsonl.broken").unwrap();
    let handler = JsonlHandler::from_writer(Broken);
    let status = handler.status();
    d.add_handler(handler).unwrap();
    d.event(QueryStartEvent { query: json!("q") })
        .await
        .unwrap();
    d.flush().await;
    assert_eq!(status.written(), 1, "the line went into the buffer");
    assert_eq!(status.failed_writes(), 1, "the flush failed");
    assert!(status.last_error().unwrap().contains("disk on fire"));

    // The handler keeps going; the next flush fails again and is counted again.
    d.event(QueryStartEvent { query: json!("q2") })
        .await
        .unwrap();
    let report = d.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(status.failed_writes() >= 2);
}
