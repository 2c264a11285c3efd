//! OpenInference attributes from the LLM event catalog: what makes Arize Phoenix render a
//! span as an LLM call, a retrieval, an embedding and so on.
//!
//! [`OpenInference`] is a pure accumulator: feed it the events of one span in order
//! ([`observe`](OpenInference::observe), with the event's class name and its own fields as
//! JSON), then read the span kind and the attributes. The OTLP exporter
//! (`integrations::otlp`, feature `otlp`) does this for every span; it is public so it can be
//! tested and reused without an exporter.
//!
//! | events seen in the span | `openinference.span.kind` |
//! |---|---|
//! | `LLMChat*`, `LLMCompletion*`, `LLMPredict*`, `LLMStructuredPredict*`, `StreamChat*` | `LLM` |
//! | `Retrieval*` | `RETRIEVER` |
//! | `Embedding*`, `SparseEmbedding*` | `EMBEDDING` |
//! | `ReRank*` | `RERANKER` |
//! | `AgentToolCallEvent` | `TOOL` |
//! | `AgentRunStep*`, `AgentChatWithStep*` | `AGENT` |
//! | `Query*`, `Synthesize*`, `GetResponse*`, anything else, or no event | `CHAIN` |
//!
//! The first specific kind seen wins (a `CHAIN` event never overrides it). A span tag
//! [`SPAN_KIND`] overrides the choice.
//!
//! Values are read from the catalog's `serde_json::Value` fields in llama-index's shapes
//! (`ChatMessage` `{role, content}` or `{role, blocks: [{text}]}`, `ChatResponse`
//! `{message, raw: {usage}}`, `NodeWithScore` `{node: {id_, text, metadata}, score}`,
//! `QueryBundle` `{query_str}`, `Response` `{response}`) and in simple shapes (a plain string,
//! `{id, content, score}`, `{prompt_tokens, completion_tokens, total_tokens}`). A value of any
//! other shape is skipped, never an error.
//!
//! # Examples
//!
//! ```
//! use serde_json::json;
//! use spanbus::integrations::openinference::OpenInference;
//!
//! let mut oi = OpenInference::default();
//! oi.observe("LLMChatStartEvent", json!({
//!     "messages": [{"role": "user", "content": "What is a span?"}],
//!     "additional_kwargs": {},
//!     "model_dict": {"model": "gpt-4o-mini"},
//! }).as_object().unwrap());
//! oi.observe("LLMChatEndEvent", json!({
//!     "messages": [],
//!     "response": {"message": {"role": "assistant", "content": "A stretch of work."},
//!                  "raw": {"usage": {"prompt_tokens": 12, "completion_tokens": 5}}},
//! }).as_object().unwrap());
//!
//! assert_eq!(oi.kind(), "LLM");
//! let attrs = oi.attributes();
//! let get = |k: &str| attrs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
//! assert_eq!(get("llm.model_name"), Some(json!("gpt-4o-mini")));
//! assert_eq!(get("llm.output_messages.0.message.content"), Some(json!("A stretch of work.")));
//! assert_eq!(get("llm.token_count.total"), Some(json!(17)));
//! ```

use serde_json::{Map, Value};

/// The attribute (and span tag) that holds the OpenInference span kind.
pub const SPAN_KIND: &str = "openinference.span.kind";

/// The OpenInference span kinds spanbus chooses between.
pub const KINDS: [&str; 7] = [
    "LLM",
    "RETRIEVER",
    "EMBEDDING",
    "RERANKER",
    "CHAIN",
    "TOOL",
    "AGENT",
];

