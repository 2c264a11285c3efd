//! W3C Trace Context: carrying the current span across processes in `traceparent` and
//! `tracestate` headers.
//!
//! # Continuing a trace in another process
//!
//! The caller [`inject`]s its current [`Context`] into the outgoing request's headers; the
//! callee [`extract`]s a [`Context`] from the incoming headers and runs its work under it
//! ([`Context::attach`] or [`Context::in_scope`]). Spans the callee starts there are children
//! of the caller's span, in the caller's trace, so an OpenTelemetry backend shows one tree.
//!
//! Headers are read and written through two small traits, [`Extractor`] and [`Injector`],
//! implemented for `HashMap<String, String>`, `BTreeMap<String, String>`,
//! `Vec<(String, String)>` and, with the `otlp` feature, `http::HeaderMap`. Header names are
//! matched without regard to case.
//!
//! A malformed `traceparent` gives a typed [`TraceParentError`]; nothing here panics, whatever
//! the input. A malformed `tracestate` is ignored (the W3C rule: the `traceparent` is still
//! used). The received `tracestate` and trace flags travel in the context's
//! [extras](Context::extras) (keys [`TRACESTATE`] and [`TRACEFLAGS`]), so they are passed on
//! by the next [`inject`] in the same process.
//!
//! # Examples
//!
//! ```
//! use std::collections::HashMap;
//! use spanbus::propagation::{extract, inject};
//! use spanbus::{SpanFutureExt, current_span};
//! use spanbus::context::Context;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let d = spanbus::Dispatcher::new("svc")?;
//! d.add_span_handler(spanbus::handlers::NullSpanHandler)?; // a listener makes spans live (`Span::is_idle`)
//!
//! // Process A, inside the span that makes the call:
//! let (caller, headers) = async {
//!     let mut headers = HashMap::new();
//!     inject(&Context::current(), &mut headers);
//!     (current_span().unwrap(), headers)
//! }
//! .in_span(d.span("call_b"))
//! .await;
//! assert!(headers["traceparent"].starts_with("00-"));
//!
//! // Process B, handling the request:
//! let ctx = extract(&headers)?;
//! let handled = ctx.attach(async { current_span() }.in_span(d.span("handle"))).await;
//! let handled = handled.unwrap();
//! assert_eq!(handled.trace_id(), caller.trace_id()); // one trace across both processes
//!
//! // Malformed input is an error, not a panic:
//! let bad = HashMap::from([("traceparent".to_string(), "00-xyz".to_string())]);
//! assert!(extract(&bad).is_err());
//! # Ok(())
//! # }
//! ```

mod traceparent;
mod tracestate;

use std::collections::{BTreeMap, HashMap};

pub use traceparent::{TRACEPARENT_LEN, TraceParent, TraceParentError};
pub use tracestate::{
    MAX_KEY_LEN, MAX_MEMBERS, MAX_VALUE_LEN, TraceState, TraceStateError, is_valid_key,
    is_valid_value,
};

use crate::context::Context;

/// The `traceparent` header name.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The `tracestate` header name.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// The [extras](Context::extras) key under which an extracted `tracestate` travels.
pub const TRACESTATE: &str = "tracestate";

/// The [extras](Context::extras) key under which extracted trace flags travel (two lowercase
/// hex digits).
pub const TRACEFLAGS: &str = "traceflags";

/// The longest `tracestate` value [`inject`] sends (the W3C recommendation is to propagate at
/// least 512 bytes).
const MAX_TRACESTATE_LEN: usize = 512;

/// Read access to request headers.
pub trait Extractor {
    /// The values of header `name` (matched without regard to case), in order.
    fn get_all(&self, name: &str) -> Vec<&str>;

    /// The first value of header `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).into_iter().next()
    }
}

/// Write access to request headers.
pub trait Injector {
    /// Sets header `name` to `value`, replacing a previous value.
    fn set(&mut self, name: &str, value: String);
}

