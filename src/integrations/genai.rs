//! The OpenTelemetry GenAI semantic conventions (`gen_ai.*`) of a span, from the same readings
//! of its events as the [OpenInference](super::openinference) attributes: what Langfuse, MLflow,
//! Datadog, Grafana and the OpenTelemetry GenAI instrumentations read.
//!
//! [`GenAiSpan::of`] is a pure function of one span: its OpenInference kind, its
//! [`LlmSummary`] (model, provider, tokens, finish reason, time to first token), its
//! [`OpenInference`] reading (tool, reranker, messages, documents), its tags and the value its
//! `#[span(ret)]` recorded. The OTLP exporter (`integrations::otlp`, feature `otlp`) calls it for
//! every span; it is public so the mapping can be tested and reused without an exporter.
//!
//! # Versions and `OTEL_SEMCONV_STABILITY_OPT_IN`
//!
//! The GenAI conventions are still in development, and their names change between releases
//! (v1.37.0 renamed `gen_ai.system` to `gen_ai.provider.name`). spanbus follows the
//! conventions' transition plan as the OpenTelemetry SDKs' instrumentations do:
//!
//! - by default it writes the names of the release it pins, [`SemconvVersion::PINNED`]
//!   (**v1.41.1**, the last release of the GenAI conventions in the main semantic-conventions
//!   repository; they have their own repository since v1.42.0);
//! - with `gen_ai_latest_experimental` in the comma-separated list
//!   `OTEL_SEMCONV_STABILITY_OPT_IN` it writes [`SemconvVersion::Latest`], the latest
//!   experimental names spanbus knows;
//! - a builder can ask for a version explicitly, including [`SemconvVersion::V1_36`] (the last
//!   release with `gen_ai.system`) for a backend that reads only the old names.
//!
//! Every name spanbus writes is in one table ([`SemconvVersion::name`], one row per
//! [`Attr`], one column per version; operation names in [`SemconvVersion::operation`]), so
//! the next rename is a one-line change.
//!
//! # What each span gets
//!
//! | OpenInference kind | `gen_ai.operation.name` | span name | span kind |
//! |---|---|---|---|
//! | `LLM` | `chat` or `text_completion` (from the events) | `{operation} {model}` | CLIENT |
//! | `EMBEDDING` | `embeddings` | `embeddings {model}` | CLIENT |
//! | `RETRIEVER` | `retrieval` (from v1.40) | `retrieval {gen_ai.data_source.id}` | CLIENT |
//! | `RERANKER` | `rerank` (no predefined value fits; the list is open) | `rerank {model}` | CLIENT |
//! | `TOOL` | `execute_tool` | `execute_tool {gen_ai.tool.name}` | INTERNAL |
//! | `AGENT` | `invoke_agent` | `invoke_agent {gen_ai.agent.name}` | INTERNAL |
//! | `CHAIN` | — (no GenAI attributes) | unchanged | INTERNAL |
//!
//! A part of the name that is not known is left out (`retrieval`, `invoke_agent`). The data
//! source, agent name and tool call id come from span tags with the attributes' names
//! (`gen_ai.data_source.id`, `gen_ai.agent.name`, `gen_ai.tool.call.id`): the event catalog
//! does not carry them. A `session.id` tag is also the span's `gen_ai.conversation.id`.
//!
//! Always written when known: operation, provider (`gen_ai.provider.name`, from the request's
//! `model_dict` — `provider`, else `class_name` — normalized to the conventions' well-known
//! values by [`provider_name`]; left out when nothing names it), request and response model,
//! input, output, cache-read and reasoning token counts, finish reasons (a string array), time
//! to first chunk (seconds) and `gen_ai.request.stream` for a streamed call, tool name and
//! description, the retrieved documents' ids and scores (`gen_ai.retrieval.documents`, JSON).
//!
//! Message content, written only when the exporter captures content (see
//! [`is_content`]): `gen_ai.input.messages` and `gen_ai.output.messages` (JSON in the
//! conventions' schema: `[{"role", "parts": [{"type": "text", "content"}]}]`, the output's
//! `finish_reason` when known), `gen_ai.tool.call.arguments` and `gen_ai.tool.call.result`,
//! `gen_ai.retrieval.query.text`.
//!
//! # Examples
//!
//! ```
//! use serde_json::json;
//! use spanbus::context::Tags;
//! use spanbus::integrations::genai::{Attr, GenAiSpan, SemconvVersion};
//! use spanbus::integrations::openinference::OpenInference;
//! use spanbus::llm::LlmSummary;
//!
//! let start = json!({"model_dict": {"model": "gpt-4o-mini", "class_name": "openai_llm"},
//!                    "messages": [{"role": "user", "content": "Hi"}], "additional_kwargs": {}});
//! let end = json!({"messages": [], "response": {
//!     "message": {"role": "assistant", "content": "Hello"},
//!     "raw": {"model": "gpt-4o-mini-2024-07-18",
//!             "usage": {"prompt_tokens": 9, "completion_tokens": 2},
//!             "choices": [{"finish_reason": "stop"}]}}});
//! let (mut llm, mut oi) = (LlmSummary::default(), OpenInference::default());
//! for (class, fields) in [("LLMChatStartEvent", &start), ("LLMChatEndEvent", &end)] {
//!     llm.observe(class, chrono::Utc::now(), fields.as_object().unwrap());
//!     oi.observe(class, fields.as_object().unwrap());
//! }
//!
//! let v = SemconvVersion::PINNED;
//! let span = GenAiSpan::of(v, oi.kind(), &llm, &oi, &Tags::new(), None).unwrap();
//! assert_eq!(span.name, "chat gpt-4o-mini");
//! assert!(span.client);
//! let get = |a: Attr| span.get(v.name(a).unwrap()).cloned();
//! assert_eq!(get(Attr::ProviderName), Some(json!("openai")));
//! assert_eq!(get(Attr::ResponseModel), Some(json!("gpt-4o-mini-2024-07-18")));
//! assert_eq!(get(Attr::InputTokens), Some(json!(9)));
//! assert_eq!(get(Attr::FinishReasons), Some(json!(["stop"])));
//! // Content is there for the exporter to keep or drop (it drops it unless captured).
//! let input: serde_json::Value =
//!     serde_json::from_str(get(Attr::InputMessages).unwrap().as_str().unwrap()).unwrap();
//! assert_eq!(input, json!([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]));
//! ```