/// The OpenInference kind an event's class name implies, or `None` for an event that says
/// nothing about the span (for example `ExceptionEvent` or a user event).
pub fn kind_of_event(class_name: &str) -> Option<&'static str> {
    let starts = |p: &str| class_name.starts_with(p);
    Some(
        if starts("LLMChat")
            || starts("LLMCompletion")
            || starts("LLMPredict")
            || starts("LLMStructuredPredict")
            || starts("StreamChat")
        {
            "LLM"
        } else if starts("Retrieval") {
            "RETRIEVER"
        } else if starts("Embedding") || starts("SparseEmbedding") {
            "EMBEDDING"
        } else if starts("ReRank") {
            "RERANKER"
        } else if class_name == "AgentToolCallEvent" {
            "TOOL"
        } else if starts("AgentRunStep") || starts("AgentChatWithStep") {
            "AGENT"
        } else if starts("Query") || starts("Synthesize") || starts("GetResponse") {
            "CHAIN"
        } else {
            return None;
        },
    )
}

/// What one span's events say in OpenInference terms. See [the module docs](self).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenInference {
    kind: Option<&'static str>,
    model_name: Option<String>,
    invocation_parameters: Option<String>,
    input_messages: Option<Vec<(String, String)>>,
    output_messages: Option<Vec<(String, String)>>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    total_tokens: Option<i64>,
    documents: Option<Vec<Document>>,
    reranker_input: Option<Vec<Document>>,
    reranker_model: Option<String>,
    reranker_top_k: Option<i64>,
    embedding_model: Option<String>,
    embedding_texts: Option<Vec<String>>,
    tool_name: Option<String>,
    tool_description: Option<String>,
    input_value: Option<String>,
    output_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Document {
    id: Option<String>,
    content: Option<String>,
    score: Option<f64>,
    metadata: Option<String>,
}

