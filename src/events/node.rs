//! Retrieved text: [`Document`] and [`NodeWithScore`].

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{kind, take_object, write_extra};

/// A piece of text a retriever returns: llama-index's `TextNode` (of which its `Document` is a
/// subclass).
///
/// # JSON
///
/// ```json
/// {"id_": "doc-17", "text": "A span is a stretch of work.", "metadata": {"file": "spans.md"}}
/// ```
///
/// Reading needs `id_`; `text` defaults to `""` (as in llama-index) and is also read from a
/// `Document`'s `text_resource.text`; `metadata` defaults to `{}`. The many other keys of a
/// llama-index node dump (`embedding`, `relationships`, `class_name`, ...) are kept in
/// [`extra`](Self::extra) and written back.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::Document;
///
/// let doc = Document::new("doc-17", "A span is a stretch of work.").with_metadata("file", "spans.md");
/// assert_eq!(
///     serde_json::to_value(&doc)?,
///     json!({"id_": "doc-17", "text": "A span is a stretch of work.", "metadata": {"file": "spans.md"}})
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Document {
    /// The node's id (`id_` in JSON).
    pub id: String,
    /// The node's text.
    pub text: String,
    /// The node's metadata (file name, page, ...).
    pub metadata: Map<String, Value>,
    /// Keys of the JSON object that this type does not model, written back as they came.
    pub extra: Map<String, Value>,
}

impl Document {
    /// A node with id `id` and text `text`.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Document {
            id: id.into(),
            text: text.into(),
            ..Document::default()
        }
    }

    /// The node with `value` as its metadata `key`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("id_", &self.id)?;
        out.serialize_entry("text", &self.text)?;
        out.serialize_entry("metadata", &self.metadata)?;
        write_extra(&mut out, &self.extra, &["id_", "text", "metadata"])?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let id = match map.remove("id_") {
            Some(Value::String(id)) => id,
            None => return Err(D::Error::missing_field("id_")),
            Some(other) => {
                return Err(D::Error::custom(format_args!(
                    "Document.id_ must be a string, got {}",
                    kind(&other)
                )));
            }
        };
        let text = match map.remove("text") {
            Some(Value::String(text)) => text,
            None | Some(Value::Null) => map
                .get("text_resource")
                .and_then(|r| r.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Some(other) => {
                return Err(D::Error::custom(format_args!(
                    "Document.text must be a string, got {}",
                    kind(&other)
                )));
            }
        };
        let metadata = take_object(&mut map, "metadata", "Document")?;
        Ok(Document {
            id,
            text,
            metadata,
            extra: map,
        })
    }
}

/// A retrieved node and its score: llama-index's `NodeWithScore`.
///
/// # JSON
///
/// ```json
/// {"node": {"id_": "doc-17", "text": "A span is a stretch of work.", "metadata": {}}, "score": 0.87}
/// ```
///
/// `score` is `null` when the retriever gives none. Other keys (a dump's `class_name`) are kept
/// in [`extra`](Self::extra).
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use spanbus::events::{Document, NodeWithScore};
///
/// let hit = NodeWithScore::new(Document::new("doc-17", "A span is a stretch of work."), 0.87);
/// assert_eq!(serde_json::to_value(&hit)?["score"], 0.87);
/// let unscored = NodeWithScore::new(Document::new("doc-18", "..."), None);
/// assert_eq!(serde_json::to_value(&unscored)?["score"], json!(null));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct NodeWithScore {
    /// The node.
    pub node: Document,
    /// Its relevance score, when the retriever or reranker gives one.
    pub score: Option<f64>,
    /// Keys of the JSON object that this type does not model, written back as they came.
    pub extra: Map<String, Value>,
}

impl NodeWithScore {
    /// `node` with `score` (an `f64`, or `None`).
    pub fn new(node: Document, score: impl Into<Option<f64>>) -> Self {
        NodeWithScore {
            node,
            score: score.into(),
            extra: Map::new(),
        }
    }
}

impl Serialize for NodeWithScore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("node", &self.node)?;
        out.serialize_entry("score", &self.score)?;
        write_extra(&mut out, &self.extra, &["node", "score"])?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for NodeWithScore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let node = match map.remove("node") {
            Some(node) => Document::deserialize(node).map_err(D::Error::custom)?,
            None => return Err(D::Error::missing_field("node")),
        };
        let score = match map.remove("score") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(D::Error::custom(format_args!(
                    "NodeWithScore.score must be a number or null, got {}",
                    kind(&other)
                )));
            }
        };
        Ok(NodeWithScore {
            node,
            score,
            extra: map,
        })
    }
}
