//! Chat messages: [`ChatMessage`], its [`MessageRole`] and the [`ToolCall`]s it carries.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{Overlaid, kind, take_object, write_extra};

/// Who wrote a chat message: llama-index's `MessageRole`.
///
/// It is written as llama-index's lowercase string (`"user"`, `"assistant"`, ...). A string
/// that is none of them, such as a provider's own role, reads as [`MessageRole::Other`] and is
/// written back unchanged; strings are matched exactly (`"User"` is `Other`). Build a role from
/// a string with [`MessageRole::from`] so that known strings get their variant.
///
/// # Examples
///
/// ```
/// use spanbus::events::MessageRole;
///
/// assert_eq!(MessageRole::from("assistant"), MessageRole::Assistant);
/// assert_eq!(MessageRole::Assistant.as_str(), "assistant");
/// assert_eq!(MessageRole::from("critic").as_str(), "critic");
/// assert_eq!(MessageRole::default(), MessageRole::User);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageRole {
    /// `"system"`: instructions for the model.
    System,
    /// `"developer"`: OpenAI's successor of `system` for reasoning models.
    Developer,
    /// `"user"`, the default (as in llama-index).
    #[default]
    User,
    /// `"assistant"`: the model's own turn.
    Assistant,
    /// `"function"`: a function's result, in OpenAI's older function-calling API.
    Function,
    /// `"tool"`: a tool's result.
    Tool,
    /// `"chatbot"`: Cohere's name for the model's turn.
    Chatbot,
    /// `"model"`: Gemini's name for the model's turn.
    Model,
    /// Any other string.
    Other(String),
}

impl MessageRole {
    /// The role as llama-index writes it.
    pub fn as_str(&self) -> &str {
        match self {
            MessageRole::System => "system",
            MessageRole::Developer => "developer",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::Function => "function",
            MessageRole::Tool => "tool",
            MessageRole::Chatbot => "chatbot",
            MessageRole::Model => "model",
            MessageRole::Other(s) => s,
        }
    }

    fn known(s: &str) -> Option<MessageRole> {
        Some(match s {
            "system" => MessageRole::System,
            "developer" => MessageRole::Developer,
            "user" => MessageRole::User,
            "assistant" => MessageRole::Assistant,
            "function" => MessageRole::Function,
            "tool" => MessageRole::Tool,
            "chatbot" => MessageRole::Chatbot,
            "model" => MessageRole::Model,
            _ => return None,
        })
    }
}

impl From<&str> for MessageRole {
    fn from(s: &str) -> Self {
        MessageRole::known(s).unwrap_or_else(|| MessageRole::Other(s.to_owned()))
    }
}

impl From<String> for MessageRole {
    fn from(s: String) -> Self {
        MessageRole::known(&s).unwrap_or(MessageRole::Other(s))
    }
}

impl FromStr for MessageRole {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(MessageRole::from(s))
    }
}

impl fmt::Display for MessageRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MessageRole {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageRole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(MessageRole::from)
    }
}

/// A tool (function) call the model asked for.
///
/// # JSON
///
/// Written in OpenAI's shape, which is how llama-index's OpenAI integration keeps tool calls
/// (under the message's `additional_kwargs.tool_calls`):
///
/// ```json
/// {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}}
/// ```
///
/// `arguments` is the text the model produced, kept as a string because it is not always
/// valid JSON (a model can emit a malformed or, mid-stream, a partial object);
/// [`arguments_json`](Self::arguments_json) parses it. Reading also accepts llama-index's
/// `ToolCallBlock` (`{"block_type": "tool_call", "tool_call_id", "tool_name", "tool_kwargs"}`)
/// and a flat `{"id", "name", "arguments"}`; arguments given as a JSON value instead of a
/// string are kept as that value's compact JSON text.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::ToolCall;
///
/// let call = ToolCall::new("call_1", "search", r#"{"q":"rust"}"#);
/// assert_eq!(call.arguments_json()?, json!({"q": "rust"}));
/// assert_eq!(
///     serde_json::to_value(&call)?,
///     json!({"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}})
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ToolCall {
    /// The provider's id for the call, which the tool's result message refers to; `None`
    /// when the provider gives none.
    pub id: Option<String>,
    /// The name of the tool to call.
    pub name: String,
    /// The arguments, as the text the model produced (usually a JSON object).
    pub arguments: String,
}

