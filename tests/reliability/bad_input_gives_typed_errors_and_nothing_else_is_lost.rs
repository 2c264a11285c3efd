//! Bad input gives typed errors with plain messages, never a panic, and loses nothing else:
//! bad dispatcher names, emitting after shutdown, adding a handler outside a runtime or with a
//! lossy capacity of 0, and an event whose `Serialize` fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seq};
use serde::{Serialize, Serializer};
use spanbus::{
    Dispatcher, EmitError, Handler, HandlerError, HandlerOptions, NameError, Record, Registry,
};

#[test]
fn bad_dispatcher_names_are_rejected_with_the_right_variant_and_a_plain_message() {
    let reg = Registry::new();
    let cases: Vec<(&str, NameError, &str)> = vec![
        (
            "",
            NameError::Empty,
            "invalid dispatcher name: the name is empty",
        ),
        (
            "a..b",
            NameError::EmptySegment {
                name: "a..b".into(),
                position: 2,
            },
            "invalid dispatcher name \"a..b\": empty segment at position 2",
        ),
        (
            ".a",
            NameError::EmptySegment {
                name: ".a".into(),
                position: 1,
            },
            "invalid dispatcher name \".a\": empty segment at position 1",
        ),
        (
            "a.",
            NameError::EmptySegment {
                name: "a.".into(),
                position: 2,
            },
            "invalid dispatcher name \"a.\": empty segment at position 2",
        ),
        (
            ".",
            NameError::EmptySegment {
                name: ".".into(),
                position: 1,
            },
            "invalid dispatcher name \".\": empty segment at position 1",
        ),
        (
            "my app",
            NameError::InvalidChar {
                name: "my app".into(),
                ch: ' ',
            },
            "invalid dispatcher name \"my app\": character ' ' is not allowed",
        ),
        (
            "app\tx",
            NameError::InvalidChar {
                name: "app\tx".into(),
                ch: '\t',
            },
            "invalid dispatcher name \"app\\tx\": character '\\t' is not allowed",
        ),
        (
            "app\u{0}",
            NameError::InvalidChar {
                name: "app\u{0}".into(),
                ch: '\0',
            },
            "invalid dispatcher name \"app\\0\": character '\\0' is not allowed",
        ),
        (
            "a.\u{7f}",
            NameError::InvalidChar {
                name: "a.\u{7f}".into(),
                ch: '\u{7f}',
            },
            "invalid dispatcher name \"a.\\u{7f}\": character '\\u{7f}' is not allowed",
        ),
        (
            "nbsp\u{a0}x",
            NameError::InvalidChar {
                name: "nbsp\u{a0}x".into(),
                ch: '\u{a0}',
            },
            "invalid dispatcher name \"nbsp\\u{a0}x\": character '\\u{a0}' is not allowed",
        ),
    ];
    for (name, variant, message) in cases {
        for err in [
            reg.get_dispatcher(name).unwrap_err(),
            Dispatcher::new(name).unwrap_err(),
            Dispatcher::builder(name).build().unwrap_err(),
        ] {
            assert_eq!(err, variant, "{name:?}");
            assert_eq!(err.to_string(), message, "{name:?}");
            let _: &dyn std::error::Error = &err;
        }
    }
    // Nothing was registered by the failed calls.
    assert_eq!(reg.dispatchers().len(), 1, "only the root");
    // Good names, including non-ASCII letters, digits, dashes and underscores, are fine.
    for good in ["a", "app.retriever", "llama_index.core-2", "δ.ε", "root.x"] {
        assert_eq!(reg.get_dispatcher(good).unwrap().name(), good);
    }
}

#[tokio::test]
async fn emitting_after_shutdown_is_a_typed_error_on_both_paths() {
    let d = Dispatcher::new("gone").unwrap();
    // Even with no handler ever attached.
    let report = d.shutdown(Duration::from_secs(1)).await;
    assert!(report.handlers.is_empty());
    let expected = EmitError::ShutDown {
        dispatcher: "gone".into(),
    };
    assert_eq!(
        d.event(Seq { emitter: 0, n: 0 }).await.unwrap_err(),
        expected
    );
    assert_eq!(
        d.event(Seq { emitter: 0, n: 0 }).now().unwrap_err(),
        expected
    );
}