impl OpenInference {
    /// Takes in one event of the span: its class name and its own fields.
    pub fn observe(&mut self, class_name: &str, fields: &Map<String, Value>) {
        if let Some(kind) = kind_of_event(class_name)
            && (self.kind.is_none() || self.kind == Some("CHAIN"))
        {
            self.kind = Some(kind);
        }
        let f = |k: &str| fields.get(k).filter(|v| !v.is_null());
        match class_name {
            "LLMChatStartEvent" => {
                self.model_from(f("model_dict"));
                self.params_from(f("additional_kwargs"));
                if let Some(msgs) = f("messages").and_then(messages) {
                    self.input_value = msgs.last().map(|(_, c)| c.clone());
                    self.input_messages = Some(msgs);
                }
            }
            "LLMChatEndEvent" => {
                if self.input_messages.is_none()
                    && let Some(msgs) = f("messages").and_then(messages)
                    && !msgs.is_empty()
                {
                    self.input_value = msgs.last().map(|(_, c)| c.clone());
                    self.input_messages = Some(msgs);
                }
                if let Some(resp) = f("response") {
                    let msg = resp
                        .get("message")
                        .and_then(message)
                        .or_else(|| message(resp));
                    if let Some(msg) = msg {
                        self.output_value = Some(msg.1.clone());
                        self.output_messages = Some(vec![msg]);
                    }
                    self.usage_from(resp);
                    self.model_from_response(resp);
                }
            }
            "LLMCompletionStartEvent" => {
                self.model_from(f("model_dict"));
                self.params_from(f("additional_kwargs"));
                if let Some(p) = f("prompt").and_then(Value::as_str) {
                    self.input_value = Some(p.to_owned());
                    self.input_messages = Some(vec![("user".into(), p.to_owned())]);
                }
            }
            "LLMCompletionEndEvent" => {
                if let Some(resp) = f("response") {
                    let text = resp.get("text").and_then(Value::as_str).or(resp.as_str());
                    if let Some(text) = text {
                        self.output_value = Some(text.to_owned());
                        self.output_messages = Some(vec![("assistant".into(), text.to_owned())]);
                    }
                    self.usage_from(resp);
                    self.model_from_response(resp);
                }
            }
            "LLMPredictStartEvent" | "LLMStructuredPredictStartEvent" => {
                if let Some(args) = f("template_args") {
                    self.input_value = Some(text_or_json(args));
                }
            }
            "LLMPredictEndEvent" | "LLMStructuredPredictEndEvent" => {
                if let Some(out) = f("output") {
                    self.output_value = Some(text_or_json(out));
                }
            }
            "EmbeddingStartEvent" | "SparseEmbeddingStartEvent" => {
                if let Some(m) = f("model_dict").and_then(model_name) {
                    self.embedding_model = Some(m);
                }
            }
            "EmbeddingEndEvent" | "SparseEmbeddingEndEvent" => {
                if let Some(chunks) = f("chunks").and_then(Value::as_array) {
                    self.embedding_texts = Some(
                        chunks
                            .iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect(),
                    );
                }
                if let Some(n) = f("token_count").and_then(Value::as_i64) {
                    self.total_tokens = Some(n);
                }
            }
            "RetrievalStartEvent" | "RetrievalEndEvent" => {
                if let Some(q) = f("str_or_query_bundle") {
                    self.input_value = Some(query_text(q));
                }
                if let Some(nodes) = f("nodes").and_then(Value::as_array) {
                    self.documents = Some(nodes.iter().filter_map(document).collect());
                }
            }
            "ReRankStartEvent" => {
                if let Some(q) = f("query") {
                    self.input_value = Some(query_text(q));
                }
                if let Some(m) = f("model_name").and_then(Value::as_str) {
                    self.reranker_model = Some(m.to_owned());
                }
                self.reranker_top_k = f("top_n").and_then(Value::as_i64);
                if let Some(nodes) = f("nodes").and_then(Value::as_array) {
                    self.reranker_input = Some(nodes.iter().filter_map(document).collect());
                }
            }
            "ReRankEndEvent" => {
                if let Some(nodes) = f("nodes").and_then(Value::as_array) {
                    self.documents = Some(nodes.iter().filter_map(document).collect());
                }
            }
            "QueryStartEvent" | "SynthesizeStartEvent" => {
                if let Some(q) = f("query") {
                    self.input_value = Some(query_text(q));
                }
            }
            "QueryEndEvent" | "SynthesizeEndEvent" => {
                if self.input_value.is_none()
                    && let Some(q) = f("query")
                {
                    self.input_value = Some(query_text(q));
                }
                if let Some(r) = f("response") {
                    self.output_value = Some(response_text(r));
                }
            }
            "AgentToolCallEvent" => {
                if let Some(a) = f("arguments").and_then(Value::as_str) {
                    self.input_value = Some(a.to_owned());
                }
                if let Some(tool) = f("tool") {
                    self.tool_name = tool
                        .get("name")
                        .and_then(Value::as_str)
                        .or(tool.as_str())
                        .map(str::to_owned);
                    self.tool_description = tool
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
            }
            "AgentRunStepStartEvent" => {
                if let Some(i) = f("input").and_then(Value::as_str) {
                    self.input_value = Some(i.to_owned());
                }
            }
            "AgentRunStepEndEvent" => {
                if let Some(o) = f("step_output") {
                    let out = o.get("output").unwrap_or(o);
                    self.output_value = Some(response_text(out));
                }
            }
            "AgentChatWithStepStartEvent" => {
                if let Some(m) = f("user_msg").and_then(Value::as_str) {
                    self.input_value = Some(m.to_owned());
                }
            }
            "AgentChatWithStepEndEvent" => {
                if let Some(r) = f("response") {
                    self.output_value = Some(response_text(r));
                }
            }
            _ => {}
        }
    }

    /// The span kind the events imply: one of [`KINDS`], `CHAIN` when nothing more specific
    /// was seen.
    pub fn kind(&self) -> &'static str {
        self.kind.unwrap_or("CHAIN")
    }

    /// Whether [`input.value`](Self::attributes) was found in the events.
    pub fn has_input(&self) -> bool {
        self.input_value.is_some()
    }

    /// The span's input as text (a prompt's last message, a query, tool arguments, ...).
    pub(crate) fn input_value(&self) -> Option<&str> {
        self.input_value.as_deref()
    }

    /// The span's output as text (a response, ...).
    pub(crate) fn output_value(&self) -> Option<&str> {
        self.output_value.as_deref()
    }