impl ToolCall {
    /// A call of tool `name` with id `id` and the model's `arguments` text.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: Some(id.into()),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// The arguments parsed as JSON.
    ///
    /// # Errors
    ///
    /// When the model's text is not valid JSON.
    pub fn arguments_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.arguments)
    }

    /// The call in OpenAI's shape.
    pub(crate) fn to_openai(&self) -> Value {
        let mut function = Map::new();
        function.insert("name".into(), self.name.clone().into());
        function.insert("arguments".into(), self.arguments.clone().into());
        let mut call = Map::new();
        call.insert(
            "id".into(),
            self.id.clone().map_or(Value::Null, Value::from),
        );
        call.insert("type".into(), "function".into());
        call.insert("function".into(), Value::Object(function));
        Value::Object(call)
    }

    /// A call in exactly the shape [`to_openai`](Self::to_openai) writes, or `None`: an entry
    /// with any other key or type is left to the message's `additional_kwargs`, so that it is
    /// written back as it came.
    fn from_openai_exact(v: &Value) -> Option<ToolCall> {
        let call = v.as_object()?;
        if call.len() != 3 || call.get("type")?.as_str()? != "function" {
            return None;
        }
        let id = match call.get("id")? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return None,
        };
        let function = call.get("function")?.as_object()?;
        if function.len() != 2 {
            return None;
        }
        Some(ToolCall {
            id,
            name: function.get("name")?.as_str()?.to_owned(),
            arguments: function.get("arguments")?.as_str()?.to_owned(),
        })
    }

    /// A call from llama-index's `ToolCallBlock`, or `None` for another block.
    fn from_block(block: &Map<String, Value>) -> Option<ToolCall> {
        if block.get("block_type")?.as_str()? != "tool_call" {
            return None;
        }
        Some(ToolCall {
            id: block
                .get("tool_call_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: block.get("tool_name")?.as_str()?.to_owned(),
            arguments: arguments_text(block.get("tool_kwargs"), "{}"),
        })
    }
}

/// Arguments as text: a string as it is, any other value as compact JSON.
fn arguments_text(v: Option<&Value>, missing: &str) -> String {
    match v {
        None | Some(Value::Null) => missing.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_openai().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let call = Map::<String, Value>::deserialize(deserializer)?;
        if let Some(call) = ToolCall::from_block(&call) {
            return Ok(call);
        }
        let id = call.get("id").and_then(Value::as_str).map(str::to_owned);
        let (name, arguments) = match call.get("function") {
            Some(Value::Object(f)) => (f.get("name"), f.get("arguments")),
            _ => (call.get("name"), call.get("arguments")),
        };
        let Some(Value::String(name)) = name else {
            return Err(D::Error::custom(
                "a tool call needs a name: function.name (OpenAI), tool_name (llama-index's \
                 ToolCallBlock) or name",
            ));
        };
        Ok(ToolCall {
            id,
            name: name.clone(),
            arguments: arguments_text(arguments, ""),
        })
    }
}

