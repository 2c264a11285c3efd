//! A closed span as OpenTelemetry span data, with its attributes.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{
    Event as OtelEvent, SpanContext as OtelSpanContext, SpanId as OtelSpanId, SpanKind, Status,
    TraceFlags, TraceId as OtelTraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value as OtelValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use serde_json::Value;

use crate::context::{SpanContext, Tags};
use crate::id::SpanId;
use crate::integrations::openinference::{OpenInference, SPAN_KIND};
use crate::record::DropReason;

/// One span the exporter has seen enter and not yet end.
pub(super) struct OpenSpan {
    pub(super) span: SpanContext,
    pub(super) parent: Option<SpanId>,
    pub(super) name: Cow<'static, str>,
    pub(super) start: SystemTime,
    pub(super) args: Option<Value>,
    pub(super) tags: Tags,
    pub(super) dispatcher: String,
    pub(super) events: Vec<OtelEvent>,
    pub(super) dropped_events: u32,
    pub(super) max_events: usize,
    pub(super) semantics: OpenInference,
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

pub(super) fn attribute(key: &str, v: &Value) -> KeyValue {
    KeyValue::new(key.to_owned(), attribute_value(v))
}

/// Builds the OTel span of a closed spanbus span.
pub(super) fn to_span_data(
    open: OpenSpan,
    end: SystemTime,
    outcome: Result<(), (DropReason, &str)>,
    result: Option<&Value>,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attributes: Vec<KeyValue> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |attrs: &mut Vec<KeyValue>, key: String, value: OtelValue| {
        if seen.insert(key.clone()) {
            attrs.push(KeyValue::new(key, value));
        }
    };
    let kind = open
        .tags
        .get(SPAN_KIND)
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| open.semantics.kind().to_owned());
    push(&mut attributes, SPAN_KIND.into(), kind.into());
    for (k, v) in open.semantics.attributes() {
        push(&mut attributes, k, attribute_value(&v));
    }
    match &open.args {
        Some(Value::Object(args)) => {
            for (k, v) in args {
                push(
                    &mut attributes,
                    format!("spanbus.args.{k}"),
                    attribute_value(v),
                );
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => push(
            &mut attributes,
            "spanbus.args".into(),
            attribute_value(other),
        ),
    }
    if !open.semantics.has_input()
        && let Some(args) = open.args.as_ref().filter(|a| !a.is_null())
    {
        push(
            &mut attributes,
            "input.value".into(),
            args.to_string().into(),
        );
        push(
            &mut attributes,
            "input.mime_type".into(),
            "application/json".into(),
        );
    }
    // The value `#[span(ret)]` recorded, unless the span's events gave an output.
    let has_output = attributes
        .iter()
        .any(|kv| kv.key.as_str() == "output.value");
    if !has_output && let Some(result) = result.filter(|r| !r.is_null()) {
        let (text, mime) = match result {
            Value::String(s) => (s.clone(), "text/plain"),
            other => (other.to_string(), "application/json"),
        };
        push(&mut attributes, "output.value".into(), text.into());
        push(&mut attributes, "output.mime_type".into(), mime.into());
    }
    for (k, v) in &open.tags {
        push(&mut attributes, k.clone(), attribute_value(v));
    }
    push(
        &mut attributes,
        "spanbus.dispatcher".into(),
        open.dispatcher.into(),
    );
    let mut events = open.events;
    let status = match outcome {
        Ok(()) => Status::Ok,
        Err((reason, message)) => {
            push(
                &mut attributes,
                "spanbus.drop_reason".into(),
                reason.to_string().into(),
            );
            let text = if message.is_empty() {
                format!("span {reason}")
            } else {
                message.to_owned()
            };
            events.push(OtelEvent::new(
                "exception",
                end,
                vec![
                    KeyValue::new("exception.type", reason.to_string()),
                    KeyValue::new("exception.message", text.clone()),
                ],
                0,
            ));
            Status::error(text)
        }
    };
    let mut span_events = SpanEvents::default();
    span_events.events = events;
    span_events.dropped_count = open.dropped_events;
    SpanData {
        span_context: OtelSpanContext::new(
            OtelTraceId::from(open.span.trace_id().to_u128()),
            OtelSpanId::from(open.span.span_id().to_u64()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: open
            .parent
            .map_or(OtelSpanId::INVALID, |p| OtelSpanId::from(p.to_u64())),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: open.name,
        start_time: open.start,
        end_time: end.max(open.start),
        attributes,
        dropped_attributes_count: 0,
        events: span_events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_become_scalar_or_json_text_attributes() {
        assert_eq!(attribute_value(&serde_json::json!(3)), OtelValue::I64(3));
        assert_eq!(
            attribute_value(&serde_json::json!(0.5)),
            OtelValue::F64(0.5)
        );
        assert_eq!(
            attribute_value(&serde_json::json!(true)),
            OtelValue::Bool(true)
        );
        assert_eq!(
            attribute_value(&serde_json::json!("a\0b")),
            "a\u{fffd}b".into()
        );
        assert_eq!(
            attribute_value(&serde_json::json!({"k": [1, 2]})),
            r#"{"k":[1,2]}"#.into()
        );
    }
}