use serde_json::{Value, json};

use crate::context::Tags;
use crate::integrations::openinference::OpenInference;
use crate::llm::LlmSummary;

/// The environment variable that selects the conventions' version, as a comma-separated list
/// of opt-ins (the OpenTelemetry SDKs' name).
pub const STABILITY_OPT_IN_ENV: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";

/// The opt-in in [`STABILITY_OPT_IN_ENV`] that selects [`SemconvVersion::Latest`].
pub const LATEST_EXPERIMENTAL: &str = "gen_ai_latest_experimental";

/// Which release of the GenAI conventions names the attributes. See [the module
/// docs](self#versions-and-otel_semconv_stability_opt_in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SemconvVersion {
    /// v1.36.0: the provider is `gen_ai.system`; no cache-read or reasoning token counts, no
    /// retrieval operation, no time to first chunk.
    V1_36,
    /// v1.41.1, the version spanbus pins (the default).
    #[default]
    V1_41,
    /// The latest experimental names spanbus knows (`gen_ai_latest_experimental`): the
    /// development head of the GenAI conventions (open-telemetry/semantic-conventions-genai),
    /// which has made no release yet; today the names spanbus writes are those of v1.41.1.
    Latest,
}

/// An attribute of the GenAI conventions that spanbus writes; its name in each version is
/// [`SemconvVersion::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Attr {
    /// `gen_ai.operation.name`.
    OperationName,
    /// `gen_ai.provider.name` (v1.36: `gen_ai.system`).
    ProviderName,
    /// `gen_ai.request.model`.
    RequestModel,
    /// `gen_ai.response.model`.
    ResponseModel,
    /// `gen_ai.request.stream`.
    RequestStream,
    /// `gen_ai.usage.input_tokens`.
    InputTokens,
    /// `gen_ai.usage.output_tokens`.
    OutputTokens,
    /// `gen_ai.usage.cache_read.input_tokens`.
    CacheReadInputTokens,
    /// `gen_ai.usage.reasoning.output_tokens`.
    ReasoningOutputTokens,
    /// `gen_ai.response.finish_reasons`.
    FinishReasons,
    /// `gen_ai.response.time_to_first_chunk` (seconds).
    TimeToFirstChunk,
    /// `gen_ai.tool.name`.
    ToolName,
    /// `gen_ai.tool.description`.
    ToolDescription,
    /// `gen_ai.tool.call.id`.
    ToolCallId,
    /// `gen_ai.tool.call.arguments` (content).
    ToolCallArguments,
    /// `gen_ai.tool.call.result` (content).
    ToolCallResult,
    /// `gen_ai.agent.name`.
    AgentName,
    /// `gen_ai.conversation.id`.
    ConversationId,
    /// `gen_ai.data_source.id`.
    DataSourceId,
    /// `gen_ai.input.messages` (content).
    InputMessages,
    /// `gen_ai.output.messages` (content).
    OutputMessages,
    /// `gen_ai.retrieval.query.text` (content).
    RetrievalQueryText,
    /// `gen_ai.retrieval.documents` (ids and scores).
    RetrievalDocuments,
}

