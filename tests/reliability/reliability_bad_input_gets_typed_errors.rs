//! Reliability matrix, row "bad input" (SPEC §4): each bad input gets a clear typed error (its
//! `Display` message is checked word for word), nothing panics, and nothing else is lost.
//!
//! Covered: emitting after shutdown (async and sync, also on a dispatcher that never had a
//! handler), adding a handler after shutdown, spans after shutdown, invalid dispatcher names on
//! every constructor, an event whose `Serialize` fails (through [`Record::to_json`]), a lossy
//! capacity of zero, adding a handler outside a runtime, malformed span and trace ids, and
//! malformed or missing W3C `traceparent` headers ([`spanbus::propagation::extract`]; every
//! kind of malformed value is checked in the spans_and_context binary, module
//! `traceparent_headers_continue_a_trace_and_malformed_ones_give_typed_errors`). The matrix
//! row "OTLP endpoint down, then back" is in the integrations binary:
//! `the_otlp_exporter_never_blocks_counts_overflow_exactly_and_resumes_when_the_endpoint_returns`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seq};
use serde::{Serialize, Serializer};
use spanbus::error::{EmitError, HandlerError, NameError};
use spanbus::propagation::{TraceParentError, extract};
use spanbus::{
    Dispatcher, Event, EventHandler, HandlerOptions, Record, Registry, SpanFutureExt, SpanId,
    TraceId,
};

/// A payload whose `Serialize` implementation fails.
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this payload refuses to be serialized",
        ))
    }
}

impl Event for Refuses {
    const NAME: &'static str = "Refuses";
}

/// A payload JSON cannot represent: a map with non-string keys.
#[derive(Serialize)]
struct TupleKeys(HashMap<(u8, u8), u8>);

impl Event for TupleKeys {
    const NAME: &'static str = "TupleKeys";
}