    /// The prompt's messages as `(role, content)`.
    pub(crate) fn input_messages(&self) -> Option<&[(String, String)]> {
        self.input_messages.as_deref()
    }

    /// The response's messages as `(role, content)`.
    pub(crate) fn output_messages(&self) -> Option<&[(String, String)]> {
        self.output_messages.as_deref()
    }

    /// The called tool's name and description.
    pub(crate) fn tool(&self) -> (Option<&str>, Option<&str>) {
        (self.tool_name.as_deref(), self.tool_description.as_deref())
    }

    /// The reranking model.
    pub(crate) fn reranker_model(&self) -> Option<&str> {
        self.reranker_model.as_deref()
    }

    /// The retrieved (or reranked) documents' ids and scores, in order.
    pub(crate) fn document_ids_and_scores(&self) -> Vec<(Option<&str>, Option<f64>)> {
        self.documents
            .iter()
            .flatten()
            .map(|d| (d.id.as_deref(), d.score))
            .collect()
    }

    /// Whether [`output.value`](Self::attributes) was found in the events.
    pub fn has_output(&self) -> bool {
        self.output_value.is_some()
    }

    /// The OpenInference attributes, flat dotted keys as Phoenix expects (the kind is not
    /// included: see [`kind`](Self::kind)). Numbers are JSON numbers, text is JSON strings.
    pub fn attributes(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = Vec::new();
        let mut put = |k: String, v: Value| out.push((k, v));
        if let Some(m) = &self.model_name {
            put("llm.model_name".into(), m.as_str().into());
        }
        if let Some(p) = &self.invocation_parameters {
            put("llm.invocation_parameters".into(), p.as_str().into());
        }
        for (prefix, msgs) in [
            ("llm.input_messages", &self.input_messages),
            ("llm.output_messages", &self.output_messages),
        ] {
            for (i, (role, content)) in msgs.iter().flatten().enumerate() {
                put(format!("{prefix}.{i}.message.role"), role.as_str().into());
                put(
                    format!("{prefix}.{i}.message.content"),
                    content.as_str().into(),
                );
            }
        }
        let total = self
            .total_tokens
            .or(match (self.prompt_tokens, self.completion_tokens) {
                (Some(p), Some(c)) => Some(p + c),
                _ => None,
            });
        for (k, v) in [
            ("llm.token_count.prompt", self.prompt_tokens),
            ("llm.token_count.completion", self.completion_tokens),
            ("llm.token_count.total", total),
        ] {
            if let Some(v) = v {
                put(k.into(), v.into());
            }
        }
        for (prefix, docs) in [
            ("retrieval.documents", &self.documents),
            ("reranker.input_documents", &self.reranker_input),
        ] {
            let prefix = match (prefix, self.kind()) {
                ("retrieval.documents", "RERANKER") => "reranker.output_documents",
                (p, _) => p,
            };
            for (i, d) in docs.iter().flatten().enumerate() {
                let key = |f: &str| format!("{prefix}.{i}.document.{f}");
                if let Some(id) = &d.id {
                    put(key("id"), id.as_str().into());
                }
                if let Some(c) = &d.content {
                    put(key("content"), c.as_str().into());
                }
                if let Some(s) = d.score {
                    put(key("score"), s.into());
                }
                if let Some(m) = &d.metadata {
                    put(key("metadata"), m.as_str().into());
                }
            }
        }
        if let Some(m) = &self.reranker_model {
            put("reranker.model_name".into(), m.as_str().into());
        }
        if let Some(k) = self.reranker_top_k {
            put("reranker.top_k".into(), k.into());
        }
        if let Some(m) = &self.embedding_model {
            put("embedding.model_name".into(), m.as_str().into());
        }
        for (i, t) in self.embedding_texts.iter().flatten().enumerate() {
            put(
                format!("embedding.embeddings.{i}.embedding.text"),
                t.as_str().into(),
            );
        }
        if let Some(n) = &self.tool_name {
            put("tool.name".into(), n.as_str().into());
        }
        if let Some(d) = &self.tool_description {
            put("tool.description".into(), d.as_str().into());
        }
        if let Some(v) = &self.input_value {
            put("input.value".into(), v.as_str().into());
        }
        if let Some(v) = &self.output_value {
            put("output.value".into(), v.as_str().into());
        }
        out
    }

