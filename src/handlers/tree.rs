//! Trace trees: closed spans grouped by trace and nested by parent, for the terminal.
//!
//! [`TraceTrees`] is built from closed spans — by
//! [`SimpleSpanHandler::trace_trees`](crate::handlers::SimpleSpanHandler::trace_trees), or from
//! any slice with [`TraceTrees::new`] — and its `Display` draws each trace as an indented tree
//! with durations and outcomes:
//!
//! ```text
//! trace 0000000000000000000000000000002a  4 spans  40.000 ms
//! query  40.000 ms  error: no documents
//! ├─ embed  5.000 ms  ok
//! └─ retrieve  20.000 ms  error: no documents
//!    └─ vector_search  2.500 ms  cancelled
//! ```
//!
//! # How trees are built
//!
//! - Spans are grouped by trace id; traces come in order of their first span's start.
//! - Children are sorted by start time (ties: by span id, then input order), so output is
//!   deterministic.
//! - A span whose parent is not among the spans — evicted by retention, still open, or recorded
//!   by another handler — is an **orphan**: it is shown under a placeholder line
//!   `? <missing parent 00f067aa0ba902b7>` at the top level of its trace. Orphans of the same
//!   missing parent share one placeholder. The spans themselves are not changed: an orphan
//!   keeps its `parent` id.
//! - Malformed input (parent cycles, a span its own parent) cannot loop: a span not reachable
//!   from a root is placed under a placeholder for its parent.
//! - Building costs one sort and a few hash-map passes: O(n log n) time, O(n) memory. Walking and
//!   drawing are iterative, so a deep chain cannot overflow the stack.
//!
//! Names and error messages are drawn with control characters escaped (`\n`, `\u{1b}`), so a
//! span name cannot break the layout or send terminal escape sequences.
//!
//! # Examples
//!
//! Trees from spans written by hand (as in tests):
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use spanbus::handlers::{ClosedSpan, SpanOutcome, TraceTrees};
//! use spanbus::{SpanId, TraceId};
//!
//! let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
//! let span = |id: u64, parent: Option<u64>, name: &'static str, start_ms: i64, end_ms: i64| {
//!     ClosedSpan {
//!         id: SpanId::from_u64(id).unwrap(),
//!         parent: parent.and_then(SpanId::from_u64),
//!         trace_id: TraceId::from_u128(7),
//!         name: name.into(),
//!         dispatcher: "app",
//!         start: t0 + chrono::TimeDelta::milliseconds(start_ms),
//!         end: t0 + chrono::TimeDelta::milliseconds(end_ms),
//!         outcome: SpanOutcome::Exited,
//!         llm: None,
//!         tags: None,
//!     }
//! };
//! let trees = TraceTrees::new(vec![span(2, Some(1), "child", 1, 3), span(1, None, "root", 0, 4)]);
//! assert_eq!(
//!     trees.to_string(),
//!     "trace 00000000000000000000000000000007  2 spans  4.000 ms\n\
//!      root  4.000 ms  ok\n\
//!      └─ child  2.000 ms  ok\n"
//! );
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use crate::handlers::closed::{ClosedSpan, SpanOutcome};
use crate::id::{SpanId, TraceId};
use crate::llm::{LlmTotals, Prices};

// ---- the forest, shared with the HTML report ----------------------------------------------

/// What the tree builder needs of a span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanKey {
    pub(crate) trace: Option<TraceId>,
    pub(crate) id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// The input span at this index.
    Span(usize),
    /// A placeholder for a parent that is not among the spans.
    Missing(SpanId),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) item: Item,
    pub(crate) children: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct ForestTrace {
    pub(crate) trace: Option<TraceId>,
    pub(crate) roots: Vec<usize>,
    pub(crate) spans: usize,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
}

/// Trees over spans: node `i < n` is input span `i`; placeholders follow.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forest {
    pub(crate) nodes: Vec<Node>,
    pub(crate) traces: Vec<ForestTrace>,
}

