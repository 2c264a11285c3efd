//! Built-in handlers.
//!
//! | handler | what it keeps or writes |
//! |---|---|
//! | [`NullEventHandler`], [`NullSpanHandler`] | nothing |
//! | [`SimpleSpanHandler`] | closed spans (bounded), drawn as [`TraceTrees`], and the spans still running |
//! | [`JsonlHandler`] | every record as one JSON object per line, and optionally a summary line per trace |
//! | [`HtmlReport`] | a self-contained waterfall page of every trace |

mod closed;
mod html;
mod jsonl;
mod null;
mod output;
mod simple;
mod trace_summary;
pub mod tree;

pub use closed::{ClosedSpan, SpanOutcome};
pub use html::{HtmlReport, HtmlReportOptions};
pub use jsonl::JsonlHandler;
pub use null::{NullEventHandler, NullSpanHandler};
pub use output::OutputStatus;
pub use simple::{DEFAULT_RETENTION, OpenSimpleSpan, RunningSpan, SimpleSpanHandler};
pub use trace_summary::TRACE_SUMMARY_CLASS_NAME;
pub use tree::{TraceTree, TraceTrees, TreeNode};