/// The GenAI operations spanbus writes; the value in each version is
/// [`SemconvVersion::operation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A chat call.
    Chat,
    /// A text completion.
    TextCompletion,
    /// An embeddings call.
    Embeddings,
    /// A retrieval.
    Retrieval,
    /// A reranking (no predefined value; spanbus writes `rerank`).
    Rerank,
    /// A tool call.
    ExecuteTool,
    /// An agent step.
    InvokeAgent,
}

/// A row of [`NAMES`] whose name is the same in every version.
const fn all(name: &'static str) -> [Option<&'static str>; 3] {
    [Some(name), Some(name), Some(name)]
}

/// A row of [`NAMES`] for an attribute defined from v1.37 on.
const fn since_1_37(name: &'static str) -> [Option<&'static str>; 3] {
    [None, Some(name), Some(name)]
}

/// THE table: every GenAI attribute name spanbus writes. Columns: v1.36.0, v1.41.1, latest
/// experimental; `None` where the version does not define the attribute (nothing is written).
/// A rename in the conventions is a change of one cell here.
#[rustfmt::skip]
const NAMES: [(Attr, [Option<&str>; 3]); 23] = [
    (Attr::OperationName,         all("gen_ai.operation.name")),
    (Attr::ProviderName,          [Some("gen_ai.system"), Some("gen_ai.provider.name"), Some("gen_ai.provider.name")]),
    (Attr::RequestModel,          all("gen_ai.request.model")),
    (Attr::ResponseModel,         all("gen_ai.response.model")),
    (Attr::RequestStream,         [None, Some("gen_ai.request.stream"), Some("gen_ai.request.stream")]),
    (Attr::InputTokens,           all("gen_ai.usage.input_tokens")),
    (Attr::OutputTokens,          all("gen_ai.usage.output_tokens")),
    (Attr::CacheReadInputTokens,  [None, Some("gen_ai.usage.cache_read.input_tokens"), Some("gen_ai.usage.cache_read.input_tokens")]),
    (Attr::ReasoningOutputTokens, [None, Some("gen_ai.usage.reasoning.output_tokens"), Some("gen_ai.usage.reasoning.output_tokens")]),
    (Attr::FinishReasons,         all("gen_ai.response.finish_reasons")),
    (Attr::TimeToFirstChunk,      [None, Some("gen_ai.response.time_to_first_chunk"), Some("gen_ai.response.time_to_first_chunk")]),
    (Attr::ToolName,              all("gen_ai.tool.name")),
    (Attr::ToolDescription,       all("gen_ai.tool.description")),
    (Attr::ToolCallId,            all("gen_ai.tool.call.id")),
    (Attr::ToolCallArguments,     [None, Some("gen_ai.tool.call.arguments"), Some("gen_ai.tool.call.arguments")]),
    (Attr::ToolCallResult,        [None, Some("gen_ai.tool.call.result"), Some("gen_ai.tool.call.result")]),
    (Attr::AgentName,             all("gen_ai.agent.name")),
    (Attr::ConversationId,        all("gen_ai.conversation.id")),
    (Attr::DataSourceId,          all("gen_ai.data_source.id")),
    (Attr::InputMessages,         since_1_37("gen_ai.input.messages")),
    (Attr::OutputMessages,        since_1_37("gen_ai.output.messages")),
    (Attr::RetrievalQueryText,    [None, Some("gen_ai.retrieval.query.text"), Some("gen_ai.retrieval.query.text")]),
    (Attr::RetrievalDocuments,    [None, Some("gen_ai.retrieval.documents"), Some("gen_ai.retrieval.documents")]),
];