impl Forest {
    /// Builds the trees in O(n log n).
    pub(crate) fn build(keys: &[SpanKey]) -> Forest {
        let n = keys.len();
        // Each trace's first start, so traces sort by when they began.
        let mut first: HashMap<Option<TraceId>, DateTime<Utc>> = HashMap::new();
        for k in keys {
            first
                .entry(k.trace)
                .and_modify(|s| *s = (*s).min(k.start))
                .or_insert(k.start);
        }
        let trace_start: Vec<DateTime<Utc>> = keys.iter().map(|k| first[&k.trace]).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            let (ka, kb) = (&keys[a], &keys[b]);
            (trace_start[a], ka.trace, ka.start, ka.id, a).cmp(&(
                trace_start[b],
                kb.trace,
                kb.start,
                kb.id,
                b,
            ))
        });

        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                item: Item::Span(i),
                children: Vec::new(),
            })
            .collect();
        let mut by_id: HashMap<(Option<TraceId>, SpanId), usize> = HashMap::with_capacity(n);
        for &i in &order {
            by_id.entry((keys[i].trace, keys[i].id)).or_insert(i);
        }
        let mut parent_of: Vec<Option<usize>> = vec![None; n];
        let mut traces: Vec<ForestTrace> = Vec::new();
        let mut trace_of: Vec<usize> = vec![0; n];
        let mut missing: HashMap<(Option<TraceId>, SpanId), usize> = HashMap::new();
        for &i in &order {
            let k = &keys[i];
            let t = match traces.last() {
                Some(last) if last.trace == k.trace => traces.len() - 1,
                _ => {
                    traces.push(ForestTrace {
                        trace: k.trace,
                        roots: Vec::new(),
                        spans: 0,
                        start: k.start,
                        end: k.end,
                    });
                    traces.len() - 1
                }
            };
            trace_of[i] = t;
            let trace = &mut traces[t];
            trace.spans += 1;
            trace.start = trace.start.min(k.start);
            trace.end = trace.end.max(k.end);
            let Some(p) = k.parent else {
                trace.roots.push(i);
                continue;
            };
            match by_id.get(&(k.trace, p)) {
                Some(&pi) if pi != i => {
                    nodes[pi].children.push(i);
                    parent_of[i] = Some(pi);
                }
                _ => {
                    let m = *missing.entry((k.trace, p)).or_insert_with(|| {
                        nodes.push(Node {
                            item: Item::Missing(p),
                            children: Vec::new(),
                        });
                        trace.roots.push(nodes.len() - 1);
                        nodes.len() - 1
                    });
                    nodes[m].children.push(i);
                }
            }
        }

        // Spans not reachable from a root sit on a parent cycle (malformed input): cut each
        // such span from its parent and show it under a placeholder of its own.
        let mut visited = vec![false; nodes.len()];
        let mut stack: Vec<usize> = traces.iter().flat_map(|t| t.roots.clone()).collect();
        mark(&nodes, &mut visited, &mut stack);
        for &i in &order {
            if visited[i] {
                continue;
            }
            if let Some(pi) = parent_of[i] {
                nodes[pi].children.retain(|&c| c != i);
            }
            let p = keys[i].parent.unwrap_or(keys[i].id);
            nodes.push(Node {
                item: Item::Missing(p),
                children: vec![i],
            });
            visited.push(true);
            traces[trace_of[i]].roots.push(nodes.len() - 1);
            stack.push(i);
            mark(&nodes, &mut visited, &mut stack);
        }
        Forest { nodes, traces }
    }

    /// Visits the nodes under `roots` depth first, children in order. `f` gets the node and,
    /// for each level from the root down to it, whether that ancestor (or the node itself, last)
    /// is the last of its siblings.
    pub(crate) fn walk(&self, roots: &[usize], mut f: impl FnMut(usize, &[bool])) {
        let mut stack: Vec<(usize, usize, bool)> = roots
            .iter()
            .enumerate()
            .rev()
            .map(|(j, &r)| (r, 0, j + 1 == roots.len()))
            .collect();
        let mut lasts: Vec<bool> = Vec::new();
        while let Some((node, depth, last)) = stack.pop() {
            lasts.truncate(depth);
            lasts.push(last);
            f(node, &lasts);
            let children = &self.nodes[node].children;
            for (j, &c) in children.iter().enumerate().rev() {
                stack.push((c, depth + 1, j + 1 == children.len()));
            }
        }
    }
}