    fn model_from(&mut self, model_dict: Option<&Value>) {
        if let Some(m) = model_dict.and_then(model_name) {
            self.model_name = Some(m);
        }
    }

    fn model_from_response(&mut self, resp: &Value) {
        if self.model_name.is_none()
            && let Some(m) = resp.pointer("/raw/model").and_then(Value::as_str)
        {
            self.model_name = Some(m.to_owned());
        }
    }

    fn params_from(&mut self, kwargs: Option<&Value>) {
        if let Some(kw) = kwargs.and_then(Value::as_object)
            && !kw.is_empty()
        {
            self.invocation_parameters = Some(Value::Object(kw.clone()).to_string());
        }
    }

    fn usage_from(&mut self, resp: &Value) {
        let candidates = [
            resp.pointer("/raw/usage"),
            resp.get("usage"),
            resp.get("additional_kwargs"),
            Some(resp),
        ];
        for usage in candidates.into_iter().flatten() {
            let n = |keys: &[&str]| {
                keys.iter()
                    .find_map(|k| usage.get(*k).and_then(Value::as_i64))
            };
            let prompt = n(&["prompt_tokens", "input_tokens"]);
            let completion = n(&["completion_tokens", "output_tokens"]);
            let total = n(&["total_tokens"]);
            if prompt.is_some() || completion.is_some() || total.is_some() {
                self.prompt_tokens = prompt;
                self.completion_tokens = completion;
                self.total_tokens = total;
                return;
            }
        }
    }
}

fn model_name(model_dict: &Value) -> Option<String> {
    ["model", "model_name"]
        .iter()
        .find_map(|k| model_dict.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// A chat message as `(role, content)`: `{role, content}` with string content, or
/// llama-index's `{role, blocks: [{text}, ...]}`.
fn message(v: &Value) -> Option<(String, String)> {
    let role = v.get("role")?.as_str()?.to_owned();
    let content = match v.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            let blocks = v.get("blocks")?.as_array()?;
            let texts: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() && v.get("content").is_some_and(Value::is_null) {
                String::new()
            } else {
                texts.join("")
            }
        }
    };
    Some((role, content))
}

fn messages(v: &Value) -> Option<Vec<(String, String)>> {
    Some(v.as_array()?.iter().filter_map(message).collect())
}

/// A retrieved node: llama-index's `NodeWithScore` or a simple `{id, content, score}`.
fn document(v: &Value) -> Option<Document> {
    let node = v.get("node").unwrap_or(v);
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| node.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
    };
    let doc = Document {
        id: text(&["id_", "id", "node_id"]),
        content: text(&["text", "content"]),
        score: v.get("score").and_then(Value::as_f64),
        metadata: node
            .get("metadata")
            .filter(|m| m.as_object().is_some_and(|m| !m.is_empty()))
            .map(Value::to_string),
    };
    (doc.id.is_some() || doc.content.is_some()).then_some(doc)
}

/// A query as text: a string, or a `QueryBundle`'s `query_str`.
fn query_text(v: &Value) -> String {
    v.get("query_str")
        .and_then(Value::as_str)
        .map_or_else(|| text_or_json(v), str::to_owned)
}

/// A response as text: a string, or a `Response`'s `response` / a message's `content`.
fn response_text(v: &Value) -> String {
    v.get("response")
        .and_then(Value::as_str)
        .or_else(|| v.pointer("/message/content").and_then(Value::as_str))
        .or_else(|| v.get("content").and_then(Value::as_str))
        .map_or_else(|| text_or_json(v), str::to_owned)
}

fn text_or_json(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
