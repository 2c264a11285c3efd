//! A loopback OTLP/HTTP endpoint for the exporter's tests: it reads every POST whole (so the
//! client never sees a reset for an answer it did not expect), decodes the spans in it
//! (protobuf or JSON, gzip-compressed or not), and answers what the test decides per request:
//! a status with headers, or nothing at all (a server that accepted the connection and hangs).
//! It keeps every request, with when it arrived, its path and headers, and counts the
//! connections opened and closed by the client. It serves plain TCP or TLS (`start_tls`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

/// What the endpoint answers to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status line and these headers, with an empty body.
    Status(u16, Vec<(&'static str, String)>),
    /// Nothing: the request is read and left unanswered.
    Never,
}

impl Answer {
    /// `200 OK`.
    pub fn ok() -> Answer {
        Answer::Status(200, Vec::new())
    }

    /// A status without headers.
    pub fn status(code: u16) -> Answer {
        Answer::Status(code, Vec::new())
    }
}

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When its body had been read.
    pub at: Instant,
    /// The body's length in bytes (as sent: compressed if it was).
    pub len: usize,
    /// The body as sent (compressed if it was), for tests that search every exported byte.
    pub body: Vec<u8>,
    /// The request's path (`/v1/traces`).
    pub path: String,
    /// The request's headers, names in lowercase, in the order sent.
    pub headers: Vec<(String, String)>,
    /// Whether the body decoded as an OTLP request (protobuf, or JSON for
    /// `content-type: application/json`, after gunzip for `content-encoding: gzip`).
    pub decoded: bool,
    /// The names of the spans in it.
    pub names: Vec<String>,
    /// The spans in it, decoded.
    pub spans: Vec<Span>,
    /// The status it was answered, `None` if it was left unanswered.
    pub status: Option<u16>,
}

impl Received {
    /// Whether the endpoint accepted it (a 2xx answer).
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Received>>,
    opened: AtomicUsize,
    closed: AtomicUsize,
    changed: Notify,
}

type Decide = dyn Fn(usize, &Received) -> Answer + Send + Sync;

/// A running endpoint; it stops when dropped.
pub struct Endpoint {
    port: u16,
    tls: bool,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Starts an endpoint on a free loopback port; `decide` gets each request's index (from 0)
    /// and the request, and says what to answer.
    pub async fn start(
        decide: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static,
    ) -> Endpoint {
        Self::start_with(None, decide).await
    }

    /// As [`start`](Self::start), over TLS with this server configuration.
    pub async fn start_tls(
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
        decide: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static,
    ) -> Endpoint {
        Self::start_with(Some(TlsAcceptor::from(tls)), decide).await
    }

    async fn start_with(
        tls: Option<TlsAcceptor>,
        decide: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static,
    ) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let decide: Arc<Decide> = Arc::new(decide);
        let is_tls = tls.is_some();
        let server = tokio::spawn(serve(listener, tls, state.clone(), decide));
        Endpoint {
            port,
            tls: is_tls,
            state,
            server,
        }
    }

    /// The traces URL to give the exporter (`https://` for a TLS endpoint).
    pub fn url(&self) -> String {
        format!("{}/v1/traces", self.base_url())
    }

    /// The endpoint's base URL, without a path.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Every span in accepted requests, in arrival order.
    pub fn accepted_spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.spans)
            .collect()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Connections opened by the client, and those it closed again.
    pub fn connections(&self) -> (usize, usize) {
        (
            self.state.opened.load(Ordering::Acquire),
            self.state.closed.load(Ordering::Acquire),
        )
    }

    /// The distinct names of the spans in accepted requests.
    pub fn accepted_names(&self) -> std::collections::BTreeSet<String> {
        self.requests()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.names.iter().cloned())
            .collect()
    }

    /// The string attribute `key` of every accepted span named `name`.
    pub fn string_attributes(&self, name: &str, key: &str) -> Vec<Option<String>> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        self.requests()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.spans.clone())
            .filter(|s| s.name == name)
            .map(|s| {
                s.attributes
                    .iter()
                    .find(|kv| kv.key == key)
                    .and_then(|kv| kv.value.as_ref()?.value.as_ref().cloned())
                    .and_then(|v| match v {
                        Value::StringValue(text) => Some(text),
                        _ => None,
                    })
            })
            .collect()
    }

    /// Every accepted span, decoded.
    pub fn spans(&self) -> Vec<Span> {
        self.requests()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.spans.clone())
            .collect()
    }

    /// Every request body received so far, concatenated: every byte the exporter sent.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.requests()
            .iter()
            .flat_map(|r| r.body.clone())
            .collect()
    }

    /// Waits until `done` holds (checked whenever a request arrives or a connection opens or
    /// closes), at most `limit`; returns whether it held.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&Endpoint) -> bool) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.state.changed.notified();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return done(self);
            }
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    decide: Arc<Decide>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        state.opened.fetch_add(1, Ordering::AcqRel);
        state.changed.notify_waiters();
        let (state, decide) = (state.clone(), decide.clone());
        match tls.clone() {
            None => {
                connections.spawn(connection(stream, state, decide));
            }
            Some(acceptor) => {
                connections.spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(stream) => connection(stream, state, decide).await,
                        // A client that does not trust the certificate ends the handshake.
                        Err(_) => finish(&state),
                    }
                });
            }
        }
    }
}

