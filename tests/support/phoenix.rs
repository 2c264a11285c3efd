//! Talking to a real Arize Phoenix from the tests: where it is, whether it is up, and reading
//! spans back through its REST API.
//!
//! HTTP is a raw HTTP/1.1 exchange over a tokio `TcpStream` (`Connection: close`, so the body
//! ends at EOF): loopback only, no client crate needed.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Phoenix base URL: `SPANBUS_PHOENIX_URL`, default `http://127.0.0.1:6006`.
pub fn phoenix_url() -> String {
    std::env::var("SPANBUS_PHOENIX_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:6006".into())
        .trim_end_matches('/')
        .to_owned()
}

/// Phoenix's OTLP/gRPC URL: `SPANBUS_PHOENIX_GRPC_URL`, else the host of [`phoenix_url`] with
/// the port `PHOENIX_GRPC_PORT` (default 4317), as `.ci/phoenix.sh` starts it.
pub fn phoenix_grpc_url() -> String {
    if let Some(url) = std::env::var("SPANBUS_PHOENIX_GRPC_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return url.trim_end_matches('/').to_owned();
    }
    let port = std::env::var("PHOENIX_GRPC_PORT")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "4317".into());
    let http = phoenix_url();
    let host = authority(&http)
        .rsplit_once(':')
        .map_or(authority(&http), |(h, _)| h);
    format!("http://{host}:{port}")
}

/// `host:port` of an `http://host:port` URL.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
}

/// The Phoenix base URL when Phoenix answers `GET /readyz`. When it does not: under `CI` the
/// test fails; elsewhere it prints why it skips and returns `None`.
pub async fn require_phoenix(test: &str) -> Option<String> {
    let url = phoenix_url();
    match get(&url, "/readyz").await {
        Ok((200, _)) => Some(url),
        other => {
            let why = format!("Phoenix is not reachable at {url} (GET /readyz: {other:?})");
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {why}; CI is set, so this is a failure, not a skip");
            }
            eprintln!(
                "SKIPPED {test}: {why}. Start it with `bash .ci/phoenix.sh install && bash .ci/phoenix.sh start`."
            );
            None
        }
    }
}

/// A project name nobody used before.
pub fn unique_project(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// `GET base+path` → (status, body).
pub async fn get(base: &str, path: &str) -> std::io::Result<(u16, String)> {
    let host = authority(base).to_owned();
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&host))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Every span of `trace_id` in `project` (all pages, oldest first).
pub async fn spans_of_trace(base: &str, project: &str, trace_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/projects/{project}/spans?trace_id={trace_id}&limit=1000&sort=start_time&order=asc"
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", c.replace('=', "%3D")));
        }
        let Ok((200, body)) = get(base, &path).await else {
            // 404 until the first span of the project is stored: "not yet".
            return out;
        };
        let page: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        out.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Every span in `project` (all pages, oldest first).
pub async fn spans_of_project(base: &str, project: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/projects/{project}/spans?limit=1000&sort=start_time&order=asc");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", c.replace('=', "%3D")));
        }
        let Ok((200, body)) = get(base, &path).await else {
            return out;
        };
        let page: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        out.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Polls until `project` holds at least `count` spans, or `deadline` passes; returns what was
/// there last.
pub async fn wait_for_project_spans(
    base: &str,
    project: &str,
    count: usize,
    deadline: Duration,
) -> Vec<Value> {
    let until = Instant::now() + deadline;
    loop {
        let spans = spans_of_project(base, project).await;
        if spans.len() >= count || Instant::now() >= until {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls until `trace_id` has at least `count` spans in `project`, or `deadline` passes;
/// returns what was there last.
pub async fn wait_for_spans(
    base: &str,
    project: &str,
    trace_id: &str,
    count: usize,
    deadline: Duration,
) -> Vec<Value> {
    let until = Instant::now() + deadline;
    loop {
        let spans = spans_of_trace(base, project, trace_id).await;
        if spans.len() >= count || Instant::now() >= until {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The span named `name` among `spans`: by its exported name, or by the spanbus name a span
/// renamed by the GenAI conventions keeps in `spanbus.span.name`.
pub fn by_name<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name || s["attributes"]["spanbus.span.name"] == name)
        .unwrap_or_else(|| panic!("no span named {name:?} in {spans:#?}"))
}