fn matching<'a, I>(entries: I, name: &str) -> Vec<&'a str>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    entries
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

impl<S: std::hash::BuildHasher> Extractor for HashMap<String, String, S> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        match HashMap::get(self, name) {
            Some(v) => vec![v.as_str()],
            None => matching(self.iter(), name),
        }
    }
}

impl<S: std::hash::BuildHasher> Injector for HashMap<String, String, S> {
    fn set(&mut self, name: &str, value: String) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.insert(name.to_owned(), value);
    }
}

impl Extractor for BTreeMap<String, String> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        matching(self.iter(), name)
    }
}

impl Injector for BTreeMap<String, String> {
    fn set(&mut self, name: &str, value: String) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.insert(name.to_owned(), value);
    }
}

impl Extractor for Vec<(String, String)> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        matching(self.iter().map(|(k, v)| (k, v)), name)
    }
}

impl Injector for Vec<(String, String)> {
    fn set(&mut self, name: &str, value: String) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.push((name.to_owned(), value));
    }
}

#[cfg(feature = "otlp")]
impl Extractor for http::HeaderMap {
    fn get_all(&self, name: &str) -> Vec<&str> {
        http::HeaderMap::get_all(self, name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

#[cfg(feature = "otlp")]
impl Injector for http::HeaderMap {
    fn set(&mut self, name: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(name.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.insert(name, value);
        }
    }
}

/// Writes `ctx`'s span as `traceparent` (and its carried `tracestate`, if any) into `headers`.
///
/// A context without a span writes nothing. The flags are those received by [`extract`] (only
/// the bits W3C defines), or `01` (sampled) for a trace started here.
///
/// # Examples
///
/// See [the module documentation](self).
pub fn inject(ctx: &Context, headers: &mut impl Injector) {
    let Some(span) = ctx.span() else {
        return;
    };
    let flags = ctx
        .extras()
        .get(TRACEFLAGS)
        .and_then(|f| u8::from_str_radix(f, 16).ok())
        .unwrap_or(TraceParent::FLAG_SAMPLED);
    let tp = TraceParent::from_span_context(span, flags).with_known_flags_only();
    headers.set(TRACEPARENT_HEADER, tp.to_string());
    if let Some(state) = ctx.extras().get(TRACESTATE)
        && let Ok(mut state) = TraceState::parse(state)
        && !state.is_empty()
    {
        state.truncate_to(MAX_TRACESTATE_LEN);
        headers.set(TRACESTATE_HEADER, state.to_string());
    }
}

/// Reads `traceparent` and `tracestate` from `headers` into a [`Context`] whose span is the
/// caller's span, so spans started under it continue the caller's trace.
///
/// The context has no tags. A valid `tracestate` and the trace flags are kept in its
/// [extras](Context::extras) under [`TRACESTATE`] and [`TRACEFLAGS`].
///
/// # Errors
///
/// [`TraceParentError::Missing`] when there is no `traceparent` header, and the other
/// [`TraceParentError`] variants when it is malformed (of several `traceparent` headers, the
/// first is read). Use `extract(&h).unwrap_or_default()` to start a new trace instead.
///
/// # Examples
///
/// See [the module documentation](self).
pub fn extract(headers: &impl Extractor) -> Result<Context, TraceParentError> {
    let value = headers
        .get(TRACEPARENT_HEADER)
        .ok_or(TraceParentError::Missing)?;
    let tp = TraceParent::parse(value.trim_matches([' ', '\t']))?;
    let span = tp.span_context().ok_or(TraceParentError::ZeroTraceId)?;
    let mut ctx = Context::empty()
        .with_span(Some(span))
        .with_extra(TRACEFLAGS, format!("{:02x}", tp.flags));
    let fields = headers.get_all(TRACESTATE_HEADER);
    if !fields.is_empty()
        && let Ok(state) = TraceState::parse_fields(fields)
        && !state.is_empty()
    {
        ctx = ctx.with_extra(TRACESTATE, state.to_string());
    }
    Ok(ctx)
}
