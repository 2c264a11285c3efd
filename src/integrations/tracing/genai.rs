//! `tracing` spans in the OpenTelemetry GenAI conventions, as the catalog's LLM events.
//!
//! See the parent module's docs ("LLM clients that speak the GenAI conventions") for the
//! mapping.

use serde_json::{Map, Value, json};

use crate::events::{
    AgentToolCallEvent, ChatMessage, ChatResponse, CompletionResponse, EmbeddingEndEvent,
    EmbeddingStartEvent, LLMChatEndEvent, LLMChatStartEvent, LLMCompletionEndEvent,
    LLMCompletionStartEvent, TokenUsage,
};
use crate::{Dispatcher, SpanContext};

/// The field that marks a GenAI span.
const OPERATION: &str = "gen_ai.operation.name";

/// What the bridge keeps of a GenAI span: every field, whenever it was recorded.
#[derive(Debug, Default)]
pub(super) struct GenAiCall {
    fields: Map<String, Value>,
}

impl GenAiCall {
    /// A call, if `fields` (a new span's) mark it as one.
    pub(super) fn of(fields: &Map<String, Value>) -> Option<GenAiCall> {
        fields.get(OPERATION)?.as_str()?;
        Some(GenAiCall {
            fields: fields.clone(),
        })
    }

