//! The exporter's HTTP client: the hyper client `opentelemetry-otlp` would use by itself,
//! wrapped to note each response's status and `Retry-After` for the export task (the OTLP
//! client turns a non-2xx answer into an error text), and to send nothing once the exporter is
//! closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use super::export_task::Shared;

/// The longest `Retry-After` honoured; a longer one (or an HTTP date far ahead, as a skewed
/// clock gives) waits this long.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What became of the last request the client was asked to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// It went out and got no answer (the connection failed, or the request timed out).
    Unanswered,
    /// The endpoint answered.
    Answered {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
}

/// The hyper client, noting each exchange in the exporter's [`Shared`] state.
#[derive(Debug)]
pub(super) struct RecordingClient {
    inner: HyperClient,
    shared: Arc<Shared>,
}

impl RecordingClient {
    /// A client whose requests time out after `timeout`.
    pub(super) fn new(timeout: Duration, shared: Arc<Shared>) -> Self {
        RecordingClient {
            inner: HyperClient::with_default_connector(timeout, None),
            shared,
        }
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err("the OTLP exporter is closed: the request was not sent".into());
        }
        *self.shared.sent.lock() = Some(Sent::Unanswered);
        let response = self.inner.send_bytes(request).await?;
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
