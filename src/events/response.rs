//! What a model returns: [`ChatResponse`], [`CompletionResponse`] and the [`TokenUsage`] they
//! report. Where the typed values go in JSON is documented on [`ChatResponse`].

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::message::ChatMessage;
use super::wire::{
    Overlaid, take_if_string, take_object, take_opt_string, take_opt_value, write_extra,
};

/// Token counts of one model call.
///
/// `input` counts every prompt token, `output` every generated token; `cache_read` and
/// `reasoning` are the parts of them that the provider reports separately, when it does
/// (OpenAI's `prompt_tokens_details.cached_tokens`, read from the provider's prompt cache, and
/// `completion_tokens_details.reasoning_tokens`, spent on hidden reasoning).
///
/// # JSON
///
/// The keys it adds to a response's `additional_kwargs`, as its own JSON object:
///
/// ```json
/// {"prompt_tokens": 312, "completion_tokens": 85, "total_tokens": 397, "cached_tokens": 256}
/// ```
///
/// `total_tokens` is always `input + output`; `cached_tokens` and `reasoning_tokens` are
/// written only when known. Reading accepts every shape [`from_json`](Self::from_json) does.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::TokenUsage;
///
/// let usage = TokenUsage::new(312, 85).with_cache_read(256);
/// assert_eq!(usage.total(), 397);
/// assert_eq!(
///     serde_json::to_value(usage)?,
///     json!({"prompt_tokens": 312, "completion_tokens": 85, "total_tokens": 397, "cached_tokens": 256})
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TokenUsage {
    /// Prompt (input) tokens, cached ones included.
    pub input: u64,
    /// Generated (output) tokens, reasoning ones included.
    pub output: u64,
    /// How many of the input tokens were read from the provider's prompt cache, when known.
    pub cache_read: Option<u64>,
    /// How many of the output tokens the model spent on reasoning, when known.
    pub reasoning: Option<u64>,
}

impl TokenUsage {
    /// `input` prompt tokens and `output` generated tokens.
    pub const fn new(input: u64, output: u64) -> Self {
        TokenUsage {
            input,
            output,
            cache_read: None,
            reasoning: None,
        }
    }

    /// The usage with `tokens` of the input read from the prompt cache.
    pub const fn with_cache_read(mut self, tokens: u64) -> Self {
        self.cache_read = Some(tokens);
        self
    }

    /// The usage with `tokens` of the output spent on reasoning.
    pub const fn with_reasoning(mut self, tokens: u64) -> Self {
        self.reasoning = Some(tokens);
        self
    }

    /// Input and output tokens together (saturating at `u64::MAX`).
    pub const fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// Reads a provider's usage object: OpenAI's chat completions shape
    /// (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`,
    /// `completion_tokens_details.reasoning_tokens`), OpenAI's responses shape (`input_tokens`,
    /// `output_tokens`, `input_tokens_details.cached_tokens`,
    /// `output_tokens_details.reasoning_tokens`) or this type's own JSON. `None` unless both
    /// the input and the output count are there as non-negative integers.
    ///
    /// Anthropic's `cache_read_input_tokens` is not read: Anthropic's `input_tokens` leaves the
    /// cached tokens out, so it does not mean the same as the shapes above.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde_json::json;
    /// use spanbus::events::TokenUsage;
    ///
    /// let usage = TokenUsage::from_json(&json!({
    ///     "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
    ///     "prompt_tokens_details": {"cached_tokens": 1024},
    ///     "completion_tokens_details": {"reasoning_tokens": 192},
    /// }));
    /// assert_eq!(usage, Some(TokenUsage::new(1200, 300).with_cache_read(1024).with_reasoning(192)));
    /// assert_eq!(TokenUsage::from_json(&json!({"prompt_tokens": 5})), None);
    /// ```
    pub fn from_json(usage: &Value) -> Option<TokenUsage> {
        let count = |paths: &[&str]| {
            paths
                .iter()
                .find_map(|p| usage.pointer(p).and_then(Value::as_u64))
        };
        Some(TokenUsage {
            input: count(&["/prompt_tokens", "/input_tokens"])?,
            output: count(&["/completion_tokens", "/output_tokens"])?,
            cache_read: count(&[
                "/cached_tokens",
                "/prompt_tokens_details/cached_tokens",
                "/input_tokens_details/cached_tokens",
            ]),
            reasoning: count(&[
                "/reasoning_tokens",
                "/completion_tokens_details/reasoning_tokens",
                "/output_tokens_details/reasoning_tokens",
            ]),
        })
    }

