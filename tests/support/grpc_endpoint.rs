//! A loopback OTLP/gRPC endpoint for the exporter's tests: a tonic `TraceService` server (from
//! opentelemetry-proto's generated code) that keeps every request it receives, decoded, with
//! its metadata, and answers what the test decides per request: `OK`, or a status with a
//! message and, if given, a `RetryInfo` delay. It serves plain TCP or, with the features
//! `otlp-grpc` and `otlp-tls` (which give tonic its rustls), TLS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// What the endpoint answers to one request.
#[derive(Debug, Clone)]
pub enum GrpcAnswer {
    /// `OK`.
    Ok,
    /// This status and message, with a `RetryInfo` delay when given.
    Status(Code, &'static str, Option<Duration>),
}

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct GrpcReceived {
    /// When it arrived.
    pub at: Instant,
    /// The names of the spans in it.
    pub names: Vec<String>,
    /// The spans in it.
    pub spans: Vec<Span>,
    /// Its ASCII metadata (gRPC's headers), keys in lowercase.
    pub metadata: Vec<(String, String)>,
    /// The status code it was answered (`Code::Ok` when accepted).
    pub code: Code,
}

impl GrpcReceived {
    /// Whether the endpoint accepted it.
    pub fn accepted(&self) -> bool {
        self.code == Code::Ok
    }

    /// The value of metadata `key`, if sent.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Decide = dyn Fn(usize, &GrpcReceived) -> GrpcAnswer + Send + Sync;

#[derive(Default)]
struct State {
    requests: Mutex<Vec<GrpcReceived>>,
    changed: Notify,
}

struct Collector {
    state: Arc<State>,
    decide: Arc<Decide>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let spans: Vec<Span> = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect();
        let mut received = GrpcReceived {
            at: Instant::now(),
            names: spans.iter().map(|s| s.name.clone()).collect(),
            spans,
            metadata,
            code: Code::Ok,
        };
        let answer = {
            let requests = self.state.requests.lock().unwrap();
            (self.decide)(requests.len(), &received)
        };
        let result = match answer {
            GrpcAnswer::Ok => Ok(Response::new(ExportTraceServiceResponse {
                partial_success: None,
            })),
            GrpcAnswer::Status(code, message, retry) => {
                received.code = code;
                Err(match retry {
                    None => Status::new(code, message),
                    Some(delay) => {
                        use tonic_types::{ErrorDetails, StatusExt};
                        Status::with_error_details(
                            code,
                            message,
                            ErrorDetails::with_retry_info(Some(delay)),
                        )
                    }
                })
            }
        };
        self.state.requests.lock().unwrap().push(received);
        self.state.changed.notify_waiters();
        result
    }
}

/// A running endpoint; it stops when dropped.
pub struct GrpcEndpoint {
    port: u16,
    tls: bool,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl GrpcEndpoint {
    /// Starts an endpoint on a free loopback port; `decide` gets each request's index (from 0)
    /// and the request, and says what to answer.
    pub async fn start(
        decide: impl Fn(usize, &GrpcReceived) -> GrpcAnswer + Send + Sync + 'static,
    ) -> GrpcEndpoint {
        Self::start_with(Server::builder(), false, decide).await
    }

    /// As [`start`](Self::start), over TLS with this certificate and key (PEM).
    #[cfg(all(feature = "otlp-grpc", feature = "otlp-tls"))]
    pub async fn start_tls(
        cert_pem: &str,
        key_pem: &str,
        decide: impl Fn(usize, &GrpcReceived) -> GrpcAnswer + Send + Sync + 'static,
    ) -> GrpcEndpoint {
        use tonic::transport::{Identity, ServerTlsConfig};
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
        let server = Server::builder().tls_config(tls).unwrap();
        Self::start_with(server, true, decide).await
    }

    async fn start_with(
        mut server: Server,
        tls: bool,
        decide: impl Fn(usize, &GrpcReceived) -> GrpcAnswer + Send + Sync + 'static,
    ) -> GrpcEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let service = TraceServiceServer::new(Collector {
            state: state.clone(),
            decide: Arc::new(decide),
        })
        .accept_compressed(CompressionEncoding::Gzip);
        let router = server.add_service(service);
        let server = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
        });
        GrpcEndpoint {
            port,
            tls,
            state,
            server,
        }
    }

    /// The URL to give the exporter (gRPC endpoints have no path).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<GrpcReceived> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every span in accepted requests, in arrival order.
    pub fn accepted_spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .filter(GrpcReceived::accepted)
            .flat_map(|r| r.spans)
            .collect()
    }

    /// Waits until `done` holds (checked whenever a request arrives), at most `limit`; returns
    /// whether it held.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&GrpcEndpoint) -> bool) -> bool {
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

impl Drop for GrpcEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}