/// The operation names, same columns as [`NAMES`]; the last field says whether the span is a
/// call out of the process (span kind CLIENT) or not (INTERNAL).
#[rustfmt::skip]
const OPERATIONS: [(Operation, [Option<&str>; 3], bool); 7] = [
    (Operation::Chat,           all("chat"),                                      true),
    (Operation::TextCompletion, all("text_completion"),                           true),
    (Operation::Embeddings,     all("embeddings"),                                true),
    (Operation::Retrieval,      [None, Some("retrieval"), Some("retrieval")],     true),
    (Operation::Rerank,         all("rerank"),                                    true),
    (Operation::ExecuteTool,    all("execute_tool"),                              false),
    (Operation::InvokeAgent,    all("invoke_agent"),                              false),
];

/// The attributes whose values are message content (see [`is_content`]).
const CONTENT_ATTRS: [Attr; 5] = [
    Attr::InputMessages,
    Attr::OutputMessages,
    Attr::ToolCallArguments,
    Attr::ToolCallResult,
    Attr::RetrievalQueryText,
];

/// Keys outside the GenAI table whose values are message content: OpenInference's, the
/// conventions' older content attributes, and spanbus's own (`Exact`, a `Prefix`, or
/// `Around(prefix, suffix)` for a numbered list).
#[rustfmt::skip]
const CONTENT_KEYS: [Key; 17] = [
    Key::Exact("input.value"),
    Key::Exact("output.value"),
    Key::Prefix("llm.input_messages."),
    Key::Prefix("llm.output_messages."),
    Key::Prefix("llm.prompts."),
    Key::Prefix("llm.prompt_template."),
    Key::Around("retrieval.documents.", ".document.content"),
    Key::Around("retrieval.documents.", ".document.metadata"),
    Key::Prefix("reranker.query"),
    Key::Around("reranker.input_documents.", ".document.content"),
    Key::Around("reranker.input_documents.", ".document.metadata"),
    Key::Around("reranker.output_documents.", ".document.content"),
    Key::Around("reranker.output_documents.", ".document.metadata"),
    Key::Around("embedding.embeddings.", ".embedding.text"),
    Key::Prefix("gen_ai.prompt"),
    Key::Prefix("gen_ai.completion"),
    Key::Prefix("spanbus.args"),
];