    /// The `additional_kwargs` entries for this usage.
    fn entries(&self, out: &mut Vec<(&'static str, Value)>) {
        out.push(("prompt_tokens", self.input.into()));
        out.push(("completion_tokens", self.output.into()));
        out.push(("total_tokens", self.total().into()));
        if let Some(n) = self.cache_read {
            out.push(("cached_tokens", n.into()));
        }
        if let Some(n) = self.reasoning {
            out.push(("reasoning_tokens", n.into()));
        }
    }

    /// Takes the usage out of `additional_kwargs` if both counts are there: the keys it
    /// writes are removed (those of the wrong type stay).
    fn take(kwargs: &mut Map<String, Value>) -> Option<TokenUsage> {
        let count = |kwargs: &Map<String, Value>, k: &str| kwargs.get(k).and_then(Value::as_u64);
        let input = count(kwargs, "prompt_tokens")?;
        let output = count(kwargs, "completion_tokens")?;
        let mut take = |k: &str| {
            let n = count(kwargs, k);
            if n.is_some() {
                kwargs.remove(k);
            }
            n
        };
        take("prompt_tokens");
        take("completion_tokens");
        take("total_tokens");
        Some(TokenUsage {
            input,
            output,
            cache_read: take("cached_tokens"),
            reasoning: take("reasoning_tokens"),
        })
    }
}

impl Serialize for TokenUsage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries = Vec::new();
        self.entries(&mut entries);
        let mut out = serializer.serialize_map(Some(entries.len()))?;
        for (k, v) in &entries {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for TokenUsage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let usage = Value::deserialize(deserializer)?;
        TokenUsage::from_json(&usage).ok_or_else(|| {
            D::Error::custom(
                "a token usage needs prompt_tokens (or input_tokens) and completion_tokens (or \
                 output_tokens) as non-negative integers",
            )
        })
    }
}

/// Fills what is missing from a provider's raw response, in OpenAI's shapes.
fn fill_from_raw(
    raw: &Value,
    usage: &mut Option<TokenUsage>,
    model: &mut Option<String>,
    finish_reason: &mut Option<String>,
) {
    if usage.is_none() {
        *usage = raw.get("usage").and_then(TokenUsage::from_json);
    }
    let text = |p: &str| raw.pointer(p).and_then(Value::as_str).map(str::to_owned);
    if model.is_none() {
        *model = text("/model");
    }
    if finish_reason.is_none() {
        *finish_reason = text("/choices/0/finish_reason");
    }
}

/// The typed values a response writes into `additional_kwargs`.
#[derive(Default)]
struct Reported {
    usage: Option<TokenUsage>,
    model: Option<String>,
    finish_reason: Option<String>,
}

impl Reported {
    /// Takes the values out of `kwargs`, then reads the missing ones from `raw`.
    fn take(kwargs: &mut Map<String, Value>, raw: Option<&Value>) -> Reported {
        let mut reported = Reported {
            usage: TokenUsage::take(kwargs),
            model: take_if_string(kwargs, "model"),
            finish_reason: take_if_string(kwargs, "finish_reason"),
        };
        if let Some(raw) = raw {
            fill_from_raw(
                raw,
                &mut reported.usage,
                &mut reported.model,
                &mut reported.finish_reason,
            );
        }
        reported
    }

    fn entries(
        usage: Option<&TokenUsage>,
        model: Option<&String>,
        finish_reason: Option<&String>,
    ) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if let Some(usage) = usage {
            usage.entries(&mut out);
        }
        if let Some(m) = model {
            out.push(("model", m.clone().into()));
        }
        if let Some(r) = finish_reason {
            out.push(("finish_reason", r.clone().into()));
        }
        out
    }
}

