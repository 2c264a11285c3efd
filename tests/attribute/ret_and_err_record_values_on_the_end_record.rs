//! `#[span(ret)]` and `#[span(err)]`: the return value lands on the exit record and the error
//! value on the drop record, where a `SpanHandler` receives them (llama-index's `result` and
//! `err`) and the JSON Lines output writes them (`result`, `error`), read back as written.
//! Without the options nothing is recorded; with nobody listening nothing is serialized.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use spanbus::handlers::JsonlHandler;
use spanbus::jsonl::{self, JsonKind};
use spanbus::record::{SpanDrop, SpanEnter, SpanExit};
use spanbus::{Dispatcher, Record, SpanHandler};

/// How a span ended as a span handler saw it: the exit's result, or the drop's text and error.
type End = (Option<Value>, Option<(String, Option<Value>)>);

/// What a span handler saw at each span's end, by span name.
#[derive(Clone, Default)]
struct Ends(Arc<Mutex<BTreeMap<String, End>>>);

impl SpanHandler for Ends {
    type Span = String;

    fn new_span(&mut self, enter: &SpanEnter, _: &Record) -> Option<String> {
        Some(enter.name.to_string())
    }

    fn prepare_to_exit_span(&mut self, name: String, exit: &SpanExit, _: &Record) {
        let result = exit.result.as_deref().cloned();
        self.0.lock().unwrap().insert(name, (result, None));
    }

    fn prepare_to_drop_span(&mut self, name: String, drop: &SpanDrop, _: &Record) {
        let error = drop.error.as_deref().cloned();
        self.0
            .lock()
            .unwrap()
            .insert(name, (None, Some((drop.message.clone(), error))));
    }
}

#[derive(Debug, Serialize)]
struct Answer {
    text: String,
    tokens: u32,
}

#[derive(Debug, Serialize)]
enum LookupError {
    NotFound { key: String },
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NotFound { key } => write!(f, "no entry for {key}"),
        }
    }
}

/// Counts how often it is serialized.
struct Counted<'a>(&'a AtomicUsize);

impl Serialize for Counted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        s.serialize_u32(7)
    }
}

mod pipeline {
    use super::*;

    #[spanbus::span(dispatcher = bus, skip(bus), ret)]
    pub fn answer(bus: &Dispatcher, q: &str) -> Answer {
        Answer {
            text: format!("{q}!"),
            tokens: 3,
        }
    }

    #[spanbus::span(dispatcher = bus, skip(bus), ret)]
    pub async fn embed(bus: &Dispatcher, n: usize) -> Vec<f32> {
        tokio::task::yield_now().await;
        vec![0.5; n]
    }

    #[spanbus::span(dispatcher = bus, skip(bus), ret, err)]
    pub fn lookup(bus: &Dispatcher, key: &str) -> Result<u32, LookupError> {
        match key {
            "a" => Ok(1),
            _ => Err(LookupError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    #[spanbus::span(dispatcher = bus, skip(bus), err)]
    pub async fn fetch(bus: &Dispatcher, key: String) -> Result<u32, LookupError> {
        tokio::task::yield_now().await;
        Err(LookupError::NotFound { key })
    }

    #[spanbus::span(dispatcher = bus, skip(bus), ret)]
    pub fn only_ok(bus: &Dispatcher, fail: bool) -> Result<&'static str, String> {
        if fail {
            Err("boom".to_owned())
        } else {
            Ok("fine")
        }
    }

    #[spanbus::span(dispatcher = bus, skip(bus))]
    pub fn plain(bus: &Dispatcher) -> Result<u32, String> {
        Err("plain".to_owned())
    }

    #[spanbus::span(dispatcher = bus, skip_all, ret)]
    pub fn counted<'a>(bus: &Dispatcher, n: &'a AtomicUsize) -> Counted<'a> {
        Counted(n)
    }
}

