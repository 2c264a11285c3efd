//! [`LlmSummary`]: what one span's LLM events say — model, tokens, time to first token,
//! chunks, finish reason.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use super::Prices;
use crate::record::{Record, RecordKind};

/// What the LLM events of one span say: the call's model, token counts, time to first token,
/// streamed chunks and finish reason.
///
/// Feed it the span's events in order with [`observe`](Self::observe) (class name, time, the
/// event's own fields as JSON) or [`observe_record`](Self::observe_record); it reads the LLM
/// event catalog in llama-index's shapes (see [the module docs](super)) and ignores every
/// other event. A stream cut short keeps what it saw: the chunks, the time to the first, and
/// the last token counts any chunk carried.
///
/// # Examples
///
/// ```
/// use chrono::{TimeDelta, TimeZone, Utc};
/// use serde_json::json;
/// use spanbus::llm::{LlmSummary, Prices};
///
/// let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
/// let ms = |n| t0 + TimeDelta::milliseconds(n);
/// let fields = |v: serde_json::Value| v.as_object().unwrap().clone();
///
/// let mut llm = LlmSummary::default();
/// llm.observe("LLMChatStartEvent", t0, &fields(json!({"model_dict": {"model": "gpt-4o-mini"}})));
/// llm.observe("LLMChatInProgressEvent", ms(9), &fields(json!({"response": {"delta": "A"}})));
/// llm.observe("LLMChatEndEvent", ms(40), &fields(json!({"response": {
///     "message": {"role": "assistant", "content": "A span."},
///     "additional_kwargs": {"prompt_tokens": 312, "completion_tokens": 85, "finish_reason": "stop"},
/// }})));
///
/// assert_eq!(llm.model.as_deref(), Some("gpt-4o-mini"));
/// assert_eq!((llm.input_tokens, llm.output_tokens), (Some(312), Some(85)));
/// assert_eq!(llm.ttft, Some(TimeDelta::milliseconds(9)));
/// assert_eq!(llm.chunks, 1);
/// assert_eq!(llm.finish_reason.as_deref(), Some("stop"));
///
/// let prices = Prices::new().model("gpt-4o-mini", 0.15, 0.60);
/// let cost = llm.cost(&prices).unwrap(); // 312 × 0.15 + 85 × 0.60, per million
/// assert!((cost - 0.0000978).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LlmSummary {
    /// The operation, in the OpenTelemetry GenAI names: `chat`, `text_completion`,
    /// `embeddings`; `None` while no LLM event was seen.
    pub operation: Option<String>,
    /// The model that answered (the response's), else the one asked for (the request's
    /// `model_dict`).
    pub model: Option<String>,
    /// The model asked for: the request's `model_dict` (`model`, `model_name`).
    pub request_model: Option<String>,
    /// The model that answered, as the response names it (`additional_kwargs.model`,
    /// `raw.model`, `model`).
    pub response_model: Option<String>,
    /// The provider, from the request's `model_dict` (`provider`, else `class_name`).
    pub provider: Option<String>,
    /// Prompt tokens (for embeddings, the tokens embedded).
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    pub output_tokens: Option<u64>,
    /// Prompt tokens read from the provider's cache (part of `input_tokens`), when given.
    pub cache_read_tokens: Option<u64>,
    /// Reasoning tokens (part of `output_tokens`), when given.
    pub reasoning_tokens: Option<u64>,
    /// From the call's start event to its first streamed chunk.
    pub ttft: Option<TimeDelta>,
    /// Streamed chunks seen (in-progress events).
    pub chunks: u64,
    /// Why the model stopped (`stop`, `length`, `tool_calls`, …), when given.
    pub finish_reason: Option<String>,
    /// When the call started (its first start event), for the time to first token.
    started: Option<DateTime<Utc>>,
}

