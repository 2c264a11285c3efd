//! The domain-event catalog: llama-index's instrumentation events as typed structs.
//!
//! Every struct here mirrors one event class of llama-index's instrumentation module
//! (`llama_index.core.instrumentation.events.*` in llama-index-core 0.14, plus
//! `SpanDropEvent` from `llama_index_instrumentation.events.span`):
//!
//! - the struct is named like the Python class, and its [`Event::NAME`] is the class's
//!   `class_name()`, which is the same string;
//! - its fields are the class's own pydantic fields, with the same names, so
//!   `serde_json::to_value(&event)` has exactly the keys of llama-index's `model_dump()` minus
//!   the `BaseEvent` ones. Those (`timestamp`, `id_`, `span_id`, `tags`) and the `class_name` key
//!   that `BaseEvent.model_dump()` appends are not fields here: the record that wraps an emitted
//!   event adds them.
//!
//! # How types map
//!
//! | llama-index | here |
//! | --- | --- |
//! | `str` | [`String`] |
//! | `int` | [`usize`] for counts, [`u32`] for sparse-embedding token ids |
//! | `float` | [`f64`] |
//! | `List[...]` | [`Vec`] |
//! | `dict` | [`Map<String, Value>`](serde_json::Map) (a JSON object) |
//! | `Optional[...]` | [`Option`], serialized as `null` and never left out, as pydantic does |
//! | `ChatMessage` (its `MessageRole`; tool calls) | [`ChatMessage`] ([`MessageRole`]; [`ToolCall`]) |
//! | `ChatResponse` | [`ChatResponse`], with typed [`TokenUsage`], model and finish reason |
//! | `CompletionResponse` | [`CompletionResponse`], the same typed values |
//! | `NodeWithScore` (its `TextNode`) | [`NodeWithScore`] ([`Document`]) |
//! | `QueryType` (a `str` or a `QueryBundle`), `BasePromptTemplate`, `TaskStep`, `TaskStepOutput`, `ToolMetadata`, query and agent response objects, pydantic models and classes | [`Value`] |
//! | an exception object (`ExceptionEvent.exception`, `StreamChatErrorEvent.exception`) | [`String`], the error's message |
//!
//! The typed objects write llama-index's JSON (each type's docs show it) and read it in the
//! shapes llama-index versions and providers produce: a [`ChatMessage`] with `content` or with
//! newer llama-index's `blocks`, a response's token counts from `additional_kwargs` or from the
//! provider's `raw` response. Each keeps a [`Value`] escape hatch for what it does not model:
//! the `additional_kwargs`, `raw` and `metadata` maps as llama-index has them, and an `extra`
//! map for the other keys of its JSON object, written back as they came. They are
//! `#[non_exhaustive]`: build them with their constructors (`ChatMessage::user`,
//! `ChatResponse::new(..).with_usage(..)`, ...) and set public fields after.
//!
//! A [`Value`] field holds whatever JSON the emitter gives it, for llama-index types that are
//! open (a prompt template is any subclass) or rarely read. A query is a plain string or a
//! `QueryBundle` object, so `"what is a span?".into()` builds the common case.
//! llama-index's `model_dump()` overrides on the LLM in-progress and end events only turn
//! `response.raw` into a plain dict, which the `raw` field already is.
//!
//! No field of these events is excluded from `model_dump()`, and every field is required (an
//! `Optional` one must still be passed, possibly as `None`) except
//! [`EmbeddingEndEvent::token_count`], which defaults to `None`.
//!
//! Deserializing ignores unknown keys, so a whole llama-index event dump (with `timestamp`,
//! `id_`, `span_id`, `tags` and `class_name`) reads back into the matching struct.
//! `Default` is derived where every field is a collection, an `Option` or absent, so that the
//! empty value means something.
//!
//! # Examples
//!
//! A retrieval and a chat call, as an instrumented pipeline emits them:
//!
//! ```
//! use serde_json::json;
//! use spanbus::Event;
//! use spanbus::events::{
//!     ChatMessage, ChatResponse, Document, LLMChatEndEvent, NodeWithScore, RetrievalEndEvent,
//!     TokenUsage,
//! };
//!
//! let retrieved = RetrievalEndEvent {
//!     str_or_query_bundle: "what is a span?".into(),
//!     nodes: vec![NodeWithScore::new(Document::new("n1", "A span is ..."), 0.87)],
//! };
//! assert_eq!(RetrievalEndEvent::NAME, "RetrievalEndEvent");
//! let value = serde_json::to_value(&retrieved)?;
//! assert_eq!(value["str_or_query_bundle"], "what is a span?");
//! assert_eq!(value["nodes"][0], json!({"node": {"id_": "n1", "text": "A span is ...", "metadata": {}}, "score": 0.87}));
//!
//! let answered = LLMChatEndEvent {
//!     messages: vec![
//!         ChatMessage::system("Answer from the documents."),
//!         ChatMessage::user("what is a span?"),
//!     ],
//!     response: Some(
//!         ChatResponse::new(ChatMessage::assistant("A stretch of work."))
//!             .with_usage(TokenUsage::new(312, 85))
//!             .with_model("gpt-4o-mini")
//!             .with_finish_reason("stop"),
//!     ),
//! };
//! let value = serde_json::to_value(&answered)?;
//! assert_eq!(value["messages"][1], json!({"role": "user", "content": "what is a span?", "additional_kwargs": {}}));
//! assert_eq!(value["response"]["message"]["content"], "A stretch of work.");
//! assert_eq!(value["response"]["additional_kwargs"]["total_tokens"], 397);
//! assert_eq!(value["response"]["additional_kwargs"]["model"], "gpt-4o-mini");
//!
//! // And back: the JSON reads into the same event.
//! assert_eq!(serde_json::from_value::<LLMChatEndEvent>(value)?, answered);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Event;

