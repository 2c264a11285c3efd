//! The exporter's HTTP client: the hyper client `opentelemetry-otlp` would use by itself (with
//! rustls for `https://` endpoints, feature `otlp-tls`), wrapped to note each response's status
//! and `Retry-After` for the export task (the OTLP client turns a non-2xx answer into an error
//! text), to send nothing once the exporter is closed, and to send exactly the headers and
//! compression the exporter resolved (opentelemetry-otlp also reads `OTEL_EXPORTER_OTLP_HEADERS`
//! and `…_COMPRESSION` from the process environment, which the builder's settings must win
//! over).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use crate::error::OtlpError;

#[cfg(feature = "otlp-gzip")]
use super::config::Compression;
use super::config::OtlpConfig;
use super::shared::{Sent, Shared};

/// The longest `Retry-After` honoured; a longer one (or an HTTP date far ahead, as a skewed
/// clock gives) waits this long.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The hyper client, noting each exchange in the exporter's [`Shared`] state.
#[derive(Debug)]
pub(super) struct RecordingClient {
    inner: Inner,
    shared: Arc<Shared>,
    /// Every header sent besides the body's own (`content-type`, `content-encoding`) and
    /// opentelemetry-otlp's `user-agent` (unless the settings give one).
    headers: HeaderMap,
    /// Whether bodies go uncompressed, even when opentelemetry-otlp compressed them because
    /// of a variable in the process environment.
    #[cfg(feature = "otlp-gzip")]
    uncompressed: bool,
}

#[derive(Debug)]
enum Inner {
    Plain(HyperClient),
    #[cfg(feature = "otlp-tls")]
    Tls(HyperClient<super::tls::HttpsConnector>),
}

impl RecordingClient {
    /// A client for `config`'s endpoint, headers and timeout.
    pub(super) fn new(config: &OtlpConfig, shared: Arc<Shared>) -> Result<Self, OtlpError> {
        #[cfg(feature = "otlp-tls")]
        let inner = if config.uses_tls() {
            Inner::Tls(HyperClient::new(
                super::tls::https_connector(&config.tls_ca_pem)?,
                config.timeout,
                None,
            ))
        } else {
            Inner::Plain(HyperClient::with_default_connector(config.timeout, None))
        };
        #[cfg(not(feature = "otlp-tls"))]
        let inner = Inner::Plain(HyperClient::with_default_connector(config.timeout, None));
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            // `resolve` checked both.
            let name =
                header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| OtlpError::Header {
                    name: k.clone(),
                    why: "not a valid header name".into(),
                })?;
            let value = HeaderValue::from_str(v).map_err(|_| OtlpError::Header {
                name: k.clone(),
                why: "the value holds characters a header cannot carry".into(),
            })?;
            headers.insert(name, value);
        }
        Ok(RecordingClient {
            inner,
            shared,
            headers,
            #[cfg(feature = "otlp-gzip")]
            uncompressed: config.compression == Compression::None,
        })
    }

    /// The request with exactly the exporter's headers (and body encoding).
    fn prepare(&self, request: Request<Bytes>) -> Result<Request<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let mut headers = self.headers.clone();
        for name in [header::CONTENT_TYPE, header::USER_AGENT] {
            if let Some(v) = parts.headers.remove(&name) {
                headers.entry(name).or_insert(v);
            }
        }
        let encoding = parts.headers.remove(header::CONTENT_ENCODING);
        #[cfg(feature = "otlp-gzip")]
        if self.uncompressed && encoding.as_ref().is_some_and(|e| e == "gzip") {
            use std::io::Read;
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
            parts.headers = headers;
            return Ok(Request::from_parts(parts, Bytes::from(plain)));
        }
        if let Some(v) = encoding {
            headers.insert(header::CONTENT_ENCODING, v);
        }
        parts.headers = headers;
        Ok(Request::from_parts(parts, body))
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err("the OTLP exporter is closed: the request was not sent".into());
        }
        let request = self.prepare(request)?;
        *self.shared.sent.lock() = Some(Sent::Unanswered);
        let response = match &self.inner {
            Inner::Plain(client) => client.send_bytes(request).await,
            #[cfg(feature = "otlp-tls")]
            Inner::Tls(client) => client.send_bytes(request).await,
        };
        let response = response.inspect_err(|e| {
            *self.shared.unanswered_because.lock() = Some(error_chain(&**e));
        })?;
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        *self.shared.sent.lock() = Some(Sent::Answered {
            status: response.status(),
            retry_after,
        });
        Ok(response)
    }
}

// `HttpClient` is declared with `async_trait`; this is the signature it expands to.
impl HttpClient for RecordingClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.send(request))
    }
}

/// An error and its sources, joined by `: ` (hyper's own text is only "client error
/// (Connect)"; the cause is in its sources).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// The wait a `Retry-After` value asks for: delta-seconds, or an HTTP date (a date already
/// past asks for no wait), at most [`MAX_RETRY_AFTER`]. `None` for anything else.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: too many for a u64 is still a (very) long wait.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        // 1_445_412_480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("7200", now), Some(MAX_RETRY_AFTER));
        for bad in ["", "-1", "1.5", "soon"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