/// A chat model's answer: llama-index's `ChatResponse`.
///
/// # JSON
///
/// llama-index's field names; `null` for what is absent, as pydantic writes it:
///
/// ```json
/// {"message": {"role": "assistant", "content": "A span is ...", "additional_kwargs": {}},
///  "raw": null,
///  "delta": null,
///  "additional_kwargs": {"prompt_tokens": 312, "completion_tokens": 85, "total_tokens": 397,
///                        "model": "gpt-4o-mini", "finish_reason": "stop"}}
/// ```
///
/// The typed [`usage`](Self::usage), [`model`](Self::model) and
/// [`finish_reason`](Self::finish_reason) are written where llama-index's OpenAI integration
/// puts token counts, inside `additional_kwargs`, each key only when the value is known:
///
/// | field | `additional_kwargs` keys |
/// |---|---|
/// | `usage` | `prompt_tokens`, `completion_tokens`, `total_tokens` (their sum), `cached_tokens` and `reasoning_tokens` (when known) |
/// | `model` | `model` |
/// | `finish_reason` | `finish_reason` |
///
/// They win over same-named keys of the [`additional_kwargs`](Self::additional_kwargs) field.
/// Reading takes them from `additional_kwargs` first (removing them there, so that the field
/// holds only the other extras); what is not found there is read from the provider's raw
/// response in OpenAI's shapes: the usage from `raw.usage` (see [`TokenUsage::from_json`]),
/// the model from `raw.model`, the finish reason from `raw.choices[0].finish_reason`. A key of
/// the wrong type (a `model` that is not a string, say) is not taken and stays in
/// `additional_kwargs`. Keys beyond llama-index's fields (its `logprobs`, say) are kept in
/// [`extra`](Self::extra) and written back.
///
/// A response read from JSON compares equal to one built with
/// [`with_raw`](Self::with_raw), which fills the typed values from the raw response the same
/// way; setting the `raw` field by hand does not.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::{ChatMessage, ChatResponse, TokenUsage};
///
/// let response = ChatResponse::new(ChatMessage::assistant("A stretch of work."))
///     .with_usage(TokenUsage::new(312, 85))
///     .with_model("gpt-4o-mini")
///     .with_finish_reason("stop");
/// assert_eq!(
///     serde_json::to_value(&response)?,
///     json!({
///         "message": {"role": "assistant", "content": "A stretch of work.", "additional_kwargs": {}},
///         "raw": null,
///         "delta": null,
///         "additional_kwargs": {
///             "prompt_tokens": 312, "completion_tokens": 85, "total_tokens": 397,
///             "model": "gpt-4o-mini", "finish_reason": "stop",
///         },
///     })
/// );
///
/// // A response holding the provider's raw JSON reports what that says.
/// let from_raw = ChatResponse::new(ChatMessage::assistant("A stretch of work.")).with_raw(json!({
///     "model": "gpt-4o-mini-2024-07-18",
///     "choices": [{"finish_reason": "stop"}],
///     "usage": {"prompt_tokens": 312, "completion_tokens": 85},
/// }));
/// assert_eq!(from_raw.usage, Some(TokenUsage::new(312, 85)));
/// assert_eq!(from_raw.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The message so far: the whole answer, or, while streaming, the answer up to this
    /// chunk.
    pub message: ChatMessage,
    /// The text this chunk added, while streaming.
    pub delta: Option<String>,
    /// The provider's raw response, as JSON.
    pub raw: Option<Value>,
    /// Provider extras, as llama-index keeps them.
    pub additional_kwargs: Map<String, Value>,
    /// The call's token counts, when known.
    pub usage: Option<TokenUsage>,
    /// The model that answered, as the provider names it, when known.
    pub model: Option<String>,
    /// Why the model stopped (`"stop"`, `"length"`, `"tool_calls"`, ...), when known.
    pub finish_reason: Option<String>,
    /// Keys of the JSON object that this type does not model, written back as they came.
    pub extra: Map<String, Value>,
}

impl ChatResponse {
    /// A response holding `message`.
    pub fn new(message: ChatMessage) -> Self {
        ChatResponse {
            message,
            delta: None,
            raw: None,
            additional_kwargs: Map::new(),
            usage: None,
            model: None,
            finish_reason: None,
            extra: Map::new(),
        }
    }

    /// The response with `delta` as the text its chunk added.
    pub fn with_delta(mut self, delta: impl Into<String>) -> Self {
        self.delta = Some(delta.into());
        self
    }

    /// The response with `usage` as its token counts.
    pub fn with_usage(mut self, usage: TokenUsage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The response with `model` as the model that answered.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The response with `reason` as why the model stopped.
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    /// The response with the provider's `raw` response; the usage, model and finish reason
    /// not set yet are read from it (see [`ChatResponse`]).
    pub fn with_raw(mut self, raw: Value) -> Self {
        fill_from_raw(
            &raw,
            &mut self.usage,
            &mut self.model,
            &mut self.finish_reason,
        );
        self.raw = Some(raw);
        self
    }
}

impl Serialize for ChatResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let owned = Reported::entries(
            self.usage.as_ref(),
            self.model.as_ref(),
            self.finish_reason.as_ref(),
        );
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("message", &self.message)?;
        out.serialize_entry("raw", &self.raw)?;
        out.serialize_entry("delta", &self.delta)?;
        out.serialize_entry(
            "additional_kwargs",
            &Overlaid {
                base: &self.additional_kwargs,
                owned: &owned,
            },
        )?;
        write_extra(
            &mut out,
            &self.extra,
            &["message", "raw", "delta", "additional_kwargs"],
        )?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for ChatResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let message = match map.remove("message") {
            Some(message) => ChatMessage::deserialize(message).map_err(D::Error::custom)?,
            None => return Err(D::Error::missing_field("message")),
        };
        let raw = take_opt_value(&mut map, "raw");
        let delta = take_opt_string(&mut map, "delta", "ChatResponse")?;
        let mut additional_kwargs = take_object(&mut map, "additional_kwargs", "ChatResponse")?;
        let reported = Reported::take(&mut additional_kwargs, raw.as_ref());
        Ok(ChatResponse {
            message,
            delta,
            raw,
            additional_kwargs,
            usage: reported.usage,
            model: reported.model,
            finish_reason: reported.finish_reason,
            extra: map,
        })
    }
}

