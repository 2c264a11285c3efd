//! The exporter's transports behind one interface for the export task: OTLP/HTTP (protobuf or
//! JSON) through opentelemetry-otlp's HTTP exporter and [`RecordingClient`], and OTLP/gRPC
//! (feature `otlp-grpc`).

use std::sync::Arc;

use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

use crate::error::OtlpError;

use super::client::RecordingClient;
use super::config::{Compression, OtlpConfig, Protocol};
use super::shared::Shared;

/// Sends batches over the configured protocol. After a failed export, `Shared::sent` tells
/// what the endpoint answered.
#[derive(Debug)]
pub(super) enum Transport {
    Http(opentelemetry_otlp::SpanExporter),
    #[cfg(feature = "otlp-grpc")]
    Grpc(super::grpc::GrpcExporter),
}

impl Transport {
    /// The transport for `config` (resolved: its protocol's feature is on).
    pub(super) fn new(
        config: &OtlpConfig,
        resource: &Resource,
        shared: Arc<Shared>,
    ) -> Result<Self, OtlpError> {
        let protocol = match config.protocol {
            Protocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
            #[cfg(feature = "otlp-json")]
            Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
            #[cfg(feature = "otlp-grpc")]
            Protocol::Grpc => {
                return Ok(Transport::Grpc(super::grpc::GrpcExporter::new(
                    config, resource, shared,
                )?));
            }
            #[allow(unreachable_patterns)] // every protocol has its feature on
            other => {
                let (needs, feature, _) = other.feature();
                return Err(OtlpError::FeatureDisabled { needs, feature });
            }
        };
        let builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.timeout)
            // The client it would make by itself (with rustls for https://), noting each
            // answer's status and `Retry-After` for the export task, and sending the resolved
            // headers.
            .with_http_client(RecordingClient::new(config, shared)?)
            // spanbus retries itself, with its own backoff and counters.
            .with_retry_policy(RetryPolicy::disabled());
        let builder = match config.compression {
            Compression::None => builder,
            #[cfg(feature = "otlp-gzip")]
            Compression::Gzip => builder.with_compression(opentelemetry_otlp::Compression::Gzip),
            #[allow(unreachable_patterns)] // `resolve` refuses gzip without its feature
            _ => {
                return Err(OtlpError::FeatureDisabled {
                    needs: "gzip compression",
                    feature: "otlp-gzip",
                });
            }
        };
        let mut exporter = builder
            .build()
            .map_err(|e| OtlpError::Build(e.to_string()))?;
        exporter.set_resource(resource);
        Ok(Transport::Http(exporter))
    }

    /// Sends one batch.
    pub(super) async fn export(&self, batch: Vec<SpanData>) -> Result<(), String> {
        match self {
            Transport::Http(exporter) => exporter.export(batch).await.map_err(|e| e.to_string()),
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc(exporter) => exporter.export(batch).await,
        }
    }

    /// Releases the client (nothing is sent after).
    pub(super) fn shutdown(&self) {
        match self {
            Transport::Http(exporter) => {
                let _ = exporter.shutdown();
            }
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc(_) => {}
        }
    }
}