/// What [`Serializes`] found, in order: for each event that serialized, its JSON `class_name`
/// and `n`; for each that did not, the event the error names and the error's message.
type Serialized = Vec<Result<(String, u64), (&'static str, String)>>;

/// Serializes every event it sees, keeping what came out; publishes at each flush.
#[derive(Default)]
struct Serializes {
    found: Serialized,
    out: Arc<Mutex<Serialized>>,
}

impl EventHandler for Serializes {
    async fn handle(&mut self, record: &Record) {
        let found = match record.to_json() {
            Ok(map) => Ok((
                map["class_name"].as_str().unwrap_or_default().to_owned(),
                map["n"].as_u64().expect("only Seq events serialize here"),
            )),
            Err(e) => {
                assert!(
                    std::error::Error::source(&e).is_some(),
                    "serde's error is the source"
                );
                Err((e.event, e.to_string()))
            }
        };
        self.found.push(found);
    }

    async fn flush(&mut self) {
        *self.out.lock().unwrap() = self.found.clone();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_typed_error_and_nothing_else_is_lost() {
    let mut cases = 0;
    let seq = |n| Seq { emitter: 0, n };

    // ---- an unserializable payload, between good ones ------------------------------------
    let d = Dispatcher::new("reliability.bad").unwrap();
    let out = Arc::new(Mutex::new(Serialized::default()));
    d.add_event_handler(Serializes {
        out: Arc::clone(&out),
        ..Serializes::default()
    })
    .unwrap();
    let other = Recorder::new();
    d.add_handler(other.clone()).unwrap();
    d.event(seq(1)).await.unwrap();
    d.event(Refuses).await.unwrap(); // emitting is fine: serialization happens in handlers
    d.event(seq(2)).now().unwrap();
    d.event(TupleKeys(HashMap::from([((1, 2), 3)])))
        .await
        .unwrap();
    d.event(seq(3)).await.unwrap();
    d.flush().await;
    cases += 2;
    let found = out.lock().unwrap().clone();
    let good = |n| Ok(("Seq".to_owned(), n));
    assert_eq!(
        found,
        [
            good(1),
            Err((
                "Refuses",
                "event \"Refuses\" could not be serialized: this payload refuses to be serialized"
                    .to_owned()
            )),
            good(2),
            Err((
                "TupleKeys",
                "event \"TupleKeys\" could not be serialized: key must be a string".to_owned()
            )),
            good(3),
        ],
        "the good events around the bad ones were kept, in order"
    );
    // The handler beside it got everything, and nobody panicked.
    assert_eq!(other.seqs(), [1, 2, 3]);
    assert_eq!(other.records().len(), 5);
    let stats = d.all_handler_stats();
    assert_eq!(stats.len(), 2);
    assert!(
        stats
            .iter()
            .all(|(_, s)| s.delivered == 5 && s.panicked == 0),
        "{stats:?}"
    );

    // ---- a lossy capacity of zero ---------------------------------------------------------
    let event_handler_err = d
        .add_event_handler_with(Serializes::default(), HandlerOptions::new().lossy(0))
        .unwrap_err();
    let handler_err = d
        .add_handler_with(Recorder::new(), HandlerOptions::new().lossy(0))
        .unwrap_err();
    for err in [event_handler_err, handler_err] {
        assert_eq!(
            err,
            HandlerError::InvalidOptions("a lossy capacity must be at least 1")
        );
        assert_eq!(
            err.to_string(),
            "invalid handler options: a lossy capacity must be at least 1"
        );
        cases += 1;
    }
    assert_eq!(d.all_handler_stats().len(), 2, "nothing was attached");
    // The smallest valid capacity is accepted.
    d.add_handler_with(Recorder::new(), HandlerOptions::new().lossy(1))
        .unwrap();

    // ---- after shutdown ---------------------------------------------------------------------
    let report = d.shutdown(Duration::from_secs(10)).await;
    let shut = EmitError::ShutDown {
        dispatcher: "reliability.bad".to_owned(),
    };
    let message = "dispatcher \"reliability.bad\" has been shut down";
    let async_err = d.event(seq(4)).await.unwrap_err();
    assert_eq!(async_err, shut);
    assert_eq!(async_err.to_string(), message);
    let sync_err = d.event(seq(5)).now().unwrap_err();
    assert_eq!(sync_err, shut);
    let handler_err = d.add_event_handler(Serializes::default()).unwrap_err();
    assert_eq!(
        handler_err,
        HandlerError::ShutDown {
            dispatcher: "reliability.bad".to_owned()
        }
    );
    assert_eq!(handler_err.to_string(), message);
    // Spans after shutdown still run the code and pass its output through.
    assert_eq!(d.span("late").in_scope(|| 7), 7);
    assert_eq!(async { 8 }.in_span(d.span("late")).await, 8);
    let late: Result<(), &str> = d.span("late").in_scope_result(|| Err("late error"));
    assert_eq!(late, Err("late error"));
    d.span("late").enter().exit();
    // A dispatcher that never had a handler refuses too, once shut down, on both paths.
    let quiet = Dispatcher::new("reliability.quiet").unwrap();
    let quiet_report = quiet.shutdown(Duration::from_secs(1)).await;
    assert!(quiet_report.handlers.is_empty());
    let quiet_shut = EmitError::ShutDown {
        dispatcher: "reliability.quiet".to_owned(),
    };
    assert_eq!(quiet.event(seq(6)).await.unwrap_err(), quiet_shut);
    assert_eq!(quiet.event(seq(7)).now().unwrap_err(), quiet_shut);
    cases += 7;

    // Nothing reached the handlers after shutdown; the report agrees with what they saw.
    assert_eq!(other.records().len(), 5);
    assert_eq!(report.handlers[0].stats.delivered, 5);
    assert_eq!(report.handlers[0].stats.panicked, 0);

    // ---- bad dispatcher names ---------------------------------------------------------------
    let registry = Registry::new();
    let bad_names: Vec<(&str, NameError, &str)> = vec![
        (
            "",
            NameError::Empty,
            "invalid dispatcher name: the name is empty",
        ),
        (
            "app..llm",
            NameError::EmptySegment {
                name: "app..llm".into(),
                position: 2,
            },
            "invalid dispatcher name \"app..llm\": empty segment at position 2",
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
            ".app",
            NameError::EmptySegment {
                name: ".app".into(),
                position: 1,
            },
            "invalid dispatcher name \".app\": empty segment at position 1",
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
            "app.",
            NameError::EmptySegment {
                name: "app.".into(),
                position: 2,
            },
            "invalid dispatcher name \"app.\": empty segment at position 2",
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
            "app\n.llm",
            NameError::InvalidChar {
                name: "app\n.llm".into(),
                ch: '\n',
            },
            "invalid dispatcher name \"app\\n.llm\": character '\\n' is not allowed",
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
            "app.\u{7f}",
            NameError::InvalidChar {
                name: "app.\u{7f}".into(),
                ch: '\u{7f}',
            },
            "invalid dispatcher name \"app.\\u{7f}\": character '\\u{7f}' is not allowed",
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
    for (name, expected, message) in &bad_names {
        for err in [
            Dispatcher::new(name).unwrap_err(),
            Dispatcher::builder(name).build().unwrap_err(),
            registry.get_dispatcher(name).unwrap_err(),
            spanbus::get_dispatcher(name).unwrap_err(),
        ] {
            assert_eq!(&err, expected, "{name:?}");
            assert_eq!(err.to_string(), *message, "{name:?}");
            let _: &dyn std::error::Error = &err;
            cases += 1;
        }
    }
    // Nothing was registered by the failed calls.
    assert_eq!(registry.dispatchers().len(), 1, "only the root");
    // Good names, including non-ASCII letters, digits, dashes and underscores, are fine.
    for good in ["a", "app.retriever", "llama_index.core-2", "δ.ε", "root.x"] {
        assert_eq!(registry.get_dispatcher(good).unwrap().name(), good);
    }

    // ---- malformed ids ----------------------------------------------------------------------
    for (input, message) in [
        (
            "xyz",
            "invalid SpanId: \"xyz\" is not 16 lowercase hex digits with at least one non-zero",
        ),
        (
            "0000000000000000",
            "invalid SpanId: \"0000000000000000\" is not 16 lowercase hex digits with at least \
             one non-zero",
        ),
    ] {
        assert_eq!(input.parse::<SpanId>().unwrap_err().to_string(), message);
        cases += 1;
    }
    let err = "4bf92f3577b34da6a3ce929d0e0e473"
        .parse::<TraceId>()
        .unwrap_err();
    assert_eq!(err.kind, "TraceId");
    cases += 1;

    // ---- malformed or missing traceparent headers --------------------------------------------
    let headers = |value: Option<&str>| -> HashMap<String, String> {
        value
            .map(|v| ("traceparent".to_owned(), v.to_owned()))
            .into_iter()
            .collect()
    };
    for (value, expected, message) in [
        (
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"),
            TraceParentError::MissingDash { position: 35 },
            "traceparent expects '-' at position 35",
        ),
        (
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            TraceParentError::ZeroTraceId,
            "traceparent trace-id is all zeroes",
        ),
        (
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
            TraceParentError::TooShort { len: 52 },
            "traceparent is too short: 52 characters, need 55",
        ),
        (None, TraceParentError::Missing, "no traceparent header"),
    ] {
        let err = extract(&headers(value)).unwrap_err();
        assert_eq!(err, expected, "{value:?}");
        assert_eq!(err.to_string(), message, "{value:?}");
        let _: &dyn std::error::Error = &err;
        cases += 1;
    }

    println!(
        "bad input: cases={cases} typed_errors={cases} panics=0 good_events_kept={}/3 \
         serialize_errors={}",
        found.iter().filter(|f| f.is_ok()).count(),
        found.iter().filter(|f| f.is_err()).count()
    );
}

#[test]
fn adding_a_handler_outside_a_runtime_is_a_typed_error() {
    let d = Dispatcher::new("reliability.no_runtime").unwrap();
    let span_handler_err = d
        .add_span_handler(spanbus::handlers::NullSpanHandler)
        .expect_err("no runtime here");
    let handler_err = d.add_handler(Recorder::new()).unwrap_err();
    for err in [span_handler_err, handler_err] {
        assert_eq!(err, HandlerError::NoRuntime);
        assert_eq!(
            err.to_string(),
            "no tokio runtime is running on this thread: add handlers from inside a runtime"
        );
    }
    assert!(d.all_handler_stats().is_empty());
    // Emitting without handlers (and so without a runtime) is a no-op, not an error; spans
    // still run their code.
    d.event(Seq { emitter: 0, n: 0 }).now().unwrap();
    assert_eq!(d.span("no runtime").in_scope(|| 1), 1);
    println!("bad input (no runtime): add_handler -> HandlerError::NoRuntime, emit -> Ok");
}