mod message;
mod node;
mod response;
mod wire;

pub use message::{ChatMessage, MessageRole, ToolCall};
pub use node::{Document, NodeWithScore};
pub use response::{ChatResponse, CompletionResponse, TokenUsage};

// --- LLM: predict -------------------------------------------------------------------------

/// Emitted when an LLM's `predict` (or `apredict`, `stream`, `astream`) starts, before the
/// prompt template is formatted and sent to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMPredictStartEvent {
    /// The prompt template (a `BasePromptTemplate`, serialized as its concrete subclass).
    pub template: Value,
    /// The arguments the template is formatted with, if any.
    pub template_args: Option<Map<String, Value>>,
}

impl Event for LLMPredictStartEvent {
    const NAME: &'static str = "LLMPredictStartEvent";
}

/// Emitted when an LLM's `predict` (or `apredict`) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMPredictEndEvent {
    /// The text the call returned.
    pub output: String,
}

impl Event for LLMPredictEndEvent {
    const NAME: &'static str = "LLMPredictEndEvent";
}

// --- LLM: structured predict --------------------------------------------------------------

/// Emitted when an LLM's `structured_predict` (or its async or streaming variants) starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMStructuredPredictStartEvent {
    /// The output type to predict. In llama-index this is the pydantic model class itself,
    /// which has no JSON form; a port records something that names it, such as the type name
    /// or its JSON schema.
    pub output_cls: Value,
    /// The prompt template (a `BasePromptTemplate`, serialized as its concrete subclass).
    pub template: Value,
    /// The arguments the template is formatted with, if any.
    pub template_args: Option<Map<String, Value>>,
}

impl Event for LLMStructuredPredictStartEvent {
    const NAME: &'static str = "LLMStructuredPredictStartEvent";
}

/// Emitted for each partial object while `stream_structured_predict` (or its async variant)
/// streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMStructuredPredictInProgressEvent {
    /// The partially filled output object parsed so far.
    pub output: Value,
}

impl Event for LLMStructuredPredictInProgressEvent {
    const NAME: &'static str = "LLMStructuredPredictInProgressEvent";
}

/// Emitted when a structured predict finishes, with the predicted object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMStructuredPredictEndEvent {
    /// The predicted output object (an instance of the requested output type).
    pub output: Value,
}

