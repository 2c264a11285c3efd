//! One line per trace for the JSON Lines output: what a trace did, written when its last span
//! ends (see [`JsonlHandler::with_trace_summaries`](super::JsonlHandler::with_trace_summaries)).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::id::{SpanId, TraceId};
use crate::llm::{LlmSummary, LlmTotals, Prices};
use crate::record::{DropReason, Record, RecordKind};

/// The `class_name` of a trace summary line.
pub const TRACE_SUMMARY_CLASS_NAME: &str = "TraceSummary";

/// A trace with spans still open.
#[derive(Default)]
struct Trace {
    /// The open spans: when each started, and its LLM events so far.
    open: HashMap<SpanId, (DateTime<Utc>, Option<LlmSummary>)>,
    /// The first span entered: the trace's root here.
    first: Option<(SpanId, String, DateTime<Utc>)>,
    spans: u64,
    errors: u64,
    cancelled: u64,
    llm: LlmTotals,
    models: Vec<String>,
}

/// Follows every trace's spans and LLM events, and gives a trace's summary line when its
/// last open span ends. A span of the same trace entered after that starts a new summary.
pub(crate) struct TraceSummaries {
    prices: Prices,
    traces: HashMap<TraceId, Trace>,
}

impl TraceSummaries {
    pub(crate) fn new(prices: Prices) -> TraceSummaries {
        TraceSummaries {
            prices,
            traces: HashMap::new(),
        }
    }

    /// Reads one record (with its JSON, already made for its own line); returns the trace's
    /// summary line when this record ended the trace's last open span.
    pub(crate) fn observe(
        &mut self,
        record: &Record,
        json: &Map<String, Value>,
    ) -> Option<Map<String, Value>> {
        let ctx = record.span()?;
        let at = record.timestamp();
        match record.kind() {
            RecordKind::SpanEnter(enter) => {
                let trace = self.traces.entry(ctx.trace_id()).or_default();
                trace.open.insert(enter.id, (at, None));
                trace
                    .first
                    .get_or_insert_with(|| (enter.id, enter.name.to_string(), at));
                trace.spans += 1;
                None
            }
            RecordKind::Event(_) => {
                let class = record.class_name();
                if LlmSummary::reads(class)
                    && let Some(trace) = self.traces.get_mut(&ctx.trace_id())
                    && let Some((_, llm)) = trace.open.get_mut(&ctx.span_id())
                {
                    llm.get_or_insert_with(LlmSummary::default)
                        .observe(class, at, json);
                }
                None
            }
            RecordKind::SpanExit(exit) => self.end(ctx.trace_id(), exit.id, at, None, record),
            RecordKind::SpanDrop(drop) => {
                self.end(ctx.trace_id(), drop.id, at, Some(drop.reason), record)
            }
        }
    }

    fn end(
        &mut self,
        trace_id: TraceId,
        id: SpanId,
        at: DateTime<Utc>,
        dropped: Option<DropReason>,
        record: &Record,
    ) -> Option<Map<String, Value>> {
        let trace = self.traces.get_mut(&trace_id)?;
        let (start, llm) = trace.open.remove(&id)?;
        match dropped {
            Some(DropReason::Cancelled) => trace.cancelled += 1,
            Some(DropReason::Error | DropReason::Panic) => trace.errors += 1,
            _ => {}
        }
        if let Some(llm) = llm {
            trace
                .llm
                .add(&llm, dropped.is_none(), at - start, &self.prices);
            if let Some(m) = llm.model
                && !trace.models.contains(&m)
            {
                trace.models.push(m);
            }
        }
        if !trace.open.is_empty() {
            return None;
        }
        let trace = self.traces.remove(&trace_id)?;
        let (root, name, start) = trace.first?;
        let llm = &trace.llm;
        let mut line = Map::new();
        line.insert("id_".into(), uuid::Uuid::new_v4().to_string().into());
        line.insert(
            "timestamp".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("span_id".into(), root.to_string().into());
        line.insert("trace_id".into(), trace_id.to_string().into());
        line.insert("tags".into(), Value::Object(Map::new()));
        line.insert("class_name".into(), TRACE_SUMMARY_CLASS_NAME.into());
        line.insert("dispatcher".into(), record.dispatcher().into());
        line.insert("name".into(), name.into());
        let micros = (at - start).num_microseconds().unwrap_or(i64::MAX);
        line.insert("duration_ms".into(), json!(micros as f64 / 1e3));
        line.insert("spans".into(), trace.spans.into());
        line.insert("errors".into(), trace.errors.into());
        line.insert("cancelled".into(), trace.cancelled.into());
        line.insert(
            "llm".into(),
            json!({
                "calls": llm.calls,
                "input_tokens": llm.input_tokens,
                "output_tokens": llm.output_tokens,
                "cost": (llm.unpriced < llm.calls).then_some(llm.cost),
                "models": trace.models,
            }),
        );
        Some(line)
    }
}
