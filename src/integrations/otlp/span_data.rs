//! A closed span as OpenTelemetry span data, with its attributes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::SystemTime;

use opentelemetry::trace::{
    Event as OtelEvent, SpanContext as OtelSpanContext, SpanId as OtelSpanId, SpanKind, Status,
    TraceFlags, TraceId as OtelTraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value as OtelValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use serde_json::Value;

use super::policy::{Policy, attribute_value};
use crate::context::{SpanContext, Tags};
use crate::id::SpanId;
use crate::integrations::genai::GenAiSpan;
use crate::integrations::openinference::{OpenInference, SPAN_KIND};
use crate::llm::LlmSummary;
use crate::record::DropReason;

/// The attribute that keeps a span's spanbus name when the GenAI conventions rename it
/// (`chat gpt-4o-mini`).
pub const SPAN_NAME: &str = "spanbus.span.name";

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
    pub(super) llm: LlmSummary,
}

/// The attributes of one span as they are built: the first value of a key wins, content
/// passes the policy (dropped unless captured, then the redaction hook), and every value is held
/// to the size limit.
struct Attributes<'p> {
    list: Vec<KeyValue>,
    seen: HashSet<String>,
    policy: &'p Policy,
}

impl Attributes<'_> {
    /// Adds `key` unless it is already there; returns whether it was added (content the
    /// policy keeps in the process is not).
    fn put(&mut self, key: impl Into<String>, value: Value) -> bool {
        self.put_with(key, value, attribute_value)
    }

    fn put_with(
        &mut self,
        key: impl Into<String>,
        value: Value,
        to_otel: fn(&Value) -> OtelValue,
    ) -> bool {
        let key = key.into();
        if self.seen.contains(&key) {
            return false;
        }
        let value = if self.policy.is_content(&key) {
            match self.policy.content(&key, value) {
                Some(v) => v,
                None => return false,
            }
        } else {
            value
        };
        let value = self.policy.limit(to_otel(&value));
        self.seen.insert(key.clone());
        self.list.push(KeyValue::new(key, value));
        true
    }

    fn has(&self, key: &str) -> bool {
        self.seen.contains(key)
    }
}

/// A GenAI attribute's value: an array of strings as a string array (the conventions' type
/// of `gen_ai.response.finish_reasons`), the rest as [`attribute_value`].
fn genai_value(v: &Value) -> OtelValue {
    match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            let strings: Vec<StringValue> = items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| StringValue::from(s.to_owned()))
                .collect();
            OtelValue::Array(Array::String(strings))
        }
        other => attribute_value(other),
    }
}

/// Builds the OTel span of a closed spanbus span.
pub(super) fn to_span_data(
    open: OpenSpan,
    end: SystemTime,
    outcome: Result<(), (DropReason, &str)>,
    result: Option<&Value>,
    scope: &InstrumentationScope,
    policy: &Policy,
) -> SpanData {
    let mut attrs = Attributes {
        list: Vec::new(),
        seen: HashSet::new(),
        policy,
    };
    let openinference = policy.conventions.openinference();
    let kind = open
        .tags
        .get(SPAN_KIND)
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| open.semantics.kind().to_owned());
    if openinference {
        attrs.put(SPAN_KIND, kind.as_str().into());
        for (k, v) in open.semantics.attributes() {
            attrs.put(k, v);
        }
    }
    let genai = if policy.conventions.genai() {
        GenAiSpan::of(
            policy.semconv,
            &kind,
            &open.llm,
            &open.semantics,
            &open.tags,
            result,
        )
    } else {
        None
    };
    if let Some(g) = &genai {
        for (k, v) in &g.attributes {
            attrs.put_with(k.as_str(), v.clone(), genai_value);
        }
    }
    // The arguments, once: as the span's input when its events gave none (what Phoenix and
    // MLflow show as the input), else one attribute each beside the events' input.
    let events_gave_input = openinference && open.semantics.has_input();
    match open.args.as_ref().filter(|a| !a.is_null()) {
        None => {}
        Some(args) if !events_gave_input => {
            let kept = attrs.put("input.value", args.to_string().into());
            if kept {
                attrs.put("input.mime_type", "application/json".into());
            }
        }
        Some(Value::Object(args)) => {
            for (k, v) in args {
                attrs.put(format!("spanbus.args.{k}"), v.clone());
            }
        }
        Some(other) => {
            attrs.put("spanbus.args", other.clone());
        }
    }
    // The value `#[span(ret)]` recorded, unless the span's events gave an output.
    let events_gave_output = openinference && open.semantics.has_output();
    if !events_gave_output
        && !attrs.has("output.value")
        && let Some(result) = result.filter(|r| !r.is_null())
    {
        let (text, mime) = match result {
            Value::String(s) => (s.clone(), "text/plain"),
            other => (other.to_string(), "application/json"),
        };
        if attrs.put("output.value", text.into()) {
            attrs.put("output.mime_type", mime.into());
        }
    }
    for (k, v) in &open.tags {
        attrs.put(k.clone(), v.clone());
    }
    attrs.put("spanbus.dispatcher", open.dispatcher.into());
    let (name, span_kind) = match genai {
        Some(g) => {
            if g.name != open.name {
                attrs.put(SPAN_NAME, open.name.as_ref().into());
            }
            let kind = if g.client {
                SpanKind::Client
            } else {
                SpanKind::Internal
            };
            (Cow::Owned(g.name), kind)
        }
        None => (open.name, SpanKind::Internal),
    };
    let mut events = open.events;
    let status = match outcome {
        Ok(()) => Status::Ok,
        Err((reason, message)) => {
            attrs.put("spanbus.drop_reason", reason.to_string().into());
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
                    KeyValue::new("exception.message", policy.limit(text.clone().into())),
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
        span_kind,
        name,
        start_time: open.start,
        end_time: end.max(open.start),
        attributes: attrs.list,
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