fn mark(nodes: &[Node], visited: &mut [bool], stack: &mut Vec<usize>) {
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut visited[n], true) {
            continue;
        }
        stack.extend(nodes[n].children.iter().copied().filter(|&c| !visited[c]));
    }
}

// ---- the public view ------------------------------------------------------------------------

/// Closed spans arranged as one tree per trace; `Display` draws them all.
///
/// See the [module documentation](self) for the rules and an example.
#[derive(Debug, Clone, Default)]
pub struct TraceTrees {
    spans: Vec<ClosedSpan>,
    forest: Forest,
    prices: Prices,
}

impl TraceTrees {
    /// Arranges `spans` (in any order) into trees. The spans are kept as given.
    pub fn new(spans: Vec<ClosedSpan>) -> TraceTrees {
        let keys: Vec<SpanKey> = spans
            .iter()
            .map(|s| SpanKey {
                trace: s.trace_id,
                id: s.id,
                parent: s.parent,
                start: s.start,
                end: s.end,
            })
            .collect();
        let forest = Forest::build(&keys);
        TraceTrees {
            spans,
            forest,
            prices: Prices::new(),
        }
    }

    /// Prices LLM calls with `prices`: each LLM span's line shows its cost, and each trace's
    /// header its total (see [`LlmSummary::brief`](crate::llm::LlmSummary::brief)).
    pub fn with_prices(mut self, prices: Prices) -> TraceTrees {
        self.prices = prices;
        self
    }

    /// Arranges copies of `spans` into trees.
    pub fn from_spans(spans: &[ClosedSpan]) -> TraceTrees {
        TraceTrees::new(spans.to_vec())
    }

    /// The spans, unchanged and in the order given.
    pub fn spans(&self) -> &[ClosedSpan] {
        &self.spans
    }

    /// The number of traces.
    pub fn len(&self) -> usize {
        self.forest.traces.len()
    }

    /// Whether there are no traces (no spans).
    pub fn is_empty(&self) -> bool {
        self.forest.traces.is_empty()
    }

    /// The traces, in order of their first span's start.
    pub fn traces(&self) -> impl ExactSizeIterator<Item = TraceTree<'_>> + '_ {
        (0..self.forest.traces.len()).map(|index| TraceTree { trees: self, index })
    }

    /// The tree of trace `id`, if any of its spans is here.
    pub fn trace(&self, id: TraceId) -> Option<TraceTree<'_>> {
        self.traces().find(|t| t.trace_id() == Some(id))
    }
}

impl fmt::Display for TraceTrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tree) in self.traces().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{tree}")?;
        }
        Ok(())
    }
}

/// One trace of a [`TraceTrees`]; `Display` draws it.
#[derive(Debug, Clone, Copy)]
pub struct TraceTree<'a> {
    trees: &'a TraceTrees,
    index: usize,
}

impl<'a> TraceTree<'a> {
    fn data(&self) -> &'a ForestTrace {
        &self.trees.forest.traces[self.index]
    }

    /// The trace's id (`None` for spans recorded without one).
    pub fn trace_id(&self) -> Option<TraceId> {
        self.data().trace
    }

    /// How many spans the trace has here (placeholders not counted).
    pub fn span_count(&self) -> usize {
        self.data().spans
    }

    /// From the earliest start to the latest end among its spans.
    pub fn duration(&self) -> TimeDelta {
        self.data().end - self.data().start
    }

    /// The totals of the trace's LLM calls (spans with LLM events), priced with the trees'
    /// prices (see [`TraceTrees::with_prices`]); `None` if it has none.
    pub fn llm_totals(&self) -> Option<LlmTotals> {
        let mut totals = LlmTotals::default();
        let trees = self.trees;
        trees.forest.walk(&self.data().roots, |node, _| {
            if let Item::Span(i) = trees.forest.nodes[node].item
                && let Some(llm) = &trees.spans[i].llm
            {
                let span = &trees.spans[i];
                totals.add(llm, span.outcome.is_ok(), span.duration(), &trees.prices);
            }
        });
        (totals.calls > 0).then_some(totals)
    }

    /// The top-level nodes: root spans and orphan placeholders, by start time.
    pub fn roots(&self) -> impl ExactSizeIterator<Item = TreeNode<'a>> + 'a {
        let trees = self.trees;
        self.data()
            .roots
            .iter()
            .map(move |&node| TreeNode { trees, node })
    }
}

