//! [`Rollups`]: LLM totals per trace, session, user and model, over closed spans.

use std::collections::BTreeMap;

use chrono::TimeDelta;

use super::{LlmSummary, Prices};
use crate::handlers::ClosedSpan;
use crate::id::TraceId;

/// Totals over a set of LLM calls.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LlmTotals {
    /// Spans with LLM or embedding events.
    pub calls: u64,
    /// Input tokens, summed over the calls that reported them.
    pub input_tokens: u64,
    /// Output tokens, summed over the calls that reported them.
    pub output_tokens: u64,
    /// Cost, summed over the calls the price table prices.
    pub cost: f64,
    /// Calls the price table could not price (unknown model or counts): `cost` leaves them out.
    pub unpriced: u64,
    /// Calls whose span did not exit normally (error, panic, cancelled, shutdown).
    pub failed: u64,
    /// The calls' durations, summed.
    pub duration: TimeDelta,
}

impl LlmTotals {
    /// Adds one call.
    pub fn add(&mut self, llm: &LlmSummary, ok: bool, duration: TimeDelta, prices: &Prices) {
        self.calls += 1;
        self.input_tokens += llm.input_tokens.unwrap_or(0);
        self.output_tokens += llm.output_tokens.unwrap_or(0);
        match llm.cost(prices) {
            Some(c) => self.cost += c,
            None => self.unpriced += 1,
        }
        if !ok {
            self.failed += 1;
        }
        self.duration += duration;
    }
}

/// LLM totals over closed spans: overall, per trace, per session, per user and per model.
///
/// Sessions and users are the OpenInference tags `session.id` and `user.id` of each span
/// (set them with `spanbus::with_tags` around a session's work: child spans inherit them);
/// spans without them count only in the other groups.
///
/// # Examples
///
/// ```
/// use spanbus::handlers::SimpleSpanHandler;
/// use spanbus::llm::{Prices, Rollups};
///
/// let spans = SimpleSpanHandler::new(); // added to a dispatcher, it collects closed spans
/// let prices = Prices::new().model("gpt-4o-mini", 0.15, 0.60);
/// let rollups = Rollups::of(&spans.spans(), &prices);
/// for (model, totals) in &rollups.by_model {
///     println!("{model}: {} calls, {}→{} tokens, ${:.4}",
///         totals.calls, totals.input_tokens, totals.output_tokens, totals.cost);
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Rollups {
    /// Every call.
    pub total: LlmTotals,
    /// Per trace.
    pub by_trace: BTreeMap<TraceId, LlmTotals>,
    /// Per `session.id` tag.
    pub by_session: BTreeMap<String, LlmTotals>,
    /// Per `user.id` tag.
    pub by_user: BTreeMap<String, LlmTotals>,
    /// Per model (`(unknown)` when no event named it).
    pub by_model: BTreeMap<String, LlmTotals>,
}

impl Rollups {
    /// The totals of the LLM calls among `spans`, priced with `prices`.
    pub fn of(spans: &[ClosedSpan], prices: &Prices) -> Rollups {
        let mut r = Rollups::default();
        for span in spans {
            let Some(llm) = &span.llm else { continue };
            let (ok, duration) = (span.outcome.is_ok(), span.duration());
            let add = |t: &mut LlmTotals| t.add(llm, ok, duration, prices);
            add(&mut r.total);
            if let Some(trace) = span.trace_id {
                add(r.by_trace.entry(trace).or_default());
            }
            if let Some(session) = span.tag_str("session.id") {
                add(r.by_session.entry(session.to_owned()).or_default());
            }
            if let Some(user) = span.tag_str("user.id") {
                add(r.by_user.entry(user.to_owned()).or_default());
            }
            let model = llm.model.as_deref().unwrap_or("(unknown)");
            add(r.by_model.entry(model.to_owned()).or_default());
        }
        r
    }
}
