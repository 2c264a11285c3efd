//! OTLP over gRPC (feature `otlp-grpc`): the `TraceService/Export` call of opentelemetry-proto's
//! generated tonic client, noting each answer's status for the export task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

use crate::error::OtlpError;

use super::client::{MAX_RETRY_AFTER, error_chain};
#[cfg(feature = "otlp-gzip")]
use super::config::Compression;
use super::config::OtlpConfig;
use super::shared::Sent;
use super::shared::Shared;

/// The largest request sent, as for OTLP/HTTP (opentelemetry-otlp's limit): a batch whose
/// encoding is larger is split, and a single span that large is dropped as too large.
pub(super) const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The gRPC exporter: one lazily connected channel, reconnected by tonic after failures.
pub(super) struct GrpcExporter {
    client: TraceServiceClient<Channel>,
    metadata: MetadataMap,
    resource: ResourceAttributesWithSchema,
    timeout: Duration,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GrpcExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcExporter").finish_non_exhaustive()
    }
}

impl GrpcExporter {
    /// The exporter for `config` (its protocol is gRPC). Connects on the first export, so it
    /// needs a tokio runtime but no server.
    pub(super) fn new(
        config: &OtlpConfig,
        resource: &Resource,
        shared: Arc<Shared>,
    ) -> Result<Self, OtlpError> {
        let bad_endpoint = |why: String| OtlpError::Endpoint {
            endpoint: config.endpoint.clone(),
            why,
        };
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| bad_endpoint(e.to_string()))?
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        #[cfg(feature = "otlp-tls")]
        let endpoint = if config.uses_tls() {
            endpoint
                .tls_config(super::tls::tonic_tls(&config.tls_ca_pem)?)
                .map_err(|e| OtlpError::Tls(error_chain(&e)))?
        } else {
            endpoint
        };
        let client = TraceServiceClient::new(endpoint.connect_lazy())
            .max_encoding_message_size(MAX_REQUEST_BYTES);
        // `resolve` refuses gzip without the feature.
        #[cfg(feature = "otlp-gzip")]
        let client = if config.compression == Compression::Gzip {
            client.send_compressed(tonic::codec::CompressionEncoding::Gzip)
        } else {
            client
        };
        let mut headers = http::HeaderMap::new();
        for (k, v) in &config.headers {
            let header = |why: &str| OtlpError::Header {
                name: k.clone(),
                why: why.to_owned(),
            };
            if k.ends_with("-bin") {
                return Err(header(
                    "gRPC binary metadata (a key ending in -bin) is not supported",
                ));
            }
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| header("not a valid gRPC metadata key"))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| header("the value holds characters metadata cannot carry"))?;
            headers.insert(name, value);
        }
        Ok(GrpcExporter {
            client,
            metadata: MetadataMap::from_headers(headers),
            resource: resource.into(),
            timeout: config.timeout,
            shared,
        })
    }

    /// Sends one batch; on failure, what the server answered is in `shared.sent` (nothing
    /// when the request was not sent at all: too large, or the exporter closed).
    pub(super) async fn export(&self, batch: Vec<SpanData>) -> Result<(), String> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err("the OTLP exporter is closed: the request was not sent".into());
        }
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        let len = request.encoded_len();
        if len > MAX_REQUEST_BYTES {
            return Err(format!(
                "the gRPC request is {len} bytes, over the {MAX_REQUEST_BYTES}-byte limit: it was not sent"
            ));
        }
        let mut request = tonic::Request::new(request);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        *self.shared.sent.lock() = Some(Sent::Unanswered);
        match self.client.clone().export(request).await {
            Ok(_) => Ok(()),
            Err(status) => {
                // A status with a source error is tonic's account of a transport failure (no
                // connection, a timeout, a broken stream): no answer from the server.
                if std::error::Error::source(&status).is_none() {
                    let code = status.code() as i32;
                    *self.shared.sent.lock() = Some(Sent::Grpc {
                        code,
                        retry_after: status
                            .get_details_retry_info()
                            .and_then(|info| info.retry_delay)
                            .map(|d| d.min(MAX_RETRY_AFTER)),
                        too_large: too_large(code, status.message()),
                    });
                }
                let detail = match std::error::Error::source(&status) {
                    // tonic's message repeats part of its source's text.
                    Some(source) => {
                        let chain = error_chain(source);
                        if chain.contains(status.message()) {
                            chain
                        } else {
                            format!("{}: {chain}", status.message())
                        }
                    }
                    None => status.message().to_owned(),
                };
                Err(format!(
                    "gRPC export failed with status {}: {detail}",
                    code_name(status.code() as i32)
                ))
            }
        }
    }
}

/// Whether a status says the request was too large: `RESOURCE_EXHAUSTED` or `OUT_OF_RANGE`
/// with the message gRPC servers give for a message over their size limit (grpc-go and gRPC
/// core: "received message larger than max", tonic: "message length too large").
pub(super) fn too_large(code: i32, message: &str) -> bool {
    const RESOURCE_EXHAUSTED: i32 = 8;
    const OUT_OF_RANGE: i32 = 11;
    if code != RESOURCE_EXHAUSTED && code != OUT_OF_RANGE {
        return false;
    }
    let message = message.to_ascii_lowercase();
    message.contains("larger than max") || message.contains("too large")
}

/// The canonical name of a gRPC status code, with its number.
pub(super) fn code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let name = usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("an unknown code");
    format!("{name} ({code})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_answers_are_told_from_other_exhaustion() {
        assert!(too_large(
            8,
            "grpc: received message larger than max (5242880 vs. 4194304)"
        ));
        assert!(too_large(
            11,
            "Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes"
        ));
        assert!(!too_large(8, "quota exceeded"));
        assert!(!too_large(3, "message larger than max"));
        assert_eq!(code_name(14), "UNAVAILABLE (14)");
        assert_eq!(code_name(99), "an unknown code (99)");
    }
}