    /// Fields recorded later (`Span::record`).
    pub(super) fn record(&mut self, fields: Map<String, Value>) {
        self.fields.extend(fields);
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key)?.as_str()
    }

    fn count(&self, key: &str) -> Option<u64> {
        let v = self.fields.get(key)?;
        v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
    }

    fn operation(&self) -> &str {
        self.str(OPERATION).unwrap_or_default()
    }

    /// The span's name: its `otel.name` (`chat gpt-4o-mini`), as OpenTelemetry would call it.
    pub(super) fn name(fields: &Map<String, Value>) -> Option<String> {
        fields.get(OPERATION)?;
        fields.get("otel.name")?.as_str().map(str::to_owned)
    }

    /// The call's error text, if the client marked the span failed.
    pub(super) fn error(&self) -> Option<String> {
        if self.str("otel.status_code")? != "error" {
            return None;
        }
        Some(
            self.str("otel.status_description")
                .or(self.str("error.type"))
                .unwrap_or("error")
                .to_owned(),
        )
    }

    fn model_dict(&self) -> Map<String, Value> {
        let mut dict = Map::new();
        if let Some(m) = self.str("gen_ai.request.model") {
            dict.insert("model".into(), m.into());
        }
        if let Some(p) = self
            .str("gen_ai.provider.name")
            .or(self.str("gen_ai.system"))
        {
            dict.insert("provider".into(), p.into());
        }
        dict
    }

    fn request_kwargs(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("gen_ai.request.")?, v)))
            .filter(|(k, _)| *k != "model")
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }

    /// The messages of `key` (a JSON string in the GenAI shape: `[{role, parts: [{type,
    /// content}]}]`), as chat messages.
    fn messages(&self, key: &str) -> Vec<ChatMessage> {
        let Some(Value::Array(list)) = self.str(key).and_then(|s| serde_json::from_str(s).ok())
        else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|m| {
                let role = m.get("role")?.as_str()?;
                let text: Vec<&str> = m
                    .get("parts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("content").and_then(Value::as_str))
                    .collect();
                let mut message = ChatMessage::new(role);
                if !text.is_empty() {
                    message = message.with_content(text.join("\n"));
                }
                Some(message)
            })
            .collect()
    }

    fn usage(&self) -> Option<TokenUsage> {
        let input = self.count("gen_ai.usage.input_tokens");
        let output = self.count("gen_ai.usage.output_tokens");
        if input.is_none() && output.is_none() {
            return None;
        }
        let mut usage = TokenUsage::new(input.unwrap_or(0), output.unwrap_or(0));
        if let Some(n) = self.count("gen_ai.usage.cache_read.input_tokens") {
            usage = usage.with_cache_read(n);
        }
        if let Some(n) = self
            .count("gen_ai.usage.reasoning.output_tokens")
            .or(self.count("gen_ai.usage.reasoning_tokens"))
        {
            usage = usage.with_reasoning(n);
        }
        Some(usage)
    }

    fn finish_reason(&self) -> Option<String> {
        match self.fields.get("gen_ai.response.finish_reasons")? {
            Value::String(s) => match serde_json::from_str::<Vec<String>>(s) {
                Ok(list) => list.into_iter().next(),
                Err(_) => Some(s.clone()),
            },
            Value::Array(list) => list.first()?.as_str().map(str::to_owned),
            _ => None,
        }
    }

    /// What the response events carry besides the message: the response's model, usage,
    /// finish reason, and the time to first chunk.
    fn response_parts(&self) -> (Option<TokenUsage>, Option<String>, Map<String, Value>) {
        let mut kwargs = Map::new();
        if let Some(t) = self
            .fields
            .get("gen_ai.response.time_to_first_chunk")
            .and_then(Value::as_f64)
        {
            kwargs.insert("time_to_first_chunk".into(), json!(t));
        }
        let model = self
            .str("gen_ai.response.model")
            .or(self.str("gen_ai.request.model"))
            .map(str::to_owned);
        (self.usage(), model, kwargs)
    }

    /// Emits the start event, in `span`, when the spanbus span opens.
    pub(super) fn start(&self, d: &Dispatcher, span: SpanContext) {
        let span = Some(span);
        let _ = match self.operation() {
            "chat" => d
                .event(LLMChatStartEvent {
                    messages: self.messages("gen_ai.input.messages"),
                    additional_kwargs: self.request_kwargs(),
                    model_dict: self.model_dict(),
                })
                .span(span)
                .now(),
            "text_completion" | "generate_content" => d
                .event(LLMCompletionStartEvent {
                    prompt: self
                        .messages("gen_ai.input.messages")
                        .into_iter()
                        .filter_map(|m| m.content)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    additional_kwargs: self.request_kwargs(),
                    model_dict: self.model_dict(),
                })
                .span(span)
                .now(),
            "embeddings" => d
                .event(EmbeddingStartEvent {
                    model_dict: self.model_dict(),
                })
                .span(span)
                .now(),
            "execute_tool" => d
                .event(AgentToolCallEvent {
                    arguments: self
                        .str("gen_ai.tool.call.arguments")
                        .unwrap_or_default()
                        .to_owned(),
                    tool: json!({
                        "name": self.str("gen_ai.tool.name"),
                        "description": self.str("gen_ai.tool.description"),
                        "call_id": self.str("gen_ai.tool.call.id"),
                    }),
                })
                .span(span)
                .now(),
            _ => Ok(()),
        };
    }

    /// Emits the end event, in `span`, when the `tracing` span closes.
    pub(super) fn end(&self, d: &Dispatcher, span: SpanContext) {
        let span = Some(span);
        let (usage, model, kwargs) = self.response_parts();
        let output = self.messages("gen_ai.output.messages");
        let _ = match self.operation() {
            "chat" => {
                let message = output
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| ChatMessage::new("assistant"));
                let mut response = ChatResponse::new(message);
                response.usage = usage;
                response.model = model;
                response.finish_reason = self.finish_reason();
                response.additional_kwargs = kwargs;
                d.event(LLMChatEndEvent {
                    messages: self.messages("gen_ai.input.messages"),
                    response: Some(response),
                })
                .span(span)
                .now()
            }
            "text_completion" | "generate_content" => {
                let text: Vec<String> = output.into_iter().filter_map(|m| m.content).collect();
                let mut response = CompletionResponse::new(text.join("\n"));
                response.usage = usage;
                response.model = model;
                response.finish_reason = self.finish_reason();
                response.additional_kwargs = kwargs;
                d.event(LLMCompletionEndEvent {
                    prompt: String::new(),
                    response,
                })
                .span(span)
                .now()
            }
            "embeddings" => d
                .event(EmbeddingEndEvent {
                    chunks: Vec::new(),
                    embeddings: Vec::new(),
                    token_count: usage.map(|u| u.input),
                })
                .span(span)
                .now(),
            _ => Ok(()),
        };
    }
}