#[test]
fn adding_a_handler_outside_a_runtime_is_a_typed_error() {
    let d = Dispatcher::new("no.runtime").unwrap();
    let err = d.add_handler(Recorder::new()).unwrap_err();
    assert_eq!(err, HandlerError::NoRuntime);
    assert_eq!(
        err.to_string(),
        "no tokio runtime is running on this thread: add handlers from inside a runtime"
    );
    assert!(d.handler_stats().is_empty());
    // Emitting and spans still work (nobody listens).
    d.event(Seq { emitter: 0, n: 0 }).now().unwrap();
    assert_eq!(d.span("s").in_scope(|| 1), 1);
}

#[tokio::test]
async fn a_lossy_capacity_of_zero_is_invalid_options() {
    let d = Dispatcher::new("opts").unwrap();
    let err = d
        .add_handler_with(Recorder::new(), HandlerOptions::new().lossy(0))
        .unwrap_err();
    assert!(matches!(err, HandlerError::InvalidOptions(_)));
    assert_eq!(
        err.to_string(),
        "invalid handler options: a lossy capacity must be at least 1"
    );
    assert!(d.handler_stats().is_empty());
    d.add_handler_with(Recorder::new(), HandlerOptions::new().lossy(1))
        .unwrap();
}

/// An event whose `Serialize` always fails.
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("the socket cannot be serialized"))
    }
}

impl spanbus::Event for Unserializable {
    const NAME: &'static str = "Unserializable";
}

/// A map with non-string keys: JSON cannot represent it.
#[derive(Serialize)]
struct TupleKeys {
    scores: BTreeMap<(u8, u8), f32>,
}

impl spanbus::Event for TupleKeys {
    const NAME: &'static str = "TupleKeys";
}

/// Turns every record into JSON, keeping each outcome as text.
#[derive(Clone, Default)]
struct JsonSink(Arc<Mutex<Vec<Result<String, String>>>>);

impl Handler for JsonSink {
    async fn handle(&mut self, record: &Record) {
        let out = record
            .to_json()
            .map(|m| m["class_name"].to_string())
            .map_err(|e| {
                assert!(std::error::Error::source(&e).is_some());
                format!("{}|{}", e.event, e)
            });
        self.0.lock().unwrap().push(out);
    }
}

#[tokio::test]
async fn an_unserializable_event_is_a_serialize_error_that_names_it_and_harms_nothing_else() {
    let d = Dispatcher::new("json").unwrap();
    let sink = JsonSink::default();
    let other = Recorder::new();
    d.add_handler(sink.clone()).unwrap();
    d.add_handler(other.clone()).unwrap();
    d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
    d.event(Unserializable).await.unwrap();
    d.event(Seq { emitter: 0, n: 1 }).await.unwrap();
    let mut scores = BTreeMap::new();
    scores.insert((1, 2), 0.5);
    d.event(TupleKeys { scores }).now().unwrap();
    d.event(Seq { emitter: 0, n: 2 }).await.unwrap();
    d.flush().await;

    let out = sink.0.lock().unwrap().clone();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0], Ok("\"Seq\"".into()));
    assert_eq!(out[2], Ok("\"Seq\"".into()));
    assert_eq!(out[4], Ok("\"Seq\"".into()));
    assert_eq!(
        out[1],
        Err(
            "Unserializable|event \"Unserializable\" could not be serialized: \
             the socket cannot be serialized"
                .into()
        )
    );
    let tuple = out[3].as_ref().unwrap_err();
    assert!(
        tuple.starts_with("TupleKeys|event \"TupleKeys\" could not be serialized"),
        "{tuple}"
    );
    assert_eq!(other.seqs(), [0, 1, 2]);
    assert_eq!(other.records().len(), 5);
    let stats = d.handler_stats();
    assert!(
        stats
            .iter()
            .all(|(_, s)| s.delivered == 5 && s.panicked == 0)
    );
}
