//! What an exported span says and what of it leaves the process: the conventions, and the
//! content policy (capture, redaction, size limit).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use opentelemetry::{KeyValue, Value as OtelValue};
use serde_json::{Map, Value};

use super::OtlpExporterBuilder;
use crate::integrations::genai::{SemconvVersion, is_content};

/// The environment variable that turns content capture on (`true`), as the OpenTelemetry GenAI
/// instrumentations read it. See [`capture_content_from`] for the values.
pub const CAPTURE_CONTENT_ENV: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// The default [size limit](OtlpExporterBuilder::max_attribute_bytes) of one attribute value:
/// 64 KiB.
pub const DEFAULT_MAX_ATTRIBUTE_BYTES: usize = 64 * 1024;

/// Which semantic conventions the exported spans follow. Default [`Both`](Self::Both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Conventions {
    /// The OpenTelemetry GenAI attributes and the OpenInference ones: every backend reads its
    /// own. GenAI spans are named `{operation} {model}` with kind CLIENT or INTERNAL (see
    /// [`genai`](crate::integrations::genai)).
    #[default]
    Both,
    /// Only the GenAI attributes (`gen_ai.*`), names and kinds.
    GenAi,
    /// Only the OpenInference attributes; spans keep their spanbus names and kind INTERNAL.
    OpenInference,
}

impl Conventions {
    /// Whether the GenAI attributes, names and kinds are written.
    pub fn genai(self) -> bool {
        matches!(self, Conventions::Both | Conventions::GenAi)
    }

    /// Whether the OpenInference attributes are written.
    pub fn openinference(self) -> bool {
        matches!(self, Conventions::Both | Conventions::OpenInference)
    }
}

/// Whether a [`CAPTURE_CONTENT_ENV`] value turns content capture on: `true`, `1`, `yes`,
/// `on`, and the newer instrumentations' `SPAN_ONLY` and `SPAN_AND_EVENT` (case ignored) do;
/// anything else (`false`, `NO_CONTENT`, `EVENT_ONLY`: spanbus writes content on spans only,
/// an unset variable) does not.
///
/// # Examples
///
/// ```
/// use spanbus::integrations::otlp::capture_content_from;
///
/// assert!(capture_content_from(Some("true")));
/// assert!(capture_content_from(Some(" SPAN_ONLY ")));
/// assert!(!capture_content_from(Some("NO_CONTENT")));
/// assert!(!capture_content_from(None));
/// ```
pub fn capture_content_from(value: Option<&str>) -> bool {
    let Some(v) = value else { return false };
    let v = v.trim();
    ["true", "1", "yes", "on", "span_only", "span_and_event"]
        .iter()
        .any(|on| v.eq_ignore_ascii_case(on))
}

/// The user's redaction hook, as the builder keeps it (see
/// [`OtlpExporterBuilder::redact`]).
#[derive(Clone)]
pub(super) struct Redactor(pub(super) Arc<Redact>);

/// The signature of a redaction hook: the attribute's key and its value, the value to export
/// instead (`None` removes the attribute).
pub type Redact = dyn Fn(&str, Value) -> Option<Value> + Send + Sync;

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(..)")
    }
}

/// `text` cut to at most `max_bytes` (at a character boundary) and marked
/// `…[truncated N bytes]`, N the bytes cut; unchanged when it fits.
///
/// # Examples
///
/// ```
/// use spanbus::integrations::otlp::truncate_marked;
///
/// assert_eq!(truncate_marked("short", 10), "short");
/// assert_eq!(truncate_marked("0123456789abc", 10), "0123456789…[truncated 3 bytes]");
/// // Never inside a character: "é" is two bytes.
/// assert_eq!(truncate_marked("ééé", 3), "é…[truncated 4 bytes]");
/// ```
pub fn truncate_marked(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..end], text.len() - end)
}

/// The policy an exporter applies to every span, resolved from the builder and the
/// environment once, at build time.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub(super) conventions: Conventions,
    pub(super) semconv: SemconvVersion,
    pub(super) capture: bool,
    pub(super) redact: Option<Redactor>,
    pub(super) max_bytes: usize,
}

impl Policy {
    pub(super) fn resolve(b: &OtlpExporterBuilder) -> Policy {
        Policy {
            conventions: b.conventions,
            semconv: b.semconv.unwrap_or_else(SemconvVersion::from_env),
            capture: b.capture_content.unwrap_or_else(|| {
                capture_content_from(std::env::var(CAPTURE_CONTENT_ENV).ok().as_deref())
            }),
            redact: b.redact.clone(),
            max_bytes: b.max_attribute_bytes,
        }
    }

    /// A content value on its way out: `None` when content is not captured or the hook
    /// removes it, else the hook's value.
    pub(super) fn content(&self, key: &str, value: Value) -> Option<Value> {
        if !self.capture {
            return None;
        }
        match &self.redact {
            // A hook that panics removes the value: content never goes out unredacted, and
            // the span is still exported.
            Some(hook) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| (hook.0)(key, value))).unwrap_or(None)
            }
            None => Some(value),
        }
    }

    /// An attribute value within the size limit.
    pub(super) fn limit(&self, value: OtelValue) -> OtelValue {
        match value {
            OtelValue::String(s) if s.as_str().len() > self.max_bytes => {
                truncate_marked(s.as_str(), self.max_bytes).into()
            }
            other => other,
        }
    }

    /// A span event's fields as attributes: numbers, booleans and nulls always; every other
    /// field is content (the hook sees it as `<EventClass>.<field>`).
    pub(super) fn event_attributes(
        &self,
        class: &str,
        fields: &Map<String, Value>,
    ) -> Vec<KeyValue> {
        fields
            .iter()
            .filter_map(|(k, v)| {
                let v = if v.is_number() || v.is_boolean() || v.is_null() {
                    v.clone()
                } else {
                    self.content(&format!("{class}.{k}"), v.clone())?
                };
                Some(KeyValue::new(k.clone(), self.limit(attribute_value(&v))))
            })
            .collect()
    }

    /// Whether the attribute `key` is content (see [`is_content`]).
    pub(super) fn is_content(&self, key: &str) -> bool {
        is_content(key)
    }
}

/// A JSON value as an OTel attribute value: scalars as themselves, the rest JSON-encoded.
/// NUL characters are replaced (some backends cannot store them).
pub fn attribute_value(v: &Value) -> OtelValue {
    let clean = |s: &str| {
        if s.contains('\0') {
            s.replace('\0', "\u{fffd}")
        } else {
            s.to_owned()
        }
    };
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            (None, None) => n.to_string().into(),
        },
        Value::String(s) => clean(s).into(),
        Value::Null => "null".into(),
        other => clean(&other.to_string()).into(),
    }
}