/// A chat message: llama-index's `ChatMessage`.
///
/// # JSON
///
/// Written in llama-index's classic form, which every llama-index version reads:
///
/// ```json
/// {"role": "user", "content": "What is a span?", "additional_kwargs": {}}
/// ```
///
/// - `content` is `null` when the message has no text (an assistant turn that only calls
///   tools).
/// - [`tool_calls`](Self::tool_calls), when there are any, are written in OpenAI's shape under
///   `additional_kwargs.tool_calls`, where llama-index's OpenAI integration keeps them (see
///   [`ToolCall`]).
/// - Newer llama-index dumps a message as `{"role", "blocks": [...], "additional_kwargs"}`.
///   Reading accepts that form: the text blocks (`{"block_type": "text", "text": ...}`) joined
///   by `"\n"` are the content, as llama-index's `ChatMessage.content` joins them (no text
///   block: `None`); tool-call blocks become [`tool_calls`](Self::tool_calls) when
///   `additional_kwargs` has no `tool_calls` of its own; every other block (images, audio,
///   thinking, ...) is kept in [`other_blocks`](Self::other_blocks). A message with other
///   blocks is written in the blocks form (its content as one text block first), so they
///   are not lost.
/// - `role` defaults to `"user"` when missing, as in llama-index.
/// - Keys beyond these are kept in [`extra`](Self::extra) and written back.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::{ChatMessage, MessageRole};
///
/// let message = ChatMessage::user("What is a span?");
/// assert_eq!(
///     serde_json::to_value(&message)?,
///     json!({"role": "user", "content": "What is a span?", "additional_kwargs": {}})
/// );
///
/// // The blocks form of newer llama-index reads into the same message.
/// let read: ChatMessage = serde_json::from_value(json!({
///     "role": "user",
///     "blocks": [{"block_type": "text", "text": "What is a span?"}],
///     "additional_kwargs": {},
/// }))?;
/// assert_eq!(read, message);
/// assert_eq!(read.role, MessageRole::User);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ChatMessage {
    /// Who wrote the message.
    pub role: MessageRole,
    /// The message's text, or `None` when it has none.
    pub content: Option<String>,
    /// The tool calls the model asked for in this message.
    pub tool_calls: Vec<ToolCall>,
    /// Provider extras, as llama-index keeps them (`tool_call_id` and `name` on a tool's
    /// result message, a provider's own fields, ...). The key `tool_calls` is written from
    /// [`tool_calls`](Self::tool_calls) when that is not empty.
    pub additional_kwargs: Map<String, Value>,
    /// Content blocks other than text and tool calls (images, audio, documents, thinking,
    /// ...), as llama-index dumps them.
    pub other_blocks: Vec<Value>,
    /// Keys of the JSON object that this type does not model, written back as they came.
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// A message from `role` with no content yet.
    pub fn new(role: impl Into<MessageRole>) -> Self {
        ChatMessage {
            role: role.into(),
            ..ChatMessage::default()
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage::new(MessageRole::System).with_content(content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::new(MessageRole::User).with_content(content)
    }

    /// An assistant (model) message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::new(MessageRole::Assistant).with_content(content)
    }

    /// The message with `content` as its text.
    pub fn with_content(mut self, content: impl Into<String>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// The message with `call` added to its tool calls.
    pub fn with_tool_call(mut self, call: ToolCall) -> Self {
        self.tool_calls.push(call);
        self
    }
}

impl Serialize for ChatMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let owned: Vec<(&'static str, Value)> = if self.tool_calls.is_empty() {
            Vec::new()
        } else {
            let calls = self.tool_calls.iter().map(ToolCall::to_openai).collect();
            vec![("tool_calls", Value::Array(calls))]
        };
        let kwargs = Overlaid {
            base: &self.additional_kwargs,
            owned: &owned,
        };
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("role", &self.role)?;
        if self.other_blocks.is_empty() {
            out.serialize_entry("content", &self.content)?;
            out.serialize_entry("additional_kwargs", &kwargs)?;
            write_extra(
                &mut out,
                &self.extra,
                &["role", "content", "additional_kwargs"],
            )?;
        } else {
            let text = self.content.as_ref().map(|text| {
                let mut block = Map::new();
                block.insert("block_type".into(), "text".into());
                block.insert("text".into(), text.clone().into());
                Value::Object(block)
            });
            let blocks: Vec<&Value> = text.iter().chain(&self.other_blocks).collect();
            out.serialize_entry("blocks", &blocks)?;
            out.serialize_entry("additional_kwargs", &kwargs)?;
            write_extra(
                &mut out,
                &self.extra,
                &["role", "content", "blocks", "additional_kwargs"],
            )?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for ChatMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let role = match map.remove("role") {
            None | Some(Value::Null) => MessageRole::User,
            Some(Value::String(s)) => MessageRole::from(s),
            Some(other) => {
                return Err(D::Error::custom(format_args!(
                    "ChatMessage.role must be a string, got {}",
                    kind(&other)
                )));
            }
        };
        let mut additional_kwargs = take_object(&mut map, "additional_kwargs", "ChatMessage")?;
        let mut blocks = Blocks::default();
        match map.remove("content") {
            // The classic form; a `blocks` key beside it stays in `extra`, as llama-index
            // lets `content` win.
            Some(Value::String(s)) => blocks.text = vec![s],
            // llama-index's constructor takes a list as the blocks.
            Some(Value::Array(items)) => blocks.read(items),
            None | Some(Value::Null) => match map.remove("blocks") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => blocks.read(items),
                Some(other) => {
                    return Err(D::Error::custom(format_args!(
                        "ChatMessage.blocks must be an array, got {}",
                        kind(&other)
                    )));
                }
            },
            Some(other) => {
                return Err(D::Error::custom(format_args!(
                    "ChatMessage.content must be a string, a list of blocks or null, got {}",
                    kind(&other)
                )));
            }
        }
        let lifted = match additional_kwargs.get("tool_calls") {
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(ToolCall::from_openai_exact)
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        let mut other_blocks = blocks.other;
        let tool_calls = if let Some(calls) = lifted {
            additional_kwargs.remove("tool_calls");
            other_blocks.extend(blocks.calls.into_iter().map(|(block, _)| block));
            calls
        } else if additional_kwargs.contains_key("tool_calls") {
            // Tool calls of a shape this type does not model stay where they are, and the
            // blocks' calls with them, so that neither overwrites the other when written.
            other_blocks.extend(blocks.calls.into_iter().map(|(block, _)| block));
            Vec::new()
        } else {
            blocks.calls.into_iter().map(|(_, call)| call).collect()
        };
        Ok(ChatMessage {
            role,
            content: (!blocks.text.is_empty()).then(|| blocks.text.join("\n")),
            tool_calls,
            additional_kwargs,
            other_blocks,
            extra: map,
        })
    }
}

/// A message's content blocks, sorted.
#[derive(Default)]
struct Blocks {
    text: Vec<String>,
    calls: Vec<(Value, ToolCall)>,
    other: Vec<Value>,
}

impl Blocks {
    fn read(&mut self, items: Vec<Value>) {
        for item in items {
            if let Value::Object(block) = &item {
                let block_type = block.get("block_type").and_then(Value::as_str);
                if block_type == Some("text")
                    && let Some(Value::String(text)) = block.get("text")
                {
                    self.text.push(text.clone());
                    continue;
                }
                if let Some(call) = ToolCall::from_block(block) {
                    self.calls.push((item, call));
                    continue;
                }
            }
            self.other.push(item);
        }
    }
}