enum Key {
    Exact(&'static str),
    Prefix(&'static str),
    Around(&'static str, &'static str),
}

impl Key {
    fn matches(&self, key: &str) -> bool {
        match self {
            Key::Exact(k) => key == *k,
            Key::Prefix(p) => key.starts_with(p),
            Key::Around(p, s) => {
                key.len() > p.len() + s.len() && key.starts_with(p) && key.ends_with(s)
            }
        }
    }
}

/// Whether the attribute `key` holds message content — prompts, responses, tool arguments and
/// results, retrieved text, embedded text, a span's captured arguments or return value — which
/// the OTLP exporter exports only when content capture is on. Counts, models, timings, names,
/// ids, scores and statuses are not content.
///
/// The keys: `input.value`, `output.value`, `llm.input_messages.*`, `llm.output_messages.*`,
/// `llm.prompts.*`, `llm.prompt_template.*`, the `content` and `metadata` of
/// `retrieval.documents.*` and `reranker.{input,output}_documents.*`, `reranker.query`,
/// `embedding.embeddings.*.embedding.text`, `gen_ai.prompt*`, `gen_ai.completion*`, the GenAI
/// content attributes of every version (`gen_ai.input.messages`, `gen_ai.output.messages`,
/// `gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`, `gen_ai.retrieval.query.text`),
/// `spanbus.args` and `spanbus.args.*`.
///
/// # Examples
///
/// ```
/// use spanbus::integrations::genai::is_content;
///
/// assert!(is_content("llm.input_messages.0.message.content"));
/// assert!(is_content("gen_ai.input.messages"));
/// assert!(is_content("spanbus.args.question"));
/// assert!(!is_content("llm.token_count.prompt"));
/// assert!(!is_content("retrieval.documents.0.document.id"));
/// ```
pub fn is_content(key: &str) -> bool {
    CONTENT_KEYS.iter().any(|k| k.matches(key))
        || NAMES.iter().any(|(attr, names)| {
            CONTENT_ATTRS.contains(attr) && names.iter().flatten().any(|n| *n == key)
        })
}

impl SemconvVersion {
    /// The version spanbus writes unless told otherwise.
    pub const PINNED: SemconvVersion = SemconvVersion::V1_41;

    /// The version an [`OTEL_SEMCONV_STABILITY_OPT_IN`](STABILITY_OPT_IN_ENV) value selects:
    /// [`Latest`](Self::Latest) when its comma-separated list holds
    /// `gen_ai_latest_experimental` (spaces and case ignored), else [`PINNED`](Self::PINNED).
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::integrations::genai::SemconvVersion;
    ///
    /// assert_eq!(SemconvVersion::from_opt_in(None), SemconvVersion::PINNED);
    /// assert_eq!(SemconvVersion::from_opt_in(Some("http, gen_ai_latest_experimental")), SemconvVersion::Latest);
    /// assert_eq!(SemconvVersion::from_opt_in(Some("database")), SemconvVersion::PINNED);
    /// ```
    pub fn from_opt_in(value: Option<&str>) -> SemconvVersion {
        let latest = value.is_some_and(|v| {
            v.split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(LATEST_EXPERIMENTAL))
        });
        if latest {
            SemconvVersion::Latest
        } else {
            SemconvVersion::PINNED
        }
    }

    /// The version [`STABILITY_OPT_IN_ENV`] selects in this process (see
    /// [`from_opt_in`](Self::from_opt_in)).
    pub fn from_env() -> SemconvVersion {
        Self::from_opt_in(std::env::var(STABILITY_OPT_IN_ENV).ok().as_deref())
    }

    /// The release this version names: `1.36.0`, `1.41.1`, or `latest experimental`.
    pub fn release(self) -> &'static str {
        match self {
            SemconvVersion::V1_36 => "1.36.0",
            SemconvVersion::V1_41 => "1.41.1",
            SemconvVersion::Latest => "latest experimental",
        }
    }

    fn column(self) -> usize {
        match self {
            SemconvVersion::V1_36 => 0,
            SemconvVersion::V1_41 => 1,
            SemconvVersion::Latest => 2,
        }
    }

    /// The name of `attr` in this version, `None` where the version does not define it.
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::integrations::genai::{Attr, SemconvVersion};
    ///
    /// assert_eq!(SemconvVersion::V1_36.name(Attr::ProviderName), Some("gen_ai.system"));
    /// assert_eq!(SemconvVersion::V1_41.name(Attr::ProviderName), Some("gen_ai.provider.name"));
    /// assert_eq!(SemconvVersion::V1_36.name(Attr::CacheReadInputTokens), None);
    /// ```
    pub fn name(self, attr: Attr) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(a, _)| *a == attr)
            .and_then(|(_, names)| names[self.column()])
    }

    /// The value of `gen_ai.operation.name` for `op` in this version, `None` where the
    /// version defines none that fits.
    pub fn operation(self, op: Operation) -> Option<&'static str> {
        OPERATIONS
            .iter()
            .find(|(o, _, _)| *o == op)
            .and_then(|(_, names, _)| names[self.column()])
    }
}

impl Operation {
    /// Whether a span of this operation calls out of the process (span kind CLIENT: model
    /// calls, embeddings, retrievals, rerankings) rather than running in it (INTERNAL: tools,
    /// agents).
    pub fn is_client(self) -> bool {
        OPERATIONS
            .iter()
            .find(|(o, _, _)| *o == self)
            .is_some_and(|(_, _, client)| *client)
    }
}

