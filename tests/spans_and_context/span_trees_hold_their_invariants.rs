//! Property tests of span trees under random nesting, errors, panics and cancellations.
//!
//! Each case is a random forest of span nodes. A node emits a few events, awaits its children
//! (some after yielding), then ends in one of four ways: completes, returns `Err`, panics, or is
//! cancelled (its parent — or the test, for a root — polls it once and drops it, which may cut
//! off its children mid-way). The roots run concurrently on a two-worker runtime through a real
//! dispatcher with a recording handler; then the dispatcher is flushed and shut down, and the
//! recorded signals must show:
//!
//! - every opened span closed exactly once, and nothing closed that was not opened;
//! - parents exist: a child's parent was entered before it, and closed after it;
//! - durations are non-negative (a span's close is not timestamped before its enter);
//! - one tree per root: trace ids are equal down each tree and distinct between roots;
//! - each span ends the way its code did (exit, `Error`, `Panic`, or `Cancelled` when it or an
//!   ancestor was dropped), and each event lies inside its span.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use proptest::prelude::*;
use serde::Serialize;
use spanbus::{Dispatcher, DropReason, Event, Handler, Record, RecordKind, SpanFutureExt};

const PANIC_TEXT: &str = "deliberate span panic";

#[derive(Serialize)]
struct Step(u32);

impl Event for Step {
    const NAME: &'static str = "Step";
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Complete,
    Err,
    Panic,
    Cancel,
}

#[derive(Debug, Clone)]
struct Node {
    end: End,
    events: u8,
    yield_first: bool,
    children: Vec<Node>,
}

fn node() -> impl Strategy<Value = Node> {
    let end = prop_oneof![
        Just(End::Complete),
        Just(End::Err),
        Just(End::Panic),
        Just(End::Cancel)
    ];
    let leaf = (end.clone(), 0u8..3, any::<bool>()).prop_map(|(end, events, yield_first)| Node {
        end,
        events,
        yield_first,
        children: Vec::new(),
    });
    leaf.prop_recursive(4, 24, 3, move |inner| {
        (
            end.clone(),
            0u8..3,
            any::<bool>(),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(end, events, yield_first, children)| Node {
                end,
                events,
                yield_first,
                children,
            })
    })
}

// ---- running a forest ---------------------------------------------------------------------

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Per node (by its number in pre-order): whether its code reached its end.
type Reached = Arc<Mutex<HashMap<usize, bool>>>;

/// Numbers the nodes in pre-order and builds the future of `node` (named `n<number>`).
fn build(d: &Dispatcher, node: &Node, next: &mut usize, reached: &Reached) -> BoxFuture {
    let me = *next;
    *next += 1;
    let children: Vec<(End, BoxFuture)> = node
        .children
        .iter()
        .map(|c| (c.end, build(d, c, next, reached)))
        .collect();
    let (d2, reached) = (d.clone(), Arc::clone(reached));
    let (end, events, yield_first) = (node.end, node.events, node.yield_first);
    let body = async move {
        reached.lock().unwrap().insert(me, false);
        if yield_first {
            tokio::task::yield_now().await;
        }
        for i in 0..events {
            d2.event(Step(u32::from(i))).await.expect("emit");
        }
        for (child_end, child) in children {
            drive(child, child_end).await;
        }
        reached.lock().unwrap().insert(me, true);
        match end {
            End::Complete => Ok(()),
            End::Err => Err(format!("n{me} failed")),
            End::Panic => panic!("{PANIC_TEXT} in n{me}"),
            End::Cancel => {
                // Pending here at the latest, so the parent's single poll never completes it.
                tokio::task::yield_now().await;
                Ok(())
            }
        }
    };
    Box::pin(body.in_span_result(d.span(format!("n{me}"))))
}

/// How a parent (or the test, for a root) awaits a child: to completion, catching its panic,
/// or, for a cancelled child, one poll and then a drop.
async fn drive(mut child: BoxFuture, end: End) {
    if end == End::Cancel {
        let polled = futures::poll!(&mut child);
        assert!(
            polled.is_pending(),
            "a cancelled node is pending after one poll"
        );
        drop(child);
    } else {
        let _ = std::panic::AssertUnwindSafe(child).catch_unwind().await;
    }
}

// ---- recording ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Signal {
    Enter { parent: Option<u64>, name: String },
    Exit,
    Drop(DropReason),
    Event,
}

#[derive(Debug, Clone)]
struct Seen {
    span: Option<u64>,
    trace: Option<u128>,
    at: DateTime<Utc>,
    signal: Signal,
}

struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Handler for Recorder {
    async fn handle(&mut self, record: &Record) {
        let signal = match record.kind() {
            RecordKind::SpanEnter(e) => Signal::Enter {
                parent: e.parent.map(|p| p.to_u64()),
                name: e.name.to_string(),
            },
            RecordKind::SpanExit(_) => Signal::Exit,
            RecordKind::SpanDrop(d) => Signal::Drop(d.reason),
            _ if record.event::<Step>().is_some() => Signal::Event,
            _ => return, // the SpanDropEvent that accompanies each drop
        };
        self.0.lock().unwrap().push(Seen {
            span: record.span_id().map(|s| s.to_u64()),
            trace: record.span().map(|s| s.trace_id().to_u128()),
            at: record.timestamp(),
            signal,
        });
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or_default();
            if !text.starts_with(PANIC_TEXT) {
                default(info);
            }
        }));
    });
}

/// What a node's span must end with, given whether its code reached its end.
fn expected_end(end: End, reached: bool) -> Option<DropReason> {
    match (reached, end) {
        (false, _) | (true, End::Cancel) => Some(DropReason::Cancelled),
        (true, End::Complete) => None,
        (true, End::Err) => Some(DropReason::Error),
        (true, End::Panic) => Some(DropReason::Panic),
    }
}

fn ends(node: &Node, out: &mut Vec<End>) {
    out.push(node.end);
    for c in &node.children {
        ends(c, out);
    }
}

/// A span's enter: its index in the record stream, parent, trace, name and time.
type Entered = (usize, Option<u64>, Option<u128>, String, DateTime<Utc>);

fn check_forest(roots: Vec<Node>) -> Result<(), TestCaseError> {
    quiet_expected_panics();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reached: Reached = Arc::default();
    let mut node_ends = Vec::new();
    for r in &roots {
        ends(r, &mut node_ends);
    }
    let report = runtime().block_on(async {
        let d = Dispatcher::new("props").unwrap();
        d.add_handler(Recorder(Arc::clone(&seen))).unwrap();
        let mut next = 0;
        let tasks: Vec<_> = roots
            .iter()
            .map(|r| {
                let fut = build(&d, r, &mut next, &reached);
                tokio::spawn(drive(fut, r.end))
            })
            .collect();
        for t in tasks {
            t.await.expect("a driver never panics");
        }
        d.flush().await;
        d.shutdown(Duration::from_secs(30)).await
    });
    prop_assert!(report.is_clean(), "{:?}", report);
    prop_assert_eq!(report.spans_dropped, 0, "every span ended before shutdown");

    let seen = seen.lock().unwrap().clone();
    let reached = reached.lock().unwrap().clone();
    let mut entered: HashMap<u64, Entered> = HashMap::new();
    // span id -> (index of close, reason, close time)
    let mut closed: HashMap<u64, (usize, Option<DropReason>, DateTime<Utc>)> = HashMap::new();
    for (i, s) in seen.iter().enumerate() {
        let id = s.span.expect("every recorded signal has a span");
        match &s.signal {
            Signal::Enter { parent, name } => {
                let dup = entered.insert(id, (i, *parent, s.trace, name.clone(), s.at));
                prop_assert!(dup.is_none(), "span {} entered twice", name);
            }
            Signal::Exit | Signal::Drop(_) => {
                let reason = match s.signal {
                    Signal::Drop(r) => Some(r),
                    _ => None,
                };
                prop_assert!(entered.contains_key(&id), "closed before or without enter");
                let dup = closed.insert(id, (i, reason, s.at));
                prop_assert!(dup.is_none(), "span closed twice");
            }
            Signal::Event => {
                prop_assert!(entered.contains_key(&id), "event before its span's enter");
                prop_assert!(!closed.contains_key(&id), "event after its span closed");
            }
        }
    }

    // Every node whose code started entered its span, and only those.
    prop_assert_eq!(entered.len(), reached.len());
    let mut root_traces = HashSet::new();
    for (id, (enter_at, parent, trace, name, start)) in &entered {
        let Some((close_at, reason, end)) = closed.get(id) else {
            return Err(TestCaseError::fail(format!("{name} never closed")));
        };
        prop_assert!(end >= start, "{} closed before it was entered", name);
        prop_assert!(close_at > enter_at);
        let me: usize = name[1..].parse().unwrap();
        let want = expected_end(node_ends[me], reached[&me]);
        prop_assert_eq!(*reason, want, "{} ended the wrong way", name);
        match parent {
            None => prop_assert!(root_traces.insert(*trace), "two roots share a trace"),
            Some(p) => {
                let Some((p_enter, _, p_trace, p_name, _)) = entered.get(p) else {
                    return Err(TestCaseError::fail(format!(
                        "{name}'s parent never entered"
                    )));
                };
                prop_assert!(p_enter < enter_at, "{} entered before its parent", name);
                prop_assert_eq!(p_trace, trace, "{} left its parent's trace", name);
                let p_close = closed[p].0;
                prop_assert!(
                    *close_at < p_close,
                    "{} outlived its parent {}",
                    name,
                    p_name
                );
            }
        }
    }
    prop_assert_eq!(root_traces.len(), roots.len(), "one tree per root");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn span_trees_hold_their_invariants(roots in prop::collection::vec(node(), 1..5)) {
        check_forest(roots)?;
    }
}