impl Event for LLMStructuredPredictEndEvent {
    const NAME: &'static str = "LLMStructuredPredictEndEvent";
}

// --- LLM: completion ----------------------------------------------------------------------

/// Emitted when an LLM completion (`complete`, `stream_complete` or their async variants)
/// starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMCompletionStartEvent {
    /// The prompt to be completed.
    pub prompt: String,
    /// Extra keyword arguments passed to the call.
    pub additional_kwargs: Map<String, Value>,
    /// The LLM's own configuration, as a JSON object.
    pub model_dict: Map<String, Value>,
}

impl Event for LLMCompletionStartEvent {
    const NAME: &'static str = "LLMCompletionStartEvent";
}

/// Emitted for each chunk of a streaming completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMCompletionInProgressEvent {
    /// The prompt being completed.
    pub prompt: String,
    /// The response so far: the text accumulated up to this chunk and its delta.
    pub response: CompletionResponse,
}

impl Event for LLMCompletionInProgressEvent {
    const NAME: &'static str = "LLMCompletionInProgressEvent";
}

/// Emitted when a completion finishes; for a streaming one, after the last chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMCompletionEndEvent {
    /// The prompt that was completed.
    pub prompt: String,
    /// The final response.
    pub response: CompletionResponse,
}

impl Event for LLMCompletionEndEvent {
    const NAME: &'static str = "LLMCompletionEndEvent";
}

// --- LLM: chat ----------------------------------------------------------------------------

/// Emitted when an LLM chat call (`chat`, `stream_chat` or their async variants) starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LLMChatStartEvent {
    /// The chat messages sent.
    pub messages: Vec<ChatMessage>,
    /// Extra keyword arguments passed to the call.
    pub additional_kwargs: Map<String, Value>,
    /// The LLM's own configuration, as a JSON object.
    pub model_dict: Map<String, Value>,
}

impl Event for LLMChatStartEvent {
    const NAME: &'static str = "LLMChatStartEvent";
}

/// Emitted for each chunk of a streaming chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMChatInProgressEvent {
    /// The chat messages sent.
    pub messages: Vec<ChatMessage>,
    /// The response so far: the message accumulated up to this chunk and its delta.
    pub response: ChatResponse,
}

impl Event for LLMChatInProgressEvent {
    const NAME: &'static str = "LLMChatInProgressEvent";
}

/// Emitted when a chat call finishes; for a streaming one, after the last chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMChatEndEvent {
    /// The chat messages sent.
    pub messages: Vec<ChatMessage>,
    /// The last response, or `None` when a stream ended without yielding one.
    pub response: Option<ChatResponse>,
}

impl Event for LLMChatEndEvent {
    const NAME: &'static str = "LLMChatEndEvent";
}

// --- Embedding ----------------------------------------------------------------------------

/// Emitted when a dense embedding call starts (query, text or batch embedding).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingStartEvent {
    /// The embedding model's configuration, as a JSON object (llama-index drops its
    /// `api_key`).
    pub model_dict: Map<String, Value>,
}

impl Event for EmbeddingStartEvent {
    const NAME: &'static str = "EmbeddingStartEvent";
}

/// Emitted when a dense embedding call finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingEndEvent {
    /// The texts that were embedded.
    pub chunks: Vec<String>,
    /// One embedding vector per chunk, in the same order.
    pub embeddings: Vec<Vec<f64>>,
    /// The token count the provider reported for this call, or `None` when the integration
    /// does not report one. The only catalog field with a default in llama-index (`None`); it
    /// is still always serialized, and may be missing when deserializing.
    #[serde(default)]
    pub token_count: Option<u64>,
}

impl Event for EmbeddingEndEvent {
    const NAME: &'static str = "EmbeddingEndEvent";
}

/// Emitted when a sparse embedding call starts.
///
/// In llama-index this class subclasses `EmbeddingStartEvent`, so `isinstance` checks for the
/// dense event also match it; here it is a separate type, and a handler that wants both
/// matches on both names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseEmbeddingStartEvent {
    /// The sparse embedding model's configuration, as a JSON object.
    pub model_dict: Map<String, Value>,
}