impl fmt::Display for TraceTree<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trace = match self.trace_id() {
            Some(id) => id.to_string(),
            None => "(none)".to_owned(),
        };
        let spans = self.span_count();
        write!(
            f,
            "trace {trace}  {spans} span{}  {}",
            if spans == 1 { "" } else { "s" },
            format_duration(self.duration())
        )?;
        if let Some(t) = self.llm_totals() {
            if t.input_tokens + t.output_tokens > 0 {
                write!(f, "  {}→{} tok", t.input_tokens, t.output_tokens)?;
            }
            if t.unpriced < t.calls {
                write!(f, "  {}", crate::llm::format_cost(t.cost))?;
            }
        }
        writeln!(f)?;
        let mut result = Ok(());
        let forest = &self.trees.forest;
        forest.walk(&self.data().roots, |node, lasts| {
            if result.is_err() {
                return;
            }
            let mut line = String::new();
            let depth = lasts.len() - 1;
            for &last in lasts.iter().take(depth).skip(1) {
                line.push_str(if last { "   " } else { "│  " });
            }
            if depth > 0 {
                line.push_str(if lasts[depth] { "└─ " } else { "├─ " });
            }
            match forest.nodes[node].item {
                Item::Span(i) => {
                    let s = &self.trees.spans[i];
                    line.push_str(&clean(&s.name));
                    line.push_str("  ");
                    line.push_str(&format_duration(s.duration()));
                    if let Some(llm) = &s.llm {
                        let brief = llm.brief(&self.trees.prices);
                        if !brief.is_empty() {
                            line.push_str("  ");
                            line.push_str(&clean(&brief));
                        }
                    }
                    line.push_str("  ");
                    line.push_str(&format_outcome(&s.outcome));
                }
                Item::Missing(id) => {
                    line.push_str(&format!("? <missing parent {id}>"));
                }
            }
            result = writeln!(f, "{line}");
        });
        result
    }
}

/// A node of a [`TraceTree`]: a span, or a placeholder for a missing parent.
#[derive(Debug, Clone, Copy)]
pub struct TreeNode<'a> {
    trees: &'a TraceTrees,
    node: usize,
}

impl<'a> TreeNode<'a> {
    /// The span, unless this is a placeholder.
    pub fn span(&self) -> Option<&'a ClosedSpan> {
        match self.trees.forest.nodes[self.node].item {
            Item::Span(i) => Some(&self.trees.spans[i]),
            Item::Missing(_) => None,
        }
    }

    /// For a placeholder, the id of the parent its children name but that is not here.
    pub fn missing_parent(&self) -> Option<SpanId> {
        match self.trees.forest.nodes[self.node].item {
            Item::Span(_) => None,
            Item::Missing(id) => Some(id),
        }
    }

    /// The children, by start time.
    pub fn children(&self) -> impl ExactSizeIterator<Item = TreeNode<'a>> + 'a {
        let trees = self.trees;
        trees.forest.nodes[self.node]
            .children
            .iter()
            .map(move |&node| TreeNode { trees, node })
    }
}

/// `850 µs`, `12.345 ms`, `1.500 s`.
pub(crate) fn format_duration(d: TimeDelta) -> String {
    match d.num_microseconds() {
        Some(us) if us.abs() < 1_000 => format!("{us} µs"),
        Some(us) if us.abs() < 1_000_000 => format!("{:.3} ms", us as f64 / 1e3),
        Some(us) => format!("{:.3} s", us as f64 / 1e6),
        None => format!("{} s", d.num_seconds()),
    }
}

fn format_outcome(outcome: &SpanOutcome) -> String {
    match outcome {
        SpanOutcome::Exited => "ok".to_owned(),
        SpanOutcome::Dropped { reason, message } if message.is_empty() => reason.to_string(),
        SpanOutcome::Dropped { reason, message } => format!("{reason}: {}", clean(message)),
    }
}

/// The text with control characters escaped.
fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