/// The provider's name in the conventions' well-known values, from what a `model_dict` says
/// (`provider`, or llama-index's `class_name` such as `openai_llm` or `OpenAIEmbedding`):
/// `openai`, `azure.ai.openai`, `anthropic`, `aws.bedrock`, `gcp.vertex_ai`, `gcp.gemini`,
/// `cohere`, `mistral_ai`, `groq`, `deepseek`, `perplexity`, `x_ai`, `ibm.watsonx.ai`;
/// anything else lower-cased as given.
///
/// # Examples
///
/// ```
/// use spanbus::integrations::genai::provider_name;
///
/// assert_eq!(provider_name("openai_llm"), "openai");
/// assert_eq!(provider_name("AzureOpenAI"), "azure.ai.openai");
/// assert_eq!(provider_name("Anthropic"), "anthropic");
/// assert_eq!(provider_name("my-gateway"), "my-gateway");
/// ```
pub fn provider_name(given: &str) -> String {
    let lower = given.trim().to_ascii_lowercase();
    let has = |s: &str| lower.contains(s);
    let known = if has("azure") && has("openai") {
        "azure.ai.openai"
    } else if has("azure") {
        "azure.ai.inference"
    } else if has("bedrock") {
        "aws.bedrock"
    } else if has("vertex") {
        "gcp.vertex_ai"
    } else if has("gemini") || has("google") {
        "gcp.gemini"
    } else if has("openai") {
        "openai"
    } else if has("anthropic") {
        "anthropic"
    } else if has("cohere") {
        "cohere"
    } else if has("mistral") {
        "mistral_ai"
    } else if has("groq") {
        "groq"
    } else if has("deepseek") {
        "deepseek"
    } else if has("perplexity") {
        "perplexity"
    } else if has("xai") || has("x_ai") || has("grok") {
        "x_ai"
    } else if has("watsonx") {
        "ibm.watsonx.ai"
    } else {
        return lower;
    };
    known.to_owned()
}

/// What the GenAI conventions say of one span. See [the module docs](self).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GenAiSpan {
    /// The operation.
    pub operation: Operation,
    /// The span's name in the conventions (`chat gpt-4o-mini`, `execute_tool search`, ...).
    pub name: String,
    /// Whether the span kind is CLIENT (else INTERNAL).
    pub client: bool,
    /// The attributes, names of the chosen version; content ones included (see
    /// [`is_content`]).
    pub attributes: Vec<(String, Value)>,
}