/// Serves one keep-alive connection until the client closes it.
async fn connection<S>(mut stream: S, state: Arc<State>, decide: Arc<Decide>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut answering = true;
    loop {
        let Some(head_end) = read_until_head(&mut stream, &mut buf).await else {
            break;
        };
        let head_text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head_text.lines();
        let request_line = lines.next().unwrap_or_default().to_owned();
        assert!(request_line.starts_with("POST /"), "{request_line}");
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let json = header("content-type").is_some_and(|t| t.starts_with("application/json"));
        let gzip = header("content-encoding") == Some("gzip");
        while buf.len() < head_end + len {
            let mut chunk = vec![0u8; 64 * 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    finish(&state);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request = decode(&buf[head_end..head_end + len], json, gzip);
        let decoded = request.is_some();
        let spans: Vec<Span> = request
            .map(|req| {
                req.resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans)
                    .collect()
            })
            .unwrap_or_default();
        let mut received = Received {
            at: Instant::now(),
            len,
            body: buf[head_end..head_end + len].to_vec(),
            path,
            headers,
            decoded,
            names: spans.iter().map(|s| s.name.clone()).collect(),
            spans,
            status: None,
        };
        buf.drain(..head_end + len);
        let answer = {
            let requests = state.requests.lock().unwrap();
            decide(requests.len(), &received)
        };
        let reply = match (&answer, answering) {
            (Answer::Status(code, headers), true) => {
                received.status = Some(*code);
                let mut reply = format!(
                    "HTTP/1.1 {code} {}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n",
                    reason(*code)
                );
                for (k, v) in headers {
                    reply.push_str(&format!("{k}: {v}\r\n"));
                }
                reply.push_str("\r\n");
                Some(reply)
            }
            _ => {
                // Unanswered: later requests on this connection (there should be none) are
                // read and left unanswered too.
                answering = false;
                None
            }
        };
        state.requests.lock().unwrap().push(received);
        state.changed.notify_waiters();
        if let Some(reply) = reply
            && stream.write_all(reply.as_bytes()).await.is_err()
        {
            break;
        }
    }
    finish(&state);
}

/// A decoded attribute value as JSON: strings, numbers and booleans as themselves, a string
/// array as an array.
pub fn json_value(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> serde_json::Value {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => s.clone().into(),
        Some(Value::IntValue(i)) => (*i).into(),
        Some(Value::DoubleValue(f)) => (*f).into(),
        Some(Value::BoolValue(b)) => (*b).into(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(json_value).collect(),
        other => format!("{other:?}").into(),
    }
}

/// A span's attributes as a JSON object (key → value).
pub fn attributes(span: &Span) -> serde_json::Map<String, serde_json::Value> {
    span.attributes
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), json_value(kv.value.as_ref()?))))
        .collect()
}

/// An OTLP request body, gunzipped if need be, as protobuf or JSON.
fn decode(body: &[u8], json: bool, gzip: bool) -> Option<ExportTraceServiceRequest> {
    let plain;
    let body = if gzip {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).ok()?;
        plain = out;
        &plain[..]
    } else {
        body
    };
    if json {
        serde_json::from_slice(body).ok()
    } else {
        ExportTraceServiceRequest::decode(body).ok()
    }
}

fn finish(state: &State) {
    state.closed.fetch_add(1, Ordering::AcqRel);
    state.changed.notify_waiters();
}

/// Reads until `buf` holds a whole request head; returns where the body starts, or `None`
/// once the client closed the connection.
async fn read_until_head<S>(stream: &mut S, buf: &mut Vec<u8>) -> Option<usize>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(p + 4);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