#[tokio::test]
async fn ret_and_err_values_reach_a_span_handler() {
    let bus = Dispatcher::new("ret_err.handler").unwrap();
    let ends = Ends::default();
    bus.add_span_handler(ends.clone()).unwrap();

    assert_eq!(pipeline::answer(&bus, "why").text, "why!");
    assert_eq!(pipeline::embed(&bus, 2).await, vec![0.5, 0.5]);
    assert_eq!(pipeline::lookup(&bus, "a").unwrap(), 1);
    assert!(pipeline::fetch(&bus, "b".into()).await.is_err());
    assert!(pipeline::only_ok(&bus, true).is_err());
    assert!(pipeline::plain(&bus).is_err());
    let span = bus.span("by_hand").enter();
    span.exit_with(&json!({"rows": 2}));
    bus.span("failed_by_hand")
        .enter()
        .fail_with(&LookupError::NotFound { key: "z".into() });
    bus.flush().await;

    let ends = ends.0.lock().unwrap().clone();
    for (name, end) in &ends {
        println!("{name}: {end:?}");
    }
    let ended = |suffix: &str| {
        ends.iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map(|(_, end)| end.clone())
            .unwrap_or_else(|| panic!("no span named *{suffix} in {ends:?}"))
    };
    assert_eq!(
        ended("::answer").0,
        Some(json!({"text": "why!", "tokens": 3}))
    );
    assert_eq!(ended("::embed").0, Some(json!([0.5, 0.5])));
    // A `Result` fn with `ret` records the `Ok` value, not the `Result`.
    assert_eq!(ended("::lookup").0, Some(json!(1)));
    assert_eq!(
        ended("::fetch").1,
        Some((
            "no entry for b".to_owned(),
            Some(json!({"NotFound": {"key": "b"}}))
        ))
    );
    // `ret` alone: an `Err` drops the span with its text and records no value.
    assert_eq!(ended("::only_ok").1, Some(("boom".to_owned(), None)));
    // Neither option: nothing recorded, as before.
    assert_eq!(ended("::plain").1, Some(("plain".to_owned(), None)));
    assert_eq!(ended("by_hand").0, Some(json!({"rows": 2})));
    assert_eq!(
        ended("failed_by_hand").1,
        Some((
            "no entry for z".to_owned(),
            Some(json!({"NotFound": {"key": "z"}}))
        ))
    );
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn ret_and_err_values_are_written_to_jsonl_and_read_back() {
    let dir = std::env::temp_dir().join(format!("spanbus-ret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ret.jsonl");
    let bus = Dispatcher::new("ret_err.jsonl").unwrap();
    bus.add_handler(JsonlHandler::create(&path).unwrap())
        .unwrap();
    pipeline::lookup(&bus, "a").unwrap();
    pipeline::lookup(&bus, "q").unwrap_err();
    bus.shutdown(Duration::from_secs(5)).await;

    let text = std::fs::read_to_string(&path).unwrap();
    let exit_line = text.lines().find(|l| l.contains("\"SpanExit\"")).unwrap();
    let drop_line = text.lines().find(|l| l.contains("\"SpanDrop\"")).unwrap();
    println!("{exit_line}\n{drop_line}");
    let exit: Value = serde_json::from_str(exit_line).unwrap();
    let drop: Value = serde_json::from_str(drop_line).unwrap();
    assert_eq!(exit["result"], json!(1));
    assert_eq!(drop["error"], json!({"NotFound": {"key": "q"}}));
    assert_eq!(drop["err_str"], json!("no entry for q"));

    let read = jsonl::read(&path).unwrap();
    let mut exits = 0;
    let mut drops = 0;
    for record in &read.records {
        match &record.kind {
            JsonKind::SpanExit(exit) => {
                exits += 1;
                assert_eq!(exit.result.as_deref(), Some(&json!(1)));
            }
            JsonKind::SpanDrop(drop) => {
                drops += 1;
                assert_eq!(
                    drop.error.as_deref(),
                    Some(&json!({"NotFound": {"key": "q"}}))
                );
            }
            _ => {}
        }
    }
    assert_eq!((exits, drops), (1, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_return_value_is_serialized_only_when_a_handler_listens() {
    let bus = Dispatcher::new("ret_err.idle").unwrap();
    let n = AtomicUsize::new(0);
    for _ in 0..100 {
        pipeline::counted(&bus, &n);
    }
    let idle = n.load(Ordering::Relaxed);
    let ends = Ends::default();
    bus.add_span_handler(ends.clone()).unwrap();
    for _ in 0..100 {
        pipeline::counted(&bus, &n);
    }
    let live = n.load(Ordering::Relaxed) - idle;
    println!("serializations: {idle} with nobody listening, {live} with a span handler");
    assert_eq!(idle, 0);
    assert_eq!(live, 100);
    bus.shutdown(Duration::from_secs(5)).await;
    let ends = ends.0.lock().unwrap();
    assert!(ends.values().all(|(result, _)| result == &Some(json!(7))));
}