impl GenAiSpan {
    /// The GenAI reading of a span of OpenInference kind `kind` (the events', or a tag's) with
    /// these readings of its events, its tags and the value its `#[span(ret)]` recorded;
    /// `None` for a `CHAIN` span (and any kind the conventions have no operation for in
    /// `version`).
    pub fn of(
        version: SemconvVersion,
        kind: &str,
        llm: &LlmSummary,
        oi: &OpenInference,
        tags: &Tags,
        result: Option<&Value>,
    ) -> Option<GenAiSpan> {
        let operation = match kind {
            "LLM" => match llm.operation.as_deref() {
                Some("text_completion") => Operation::TextCompletion,
                _ => Operation::Chat,
            },
            "EMBEDDING" => Operation::Embeddings,
            "RETRIEVER" => Operation::Retrieval,
            "RERANKER" => Operation::Rerank,
            "TOOL" => Operation::ExecuteTool,
            "AGENT" => Operation::InvokeAgent,
            _ => return None,
        };
        let op_name = version.operation(operation)?;
        let tag = |k: &str| tags.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut attributes: Vec<(String, Value)> = Vec::new();
        let mut put = |attr: Attr, value: Value| {
            if let Some(name) = version.name(attr) {
                attributes.push((name.to_owned(), value));
            }
        };
        put(Attr::OperationName, op_name.into());

        let request_model = llm
            .request_model
            .clone()
            .or_else(|| oi.reranker_model().map(str::to_owned))
            .or_else(|| llm.model.clone());
        if let Some(p) = &llm.provider {
            put(Attr::ProviderName, provider_name(p).into());
        }
        if let Some(m) = &request_model {
            put(Attr::RequestModel, m.as_str().into());
        }
        if let Some(m) = &llm.response_model {
            put(Attr::ResponseModel, m.as_str().into());
        }
        if llm.chunks > 0 {
            put(Attr::RequestStream, true.into());
        }
        for (attr, count) in [
            (Attr::InputTokens, llm.input_tokens),
            (Attr::OutputTokens, llm.output_tokens),
            (Attr::CacheReadInputTokens, llm.cache_read_tokens),
            (Attr::ReasoningOutputTokens, llm.reasoning_tokens),
        ] {
            if let Some(n) = count {
                put(attr, n.into());
            }
        }
        if let Some(r) = &llm.finish_reason {
            put(Attr::FinishReasons, json!([r]));
        }
        if let Some(t) = llm.ttft {
            let seconds = t.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            put(Attr::TimeToFirstChunk, seconds.into());
        }
        if let Some(c) = tag("session.id") {
            put(Attr::ConversationId, c.into());
        }

        let mut name_tail = request_model.clone();
        match operation {
            Operation::Chat | Operation::TextCompletion => {
                if let Some(msgs) = oi.input_messages() {
                    put(Attr::InputMessages, messages_json(msgs, None).into());
                } else if let Some(text) = oi.input_value() {
                    put(
                        Attr::InputMessages,
                        messages_json(&[("user".into(), text.to_owned())], None).into(),
                    );
                }
                let finish = llm.finish_reason.as_deref();
                if let Some(msgs) = oi.output_messages() {
                    put(Attr::OutputMessages, messages_json(msgs, finish).into());
                } else if let Some(text) = oi.output_value() {
                    put(
                        Attr::OutputMessages,
                        messages_json(&[("assistant".into(), text.to_owned())], finish).into(),
                    );
                }
            }
            Operation::Embeddings => {}
            Operation::Retrieval | Operation::Rerank => {
                if let Some(q) = oi.input_value() {
                    put(Attr::RetrievalQueryText, q.into());
                }
                let docs: Vec<Value> = oi
                    .document_ids_and_scores()
                    .into_iter()
                    .map(|(id, score)| {
                        let mut d = serde_json::Map::new();
                        if let Some(id) = id {
                            d.insert("id".into(), id.into());
                        }
                        if let Some(s) = score {
                            d.insert("score".into(), s.into());
                        }
                        Value::Object(d)
                    })
                    .collect();
                if !docs.is_empty() {
                    put(
                        Attr::RetrievalDocuments,
                        Value::Array(docs).to_string().into(),
                    );
                }
                if operation == Operation::Retrieval {
                    name_tail = tag("gen_ai.data_source.id");
                }
            }
            Operation::ExecuteTool => {
                let (tool, description) = oi.tool();
                let tool = tool.map(str::to_owned).or_else(|| tag("gen_ai.tool.name"));
                if let Some(t) = &tool {
                    put(Attr::ToolName, t.as_str().into());
                }
                if let Some(d) = description {
                    put(Attr::ToolDescription, d.into());
                }
                if let Some(id) = tag("gen_ai.tool.call.id") {
                    put(Attr::ToolCallId, id.into());
                }
                if let Some(a) = oi.input_value() {
                    put(Attr::ToolCallArguments, a.into());
                }
                let output = oi
                    .output_value()
                    .map(str::to_owned)
                    .or_else(|| result.filter(|r| !r.is_null()).map(text_or_json));
                if let Some(r) = output {
                    put(Attr::ToolCallResult, r.into());
                }
                name_tail = tool;
            }
            Operation::InvokeAgent => {
                name_tail = tag("gen_ai.agent.name");
                if let Some(a) = &name_tail {
                    put(Attr::AgentName, a.as_str().into());
                }
            }
        }
        let name = match name_tail.filter(|t| !t.is_empty()) {
            Some(tail) => format!("{op_name} {tail}"),
            None => op_name.to_owned(),
        };
        Some(GenAiSpan {
            operation,
            name,
            client: operation.is_client(),
            attributes,
        })
    }

