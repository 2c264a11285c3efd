//! Spans that have ended: what [`SimpleSpanHandler`](super::SimpleSpanHandler) keeps and
//! [`TraceTrees`](super::TraceTrees) draws.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::context::Tags;
use crate::id::{SpanId, TraceId};
use crate::llm::LlmSummary;
use crate::record::DropReason;

/// A span that has ended, as recorded by [`SimpleSpanHandler`](super::SimpleSpanHandler) and drawn by
/// [`TraceTrees`](super::TraceTrees).
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedSpan {
    /// The span's id.
    pub id: SpanId,
    /// Its parent, if any.
    pub parent: Option<SpanId>,
    /// Its trace.
    pub trace_id: Option<TraceId>,
    /// Its name.
    pub name: Cow<'static, str>,
    /// The dispatcher it was entered on.
    pub dispatcher: &'static str,
    /// When it was entered.
    pub start: DateTime<Utc>,
    /// When it ended.
    pub end: DateTime<Utc>,
    /// How it ended.
    pub outcome: SpanOutcome,
    /// What its LLM events said, if it had any ([`LlmSummary`]); boxed, so that the many
    /// spans without LLM events stay small.
    pub llm: Option<Box<LlmSummary>>,
    /// Its tags (shared with its records, not copied); rollups read `session.id` and
    /// `user.id` here.
    pub tags: Option<Arc<Tags>>,
}

impl ClosedSpan {
    /// The string value of tag `key`, if the span has it.
    pub fn tag_str(&self, key: &str) -> Option<&str> {
        self.tags.as_ref()?.get(key)?.as_str()
    }
}

impl ClosedSpan {
    /// `end - start`.
    pub fn duration(&self) -> TimeDelta {
        self.end - self.start
    }
}

/// How a span ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanOutcome {
    /// It exited normally.
    Exited,
    /// It was dropped.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The error or panic text.
        message: String,
    },
}

impl SpanOutcome {
    /// Whether the span exited normally.
    pub fn is_ok(&self) -> bool {
        matches!(self, SpanOutcome::Exited)
    }

    /// The drop reason, if the span was dropped.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            SpanOutcome::Exited => None,
            SpanOutcome::Dropped { reason, .. } => Some(*reason),
        }
    }
}
