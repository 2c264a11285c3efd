//! `#[spanbus::span]` captures arguments as JSON (minus `skip`ped ones, never `self`), and ends
//! the span by what the fn did: exit on success, drop with the error's text on `Err`, drop with
//! the panic text on a panic (which keeps unwinding), drop as cancelled when the future is
//! dropped. Values, errors and panics pass through unchanged.

use std::fmt;
use std::time::Duration;

use crate::support::spans::{Outcome, recorded};
use serde::Serialize;
use serde_json::json;
use spanbus::DropReason;

#[derive(Serialize, Clone)]
struct Query {
    text: String,
    top_k: u32,
}

/// Not serializable: must be skipped.
struct Connection;

#[spanbus::span(dispatcher = "outcomes", skip(conn), tags(stage = "retrieve", "llm.model" = "m1"))]
async fn retrieve(conn: &Connection, query: Query, limit: Option<u8>) -> Vec<String> {
    let _ = conn;
    vec![query.text; usize::from(limit.unwrap_or(1))]
}

#[spanbus::span(dispatcher = "outcomes", skip_all)]
fn secret(password: &str, _conn: Connection) -> usize {
    password.len()
}

#[spanbus::span(dispatcher = "outcomes", name = "renamed")]
fn with_a_name(r#type: &str) -> String {
    r#type.to_uppercase()
}

#[derive(Debug, PartialEq)]
struct ParseFailed(String);

impl fmt::Display for ParseFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot parse {:?}", self.0)
    }
}

#[spanbus::span(dispatcher = "outcomes")]
async fn parse_async(input: String) -> Result<u32, ParseFailed> {
    tokio::task::yield_now().await;
    let n = input.parse().map_err(|_| ParseFailed(input.clone()))?;
    Ok(n)
}

#[spanbus::span(dispatcher = "outcomes")]
fn parse_sync(input: &str) -> std::result::Result<u32, ParseFailed> {
    if input.is_empty() {
        return Err(ParseFailed(String::new()));
    }
    let n = input.parse().map_err(|_| ParseFailed(input.into()))?;
    Ok(n)
}

#[spanbus::span(dispatcher = "outcomes")]
fn io_result(fail: bool) -> std::io::Result<()> {
    if fail {
        Err(std::io::Error::other("disk on fire"))
    } else {
        Ok(())
    }
}

#[spanbus::span(dispatcher = "outcomes")]
fn explode_sync(code: u8) -> u8 {
    if code > 0 {
        panic!("exploded with {code}");
    }
    code
}

#[spanbus::span(dispatcher = "outcomes")]
async fn explode_async(code: u8) -> u8 {
    tokio::task::yield_now().await;
    if code > 0 {
        panic!("async exploded with {code}");
    }
    code
}

#[spanbus::span(dispatcher = "outcomes")]
async fn forever(label: &'static str) {
    let _ = label;
    std::future::pending::<()>().await;
}

#[spanbus::span(dispatcher = "outcomes")]
async fn outer_async(query: Query) -> usize {
    let inner = retrieve(&Connection, query, Some(2)).await;
    inner.len()
}

#[tokio::test]
async fn arguments_are_captured_as_json_except_skipped_ones() {
    let (d, spans, _) = recorded("outcomes");
    let q = Query {
        text: "rust".into(),
        top_k: 3,
    };
    assert_eq!(
        retrieve(&Connection, q.clone(), Some(2)).await,
        ["rust", "rust"]
    );
    assert_eq!(secret("hunter2", Connection), 7);
    assert_eq!(with_a_name("abc"), "ABC");
    d.flush().await;

    // `retrieve` also runs nested in another test: this call is the root one.
    let r = spans
        .all()
        .into_iter()
        .find(|s| s.name == concat!(module_path!(), "::retrieve") && s.parent.is_none())
        .unwrap();
    assert_eq!(
        r.args,
        Some(json!({ "query": { "text": "rust", "top_k": 3 }, "limit": 2 }))
    );
    assert_eq!(r.tags["stage"], "retrieve");
    assert_eq!(r.tags["llm.model"], "m1");
    assert_eq!(spans.one(concat!(module_path!(), "::secret")).args, None);
    assert_eq!(spans.one("renamed").args, Some(json!({ "type": "abc" })));
}

