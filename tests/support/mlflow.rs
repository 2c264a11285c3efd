//! Talking to a real MLflow tracking server from the tests: where it is, whether it is up,
//! experiments, and traces read back through its REST API (`/api/3.0/mlflow/traces/...`).
//!
//! HTTP is the same raw HTTP/1.1 exchange as [`phoenix`](super::phoenix)'s (loopback only).

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::phoenix::get;

/// The MLflow base URL: `SPANBUS_MLFLOW_URL`, default `http://127.0.0.1:5055` (what
/// `.ci/mlflow.sh url` prints).
pub fn mlflow_url() -> String {
    std::env::var("SPANBUS_MLFLOW_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:5055".into())
        .trim_end_matches('/')
        .to_owned()
}

/// The MLflow base URL when MLflow answers `GET /health`. When it does not: under `CI` the
/// test fails; elsewhere it prints why it skips and returns `None`.
pub async fn require_mlflow(test: &str) -> Option<String> {
    let url = mlflow_url();
    match get(&url, "/health").await {
        Ok((200, _)) => Some(url),
        other => {
            let why = format!("MLflow is not reachable at {url} (GET /health: {other:?})");
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {why}; CI is set, so this is a failure, not a skip");
            }
            eprintln!(
                "SKIPPED {test}: {why}. Start it with `bash .ci/mlflow.sh install && bash .ci/mlflow.sh start`."
            );
            None
        }
    }
}

/// `POST base+path` with a JSON body → (status, body).
pub async fn post_json(base: &str, path: &str, body: &Value) -> std::io::Result<(u16, String)> {
    let host = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&host))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|t| usize::from_str_radix(t.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Creates an experiment named `name` and returns its id.
pub async fn create_experiment(base: &str, name: &str) -> String {
    let (status, body) = post_json(
        base,
        "/api/2.0/mlflow/experiments/create",
        &json!({ "name": name }),
    )
    .await
    .expect("POST experiments/create");
    assert_eq!(status, 200, "experiments/create: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["experiment_id"].as_str().unwrap().to_owned()
}

/// Every trace's info in `experiment` (all pages).
pub async fn search_traces(base: &str, experiment: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}],
            "max_results": 500,
        });
        if let Some(t) = &token {
            request["page_token"] = t.as_str().into();
        }
        let Ok((200, body)) = post_json(base, "/api/3.0/mlflow/traces/search", &request).await
        else {
            return out;
        };
        let page: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        out.extend(page["traces"].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return out,
        }
    }
}

/// One trace with its spans (`{trace_info, spans}`).
pub async fn get_trace(base: &str, trace_id: &str) -> Value {
    let (status, body) = get(
        base,
        &format!("/api/3.0/mlflow/traces/get?trace_id={trace_id}"),
    )
    .await
    .expect("GET traces/get");
    assert_eq!(status, 200, "traces/get {trace_id}: {body}");
    let mut v: Value = serde_json::from_str(&body).unwrap();
    v["trace"].take()
}

/// An OTLP/JSON `AnyValue` as MLflow returns it (`{"string_value": ..}`, `{"int_value": ..}`,
/// `{"kvlist_value": {"values": [..]}}`, ...) as plain JSON.
pub fn plain(v: &Value) -> Value {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "int_value" => inner
            .as_i64()
            .or_else(|| inner.as_str().and_then(|s| s.parse().ok()))
            .map_or(Value::Null, Value::from),
        "array_value" => inner["values"]
            .as_array()
            .map(|a| a.iter().map(plain).collect())
            .unwrap_or_default(),
        "kvlist_value" => Value::Object(attributes_of(&inner["values"])),
        _ => inner.clone(),
    }
}

/// A span's (or kvlist's) `[{key, value}]` list as a map.
pub fn attributes_of(list: &Value) -> Map<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), plain(&kv["value"]))))
        .collect()
}