/// Which catalog events say what.
enum Class {
    Start(&'static str),
    Chunk(&'static str),
    End(&'static str),
    EmbeddingStart,
    EmbeddingEnd,
}

fn class(name: &str) -> Option<Class> {
    Some(match name {
        "LLMChatStartEvent" | "StreamChatStartEvent" => Class::Start("chat"),
        "LLMCompletionStartEvent" | "LLMPredictStartEvent" | "LLMStructuredPredictStartEvent" => {
            Class::Start("text_completion")
        }
        "LLMChatInProgressEvent" | "StreamChatDeltaReceivedEvent" => Class::Chunk("chat"),
        "LLMCompletionInProgressEvent" | "LLMStructuredPredictInProgressEvent" => {
            Class::Chunk("text_completion")
        }
        "LLMChatEndEvent" => Class::End("chat"),
        "LLMCompletionEndEvent" => Class::End("text_completion"),
        "EmbeddingStartEvent" | "SparseEmbeddingStartEvent" => Class::EmbeddingStart,
        "EmbeddingEndEvent" | "SparseEmbeddingEndEvent" => Class::EmbeddingEnd,
        _ => return None,
    })
}

impl LlmSummary {
    /// Whether `class_name` is an event this summary reads (to skip serializing others).
    pub fn reads(class_name: &str) -> bool {
        class(class_name).is_some()
    }

    /// Whether any LLM or embedding event was seen.
    pub fn is_llm(&self) -> bool {
        self.operation.is_some()
    }

    /// Reads one event of the span, given its class name, time and own fields.
    pub fn observe(&mut self, class_name: &str, at: DateTime<Utc>, fields: &Map<String, Value>) {
        let Some(class) = class(class_name) else {
            return;
        };
        let field = |k: &str| fields.get(k).filter(|v| !v.is_null());
        match class {
            Class::Start(operation) => {
                self.operation.get_or_insert_with(|| operation.to_owned());
                self.started.get_or_insert(at);
                if let Some(dict) = field("model_dict") {
                    if self.request_model.is_none() {
                        self.request_model = text(dict, &["model", "model_name"]);
                    }
                    if self.model.is_none() {
                        self.model = self.request_model.clone();
                    }
                    if self.provider.is_none() {
                        self.provider = text(dict, &["provider", "class_name"]);
                    }
                }
            }
            Class::Chunk(operation) => {
                self.operation.get_or_insert_with(|| operation.to_owned());
                self.chunks += 1;
                if self.ttft.is_none() {
                    self.ttft = self.started.map(|s| at - s);
                }
                if let Some(response) = field("response") {
                    self.response(response);
                }
            }
            Class::End(operation) => {
                self.operation.get_or_insert_with(|| operation.to_owned());
                if let Some(response) = field("response") {
                    self.response(response);
                }
            }
            Class::EmbeddingStart => {
                self.operation
                    .get_or_insert_with(|| "embeddings".to_owned());
                if let Some(dict) = field("model_dict") {
                    if self.request_model.is_none() {
                        self.request_model = text(dict, &["model", "model_name"]);
                    }
                    if self.model.is_none() {
                        self.model = self.request_model.clone();
                    }
                    if self.provider.is_none() {
                        self.provider = text(dict, &["provider", "class_name"]);
                    }
                }
            }
            Class::EmbeddingEnd => {
                self.operation
                    .get_or_insert_with(|| "embeddings".to_owned());
                if let Some(n) = field("token_count").and_then(Value::as_u64) {
                    self.input_tokens = Some(n);
                }
            }
        }
    }

    /// Reads one record: an event of the catalog is serialized and [observed](Self::observe);
    /// span signals and other events are skipped without serializing.
    pub fn observe_record(&mut self, record: &Record) {
        let RecordKind::Event(event) = record.kind() else {
            return;
        };
        let name = record.class_name();
        if !Self::reads(name) {
            return;
        }
        if let Ok(Value::Object(fields)) = event.to_json() {
            self.observe(name, record.timestamp(), &fields);
        }
    }

    /// The call's cost from `prices` (per million input and output tokens), if the model
    /// has a price there and both counts are known (an embedding needs only its input).
    pub fn cost(&self, prices: &Prices) -> Option<f64> {
        let price = prices.get(self.model.as_deref()?)?;
        let input = self.input_tokens? as f64 * price.input_per_million;
        let output = match (self.output_tokens, self.operation.as_deref()) {
            (Some(n), _) => n as f64 * price.output_per_million,
            (None, Some("embeddings")) => 0.0,
            (None, _) => return None,
        };
        Some((input + output) / 1e6)
    }

    /// The summary as one line's worth of text, as the trace trees print it after a span's
    /// duration: `gpt-4o-mini  312→85 tok  ttft 9.1 ms  $0.000098`. Parts not known are left
    /// out (an unknown count of a known pair shows as `?`); the cost only with a price; a
    /// stream without an output count shows its chunks (`ttft 3.5 ms  12 chunks`).
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::llm::{LlmSummary, Prices};
    ///
    /// let mut llm = LlmSummary::default();
    /// llm.observe("LLMChatEndEvent", chrono::Utc::now(), serde_json::json!({"response": {
    ///     "additional_kwargs": {"model": "gpt-4o-mini", "prompt_tokens": 312, "completion_tokens": 85},
    /// }}).as_object().unwrap());
    /// let prices = Prices::new().model("gpt-4o-mini", 0.15, 0.60);
    /// assert_eq!(llm.brief(&prices), "gpt-4o-mini  312→85 tok  $0.000098");
    /// assert_eq!(llm.brief(&Prices::new()), "gpt-4o-mini  312→85 tok");
    /// ```
    pub fn brief(&self, prices: &Prices) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(m) = &self.model {
            parts.push(m.clone());
        }
        let n = |c: Option<u64>| c.map_or_else(|| "?".to_owned(), |c| c.to_string());
        match (
            self.input_tokens,
            self.output_tokens,
            self.operation.as_deref(),
        ) {
            (None, None, _) => {}
            (Some(i), None, Some("embeddings")) => parts.push(format!("{i} tok")),
            (i, o, _) => parts.push(format!("{}→{} tok", n(i), n(o))),
        }
        if let Some(t) = self.ttft {
            let us = t.num_microseconds().unwrap_or(i64::MAX);
            parts.push(format!("ttft {:.1} ms", us as f64 / 1e3));
        }
        // A stream that never reported its output count (cut short, say) shows what it sent.
        if self.output_tokens.is_none() && self.chunks > 0 {
            let s = if self.chunks == 1 { "" } else { "s" };
            parts.push(format!("{} chunk{s}", self.chunks));
        }
        if let Some(c) = self.cost(prices) {
            parts.push(format_cost(c));
        }
        parts.join("  ")
    }

    /// Usage, model and finish reason from a response (or a streamed chunk's response): in
    /// `additional_kwargs` (llama-index's OpenAI integration), `raw.usage` / `raw.model` /
    /// `raw.choices[0].finish_reason` (the provider's raw response), `usage`, or the response
    /// itself. A later response's counts replace an earlier one's.
    fn response(&mut self, response: &Value) {
        let places = [
            response.get("additional_kwargs"),
            response.pointer("/raw/usage"),
            response.get("usage"),
            Some(response),
        ];
        for usage in places.into_iter().flatten() {
            let input = count(usage, &["prompt_tokens", "input_tokens"]);
            let output = count(usage, &["completion_tokens", "output_tokens"]);
            if input.is_none() && output.is_none() {
                continue;
            }
            self.input_tokens = input.or(self.input_tokens);
            self.output_tokens = output.or(self.output_tokens);
            self.cache_read_tokens = count(
                usage,
                &[
                    "cached_tokens",
                    "cache_read_input_tokens",
                    "prompt_tokens_details/cached_tokens",
                    "input_tokens_details/cached_tokens",
                ],
            )
            .or(self.cache_read_tokens);
            self.reasoning_tokens = count(
                usage,
                &[
                    "reasoning_tokens",
                    "completion_tokens_details/reasoning_tokens",
                    "output_tokens_details/reasoning_tokens",
                ],
            )
            .or(self.reasoning_tokens);
            break;
        }
        let model = [
            response.pointer("/additional_kwargs/model"),
            response.pointer("/raw/model"),
            response.get("model"),
        ];
        if let Some(m) = model.into_iter().flatten().find_map(Value::as_str) {
            self.model = Some(m.to_owned());
            self.response_model = Some(m.to_owned());
        }
        if self.ttft.is_none()
            && let Some(secs) = response
                .pointer("/additional_kwargs/time_to_first_chunk")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
        {
            // A client that measured it itself (the tracing bridge's GenAI spans).
            self.ttft = Some(TimeDelta::microseconds((secs.min(1e9) * 1e6) as i64));
        }
        let finish = [
            response.pointer("/additional_kwargs/finish_reason"),
            response.pointer("/raw/choices/0/finish_reason"),
            response.pointer("/raw/stop_reason"),
            response.get("finish_reason"),
        ];
        if let Some(r) = finish.into_iter().flatten().find_map(Value::as_str) {
            self.finish_reason = Some(r.to_owned());
        }
    }
}

/// The first of `keys` (`a/b` for a nested key) that holds a string.
fn text(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// The first of `keys` (`a/b` for a nested key) that holds a non-negative integer.
fn count(v: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| {
        let found = if k.contains('/') {
            v.pointer(&format!("/{k}"))
        } else {
            v.get(*k)
        };
        found.and_then(Value::as_u64)
    })
}

/// `$0.0004`; below a hundredth of a cent, six decimals (`$0.000035`); below a millionth of a
/// dollar, `<$0.000001`: a cheap call does not read as free.
pub(crate) fn format_cost(cost: f64) -> String {
    if cost == 0.0 || cost >= 0.0001 {
        format!("${cost:.4}")
    } else if cost >= 0.000_001 {
        format!("${cost:.6}")
    } else {
        "<$0.000001".to_owned()
    }
}