/// A completion model's answer: llama-index's `CompletionResponse`.
///
/// # JSON
///
/// llama-index's field names; `null` for what is absent, as pydantic writes it:
///
/// ```json
/// {"text": "there was a span", "additional_kwargs": {"prompt_tokens": 4, "completion_tokens": 5,
///  "total_tokens": 9}, "raw": null, "delta": null}
/// ```
///
/// [`usage`](Self::usage), [`model`](Self::model) and [`finish_reason`](Self::finish_reason)
/// are placed and read as [`ChatResponse`]'s are (see [`ChatResponse`]); keys beyond
/// these are kept in [`extra`](Self::extra).
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::{CompletionResponse, TokenUsage};
///
/// let chunk = CompletionResponse::new("Once upon a").with_delta(" a");
/// let done = CompletionResponse::new("Once upon a time")
///     .with_usage(TokenUsage::new(4, 3))
///     .with_finish_reason("stop");
/// assert_eq!(serde_json::to_value(&chunk)?["delta"], " a");
/// assert_eq!(serde_json::to_value(&done)?["additional_kwargs"]["total_tokens"], 7);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CompletionResponse {
    /// The text so far: the whole completion, or, while streaming, the text up to this chunk.
    pub text: String,
    /// The text this chunk added, while streaming.
    pub delta: Option<String>,
    /// The provider's raw response, as JSON.
    pub raw: Option<Value>,
    /// Provider extras, as llama-index keeps them.
    pub additional_kwargs: Map<String, Value>,
    /// The call's token counts, when known.
    pub usage: Option<TokenUsage>,
    /// The model that answered, as the provider names it, when known.
    pub model: Option<String>,
    /// Why the model stopped (`"stop"`, `"length"`, ...), when known.
    pub finish_reason: Option<String>,
    /// Keys of the JSON object that this type does not model, written back as they came.
    pub extra: Map<String, Value>,
}

impl CompletionResponse {
    /// A response holding `text`.
    pub fn new(text: impl Into<String>) -> Self {
        CompletionResponse {
            text: text.into(),
            ..CompletionResponse::default()
        }
    }

    /// The response with `delta` as the text its chunk added.
    pub fn with_delta(mut self, delta: impl Into<String>) -> Self {
        self.delta = Some(delta.into());
        self
    }

    /// The response with `usage` as its token counts.
    pub fn with_usage(mut self, usage: TokenUsage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The response with `model` as the model that answered.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The response with `reason` as why the model stopped.
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    /// The response with the provider's `raw` response; the usage, model and finish reason
    /// not set yet are read from it (see [`ChatResponse`]).
    pub fn with_raw(mut self, raw: Value) -> Self {
        fill_from_raw(
            &raw,
            &mut self.usage,
            &mut self.model,
            &mut self.finish_reason,
        );
        self.raw = Some(raw);
        self
    }
}

impl Serialize for CompletionResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let owned = Reported::entries(
            self.usage.as_ref(),
            self.model.as_ref(),
            self.finish_reason.as_ref(),
        );
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("text", &self.text)?;
        out.serialize_entry(
            "additional_kwargs",
            &Overlaid {
                base: &self.additional_kwargs,
                owned: &owned,
            },
        )?;
        out.serialize_entry("raw", &self.raw)?;
        out.serialize_entry("delta", &self.delta)?;
        write_extra(
            &mut out,
            &self.extra,
            &["text", "additional_kwargs", "raw", "delta"],
        )?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for CompletionResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let text = take_opt_string(&mut map, "text", "CompletionResponse")?
            .ok_or_else(|| D::Error::missing_field("text"))?;
        let raw = take_opt_value(&mut map, "raw");
        let delta = take_opt_string(&mut map, "delta", "CompletionResponse")?;
        let mut additional_kwargs =
            take_object(&mut map, "additional_kwargs", "CompletionResponse")?;
        let reported = Reported::take(&mut additional_kwargs, raw.as_ref());
        Ok(CompletionResponse {
            text,
            delta,
            raw,
            additional_kwargs,
            usage: reported.usage,
            model: reported.model,
            finish_reason: reported.finish_reason,
            extra: map,
        })
    }
}