#[tokio::test]
async fn nested_spanned_calls_link_parent_and_child() {
    let (d, spans, _) = recorded("outcomes");
    let q = Query {
        text: "x".into(),
        top_k: 1,
    };
    assert_eq!(outer_async(q).await, 2);
    d.flush().await;
    let outer = spans.one(concat!(module_path!(), "::outer_async"));
    let inner: Vec<_> = spans
        .all()
        .into_iter()
        .filter(|s| s.parent == Some(outer.id))
        .collect();
    assert_eq!(inner.len(), 1);
    assert_eq!(inner[0].name, concat!(module_path!(), "::retrieve"));
    assert_eq!(inner[0].trace_id, outer.trace_id);
    assert_eq!(outer.parent, None);
}

#[tokio::test]
async fn err_drops_the_span_with_the_errors_text_and_passes_the_error_through() {
    let (d, spans, _) = recorded("outcomes");

    assert_eq!(parse_async("12".into()).await, Ok(12));
    assert_eq!(
        parse_async("x1".into()).await,
        Err(ParseFailed("x1".into()))
    );
    assert_eq!(parse_sync("7"), Ok(7));
    assert_eq!(parse_sync("y"), Err(ParseFailed("y".into())));
    assert_eq!(parse_sync(""), Err(ParseFailed(String::new())));
    assert_eq!(io_result(true).unwrap_err().to_string(), "disk on fire");
    io_result(false).unwrap();
    d.flush().await;

    let outcomes = |name: &str| -> Vec<Outcome> {
        let full = format!("{}::{name}", module_path!());
        spans
            .all()
            .into_iter()
            .filter(|s| s.name == full)
            .map(|s| s.outcome)
            .collect()
    };
    assert_eq!(
        outcomes("parse_async"),
        [
            Outcome::Exited,
            Outcome::Dropped(DropReason::Error, "cannot parse \"x1\"".into())
        ]
    );
    assert_eq!(
        outcomes("parse_sync"),
        [
            Outcome::Exited,
            Outcome::Dropped(DropReason::Error, "cannot parse \"y\"".into()),
            Outcome::Dropped(DropReason::Error, "cannot parse \"\"".into()),
        ]
    );
    assert_eq!(
        outcomes("io_result"),
        [
            Outcome::Dropped(DropReason::Error, "disk on fire".into()),
            Outcome::Exited
        ]
    );
}

#[tokio::test]
async fn a_panic_drops_the_span_and_keeps_unwinding() {
    let (d, spans, _) = recorded("outcomes");
    assert_eq!(explode_sync(0), 0);
    let payload = std::panic::catch_unwind(|| explode_sync(3)).unwrap_err();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "exploded with 3");

    let joined = tokio::spawn(explode_async(4)).await.unwrap_err();
    let payload = joined.into_panic();
    assert_eq!(
        payload.downcast_ref::<String>().unwrap(),
        "async exploded with 4"
    );
    d.flush().await;

    let sync_outcomes: Vec<_> = spans
        .all()
        .into_iter()
        .filter(|s| s.name.ends_with("::explode_sync"))
        .map(|s| (s.args, s.outcome))
        .collect();
    assert!(sync_outcomes.contains(&(Some(json!({"code": 0})), Outcome::Exited)));
    assert!(sync_outcomes.contains(&(
        Some(json!({"code": 3})),
        Outcome::Dropped(DropReason::Panic, "exploded with 3".into())
    )));
    assert_eq!(
        spans
            .one(concat!(module_path!(), "::explode_async"))
            .outcome,
        Outcome::Dropped(DropReason::Panic, "async exploded with 4".into())
    );
}

#[tokio::test]
async fn a_dropped_future_drops_its_span_as_cancelled() {
    let (d, spans, _) = recorded("outcomes");
    let timed_out = tokio::time::timeout(Duration::from_millis(20), forever("never")).await;
    assert!(timed_out.is_err());
    d.flush().await;
    let span = spans.one(concat!(module_path!(), "::forever"));
    assert_eq!(
        span.outcome,
        Outcome::Dropped(DropReason::Cancelled, String::new())
    );
    assert_eq!(span.args, Some(json!({"label": "never"})));
}