impl Event for SparseEmbeddingStartEvent {
    const NAME: &'static str = "SparseEmbeddingStartEvent";
}

/// Emitted when a sparse embedding call finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseEmbeddingEndEvent {
    /// The texts that were embedded.
    pub chunks: Vec<String>,
    /// One sparse embedding per chunk: token id to weight. In JSON the ids are object keys, so
    /// they are written as strings (`{"17": 0.5}`), as Python's `json` module writes int keys.
    pub embeddings: Vec<BTreeMap<u32, f64>>,
}

impl Event for SparseEmbeddingEndEvent {
    const NAME: &'static str = "SparseEmbeddingEndEvent";
}

// --- Retrieval ----------------------------------------------------------------------------

/// Emitted when a retriever's `retrieve` (or `aretrieve`) starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalStartEvent {
    /// The query: a string or a `QueryBundle`.
    pub str_or_query_bundle: Value,
}

impl Event for RetrievalStartEvent {
    const NAME: &'static str = "RetrievalStartEvent";
}

/// Emitted when a retriever's `retrieve` (or `aretrieve`) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalEndEvent {
    /// The query: a string or a `QueryBundle`.
    pub str_or_query_bundle: Value,
    /// The retrieved nodes with their scores.
    pub nodes: Vec<NodeWithScore>,
}

impl Event for RetrievalEndEvent {
    const NAME: &'static str = "RetrievalEndEvent";
}

// --- Rerank -------------------------------------------------------------------------------

/// Emitted when a reranking node postprocessor starts reranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReRankStartEvent {
    /// The query the nodes are ranked against: a string or a `QueryBundle`, if any.
    pub query: Option<Value>,
    /// The nodes to rerank, with their scores.
    pub nodes: Vec<NodeWithScore>,
    /// How many nodes to keep after reranking.
    pub top_n: usize,
    /// The name of the reranking model.
    pub model_name: String,
}

impl Event for ReRankStartEvent {
    const NAME: &'static str = "ReRankStartEvent";
}

/// Emitted when reranking finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReRankEndEvent {
    /// The nodes kept after reranking, best first.
    pub nodes: Vec<NodeWithScore>,
}

impl Event for ReRankEndEvent {
    const NAME: &'static str = "ReRankEndEvent";
}

// --- Query --------------------------------------------------------------------------------

/// Emitted when a query engine's `query` (or `aquery`) starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryStartEvent {
    /// The query: a string or a `QueryBundle`.
    pub query: Value,
}

impl Event for QueryStartEvent {
    const NAME: &'static str = "QueryStartEvent";
}

/// Emitted when a query engine's `query` (or `aquery`) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryEndEvent {
    /// The query: a string or a `QueryBundle`.
    pub query: Value,
    /// The response object (`Response`, `StreamingResponse`, `PydanticResponse`, ...).
    pub response: Value,
}

impl Event for QueryEndEvent {
    const NAME: &'static str = "QueryEndEvent";
}

// --- Synthesis ----------------------------------------------------------------------------

/// Emitted when a response synthesizer's `synthesize` (or `asynthesize`) starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesizeStartEvent {
    /// The query: a string or a `QueryBundle`.
    pub query: Value,
}

impl Event for SynthesizeStartEvent {
    const NAME: &'static str = "SynthesizeStartEvent";
}

/// Emitted when a response synthesizer's `synthesize` (or `asynthesize`) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesizeEndEvent {
    /// The query: a string or a `QueryBundle`.
    pub query: Value,
    /// The synthesized response object.
    pub response: Value,
}

impl Event for SynthesizeEndEvent {
    const NAME: &'static str = "SynthesizeEndEvent";
}

/// Emitted when a response synthesizer's `get_response` (or `aget_response`) starts turning
/// text chunks into an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetResponseStartEvent {
    /// The query string.
    pub query_str: String,
    /// The text chunks the answer is built from.
    pub text_chunks: Vec<String>,
}