    /// The value of the attribute named `key`, if written.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Messages in the conventions' JSON schema (input or output messages), as a JSON string.
fn messages_json(msgs: &[(String, String)], finish_reason: Option<&str>) -> String {
    let list: Vec<Value> = msgs
        .iter()
        .map(|(role, content)| {
            let mut m = json!({
                "role": role,
                "parts": [{"type": "text", "content": content}],
            });
            if let Some(f) = finish_reason {
                m["finish_reason"] = f.into();
            }
            m
        })
        .collect();
    Value::Array(list).to_string()
}

fn text_or_json(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_and_operation_has_a_row_and_every_name_is_gen_ai() {
        use Attr::*;
        let attrs = [
            OperationName,
            ProviderName,
            RequestModel,
            ResponseModel,
            RequestStream,
            InputTokens,
            OutputTokens,
            CacheReadInputTokens,
            ReasoningOutputTokens,
            FinishReasons,
            TimeToFirstChunk,
            ToolName,
            ToolDescription,
            ToolCallId,
            ToolCallArguments,
            ToolCallResult,
            AgentName,
            ConversationId,
            DataSourceId,
            InputMessages,
            OutputMessages,
            RetrievalQueryText,
            RetrievalDocuments,
        ];
        for a in attrs {
            assert_eq!(NAMES.iter().filter(|(x, _)| *x == a).count(), 1, "{a:?}");
            for v in [SemconvVersion::V1_41, SemconvVersion::Latest] {
                assert!(v.name(a).unwrap().starts_with("gen_ai."), "{a:?} {v:?}");
            }
        }
        assert_eq!(attrs.len(), NAMES.len());
    }

    /// Every event of the catalog, alone in a span: the operation its span gets (`None`: no
    /// GenAI attributes; the span stays a chain).
    #[test]
    fn every_catalog_event_maps_to_its_genai_operation() {
        use crate::integrations::openinference::OpenInference;
        let cases = [
            ("LLMPredictStartEvent", Some("text_completion")),
            ("LLMPredictEndEvent", Some("chat")),
            ("LLMStructuredPredictStartEvent", Some("text_completion")),
            (
                "LLMStructuredPredictInProgressEvent",
                Some("text_completion"),
            ),
            ("LLMStructuredPredictEndEvent", Some("chat")),
            ("LLMCompletionStartEvent", Some("text_completion")),
            ("LLMCompletionInProgressEvent", Some("text_completion")),
            ("LLMCompletionEndEvent", Some("text_completion")),
            ("LLMChatStartEvent", Some("chat")),
            ("LLMChatInProgressEvent", Some("chat")),
            ("LLMChatEndEvent", Some("chat")),
            ("EmbeddingStartEvent", Some("embeddings")),
            ("EmbeddingEndEvent", Some("embeddings")),
            ("SparseEmbeddingStartEvent", Some("embeddings")),
            ("SparseEmbeddingEndEvent", Some("embeddings")),
            ("RetrievalStartEvent", Some("retrieval")),
            ("RetrievalEndEvent", Some("retrieval")),
            ("ReRankStartEvent", Some("rerank")),
            ("ReRankEndEvent", Some("rerank")),
            ("QueryStartEvent", None),
            ("QueryEndEvent", None),
            ("SynthesizeStartEvent", None),
            ("SynthesizeEndEvent", None),
            ("GetResponseStartEvent", None),
            ("GetResponseEndEvent", None),
            ("AgentRunStepStartEvent", Some("invoke_agent")),
            ("AgentRunStepEndEvent", Some("invoke_agent")),
            ("AgentChatWithStepStartEvent", Some("invoke_agent")),
            ("AgentChatWithStepEndEvent", Some("invoke_agent")),
            ("AgentToolCallEvent", Some("execute_tool")),
            ("StreamChatStartEvent", Some("chat")),
            ("StreamChatDeltaReceivedEvent", Some("chat")),
            ("StreamChatErrorEvent", Some("chat")),
            ("StreamChatEndEvent", Some("chat")),
            ("ExceptionEvent", None),
            ("SpanDropEvent", None),
        ];
        assert_eq!(cases.len(), 36, "the whole catalog");
        for (class, want) in cases {
            let (mut llm, mut oi) = (LlmSummary::default(), OpenInference::default());
            let fields = serde_json::Map::new();
            llm.observe(class, chrono::Utc::now(), &fields);
            oi.observe(class, &fields);
            let span = GenAiSpan::of(
                SemconvVersion::PINNED,
                oi.kind(),
                &llm,
                &oi,
                &Tags::new(),
                None,
            );
            let got = span.as_ref().map(|s| s.name.as_str());
            assert_eq!(got, want, "{class}");
            if let Some(s) = span {
                assert_eq!(s.get("gen_ai.operation.name"), Some(&json!(want.unwrap())));
            }
        }
    }

    #[test]
    fn the_latest_names_are_the_pinned_ones_until_the_conventions_rename_something() {
        for (attr, names) in NAMES {
            assert_eq!(names[1], names[2], "{attr:?}");
        }
        for (op, names, _) in OPERATIONS {
            assert_eq!(names[1], names[2], "{op:?}");
        }
    }
}