impl Event for GetResponseStartEvent {
    const NAME: &'static str = "GetResponseStartEvent";
}

/// Emitted when a response synthesizer's `get_response` (or `aget_response`) returns.
///
/// It has no fields: llama-index leaves the response out (a commented-out `response` field
/// notes that recording it would consume the first chunk of a streamed response).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetResponseEndEvent {}

impl Event for GetResponseEndEvent {
    const NAME: &'static str = "GetResponseEndEvent";
}

// --- Agent --------------------------------------------------------------------------------

/// Emitted when an agent runner starts running one step of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRunStepStartEvent {
    /// The id of the task the step belongs to.
    pub task_id: String,
    /// The step to run (a `TaskStep`), if any.
    pub step: Option<Value>,
    /// The input given to the step, if any.
    pub input: Option<String>,
}

impl Event for AgentRunStepStartEvent {
    const NAME: &'static str = "AgentRunStepStartEvent";
}

/// Emitted when an agent runner finishes running one step of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRunStepEndEvent {
    /// The step's output (a `TaskStepOutput`).
    pub step_output: Value,
}

impl Event for AgentRunStepEndEvent {
    const NAME: &'static str = "AgentRunStepEndEvent";
}

/// Emitted when an agent runner starts a chat turn that it runs step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentChatWithStepStartEvent {
    /// The user's input message.
    pub user_msg: String,
}

impl Event for AgentChatWithStepStartEvent {
    const NAME: &'static str = "AgentChatWithStepStartEvent";
}

/// Emitted when an agent runner finishes a step-by-step chat turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentChatWithStepEndEvent {
    /// The agent's chat response (an `AgentChatResponse` or `StreamingAgentChatResponse`;
    /// llama-index rejects any other type), if any.
    pub response: Option<Value>,
}

impl Event for AgentChatWithStepEndEvent {
    const NAME: &'static str = "AgentChatWithStepEndEvent";
}

/// Emitted when an agent calls a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentToolCallEvent {
    /// The arguments of the call, as the string the model produced (usually JSON).
    pub arguments: String,
    /// The called tool's metadata (`ToolMetadata`: name, description, argument schema, ...).
    pub tool: Value,
}

impl Event for AgentToolCallEvent {
    const NAME: &'static str = "AgentToolCallEvent";
}

// --- Chat engine streaming ----------------------------------------------------------------

/// Emitted when a streaming chat response starts writing its chunks to the chat engine's
/// queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamChatStartEvent {}

impl Event for StreamChatStartEvent {
    const NAME: &'static str = "StreamChatStartEvent";
}

/// Emitted for each delta a streaming chat response receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamChatDeltaReceivedEvent {
    /// The text received.
    pub delta: String,
}

impl Event for StreamChatDeltaReceivedEvent {
    const NAME: &'static str = "StreamChatDeltaReceivedEvent";
}

/// Emitted when writing a streaming chat response fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamChatErrorEvent {
    /// The error's message. llama-index holds the exception object itself, which has no JSON
    /// form.
    pub exception: String,
}

impl Event for StreamChatErrorEvent {
    const NAME: &'static str = "StreamChatErrorEvent";
}

/// Emitted when a streaming chat response has finished writing to the chat engine's queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamChatEndEvent {}

impl Event for StreamChatEndEvent {
    const NAME: &'static str = "StreamChatEndEvent";
}

// --- Exceptions and spans -----------------------------------------------------------------

/// Emitted when an instrumented operation raises an error that the operation reports as an
/// event (in llama-index, for instance, a streamed LLM response that fails).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionEvent {
    /// The error's message. llama-index holds the exception object itself, which has no JSON
    /// form.
    pub exception: String,
}

impl Event for ExceptionEvent {
    const NAME: &'static str = "ExceptionEvent";
}

/// Emitted by the dispatcher when a span is dropped because the operation it covers failed,
/// just before the span handlers are told of the drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanDropEvent {
    /// The error's message (`str(err)` in llama-index).
    pub err_str: String,
}

impl Event for SpanDropEvent {
    const NAME: &'static str = "SpanDropEvent";
}
