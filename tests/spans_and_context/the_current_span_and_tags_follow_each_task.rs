//! Context: the current span and tags live with each task, across `.await` and thread
//! migration; nested spans get the right parent; tag scopes nest and merge (inner key wins);
//! spans snapshot the tags at entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::support::recorder::{Recorder, Seq};
use serde_json::json;
use spanbus::context::Context;
use spanbus::{
    Dispatcher, Handler, Record, RecordKind, SpanFutureExt, SpanId, current_span, tags_in_scope,
    with_tags,
};

/// Checks every `Seq` event against the span its emitter's task entered.
#[derive(Default)]
struct Attribution {
    span_of_task: HashMap<SpanId, u64>,
    attributed: u64,
    wrong: u64,
    out: Arc<Mutex<(u64, u64, usize)>>,
}

impl Handler for Attribution {
    async fn handle(&mut self, record: &Record) {
        match record.kind() {
            RecordKind::SpanEnter(enter) => {
                let task = enter.name.strip_prefix("task-").unwrap().parse().unwrap();
                self.span_of_task.insert(enter.id, task);
            }
            RecordKind::Event(_) => {
                let emitter = record.event::<Seq>().unwrap().emitter;
                let owner = record.span_id().and_then(|s| self.span_of_task.get(&s));
                if owner == Some(&emitter) {
                    self.attributed += 1;
                } else {
                    self.wrong += 1;
                }
            }
            _ => {}
        }
    }

    async fn flush(&mut self) {
        *self.out.lock().unwrap() = (self.attributed, self.wrong, self.span_of_task.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_64_interleaved_tasks_carries_its_own_tasks_span() {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 20_000;
    let d = Dispatcher::new("w5").unwrap();
    let out = Arc::new(Mutex::new((0, 0, 0)));
    d.add_handler(Attribution {
        out: Arc::clone(&out),
        ..Attribution::default()
    })
    .unwrap();
    let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));

    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let d = d.clone();
            let span = d.span(format!("task-{task}"));
            let threads = Arc::clone(&threads);
            tokio::spawn(
                async move {
                    let mine = current_span().unwrap();
                    for n in 0..PER_TASK {
                        d.event(Seq { emitter: task, n }).await.unwrap();
                        if n % 50 == 49 {
                            tokio::task::yield_now().await;
                            assert_eq!(current_span(), Some(mine), "the span survives .await");
                            threads.lock().unwrap().insert(std::thread::current().id());
                        }
                    }
                }
                .in_span(span),
            )
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    d.flush().await;
    let elapsed = start.elapsed();

    let (attributed, wrong, spans) = *out.lock().unwrap();
    let total = TASKS * PER_TASK;
    println!(
        "context: tasks={TASKS} events={total} attributed={attributed} ({:.2}%) wrong={wrong} \
         worker threads seen={} in {elapsed:.2?}",
        100.0 * attributed as f64 / total as f64,
        threads.lock().unwrap().len()
    );
    assert_eq!(spans as u64, TASKS);
    assert_eq!(wrong, 0);
    assert_eq!(attributed, total);
    assert_eq!(
        current_span(),
        None,
        "nothing leaks into the test's own task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_spans_get_the_right_parent_across_awaits_and_spawns() {
    let d = Dispatcher::new("nest").unwrap();
    let r = Recorder::new();
    d.add_handler(r.clone()).unwrap();
    let d2 = d.clone();
    async move {
        let root = current_span().unwrap();
        for i in 0..3 {
            let d3 = d2.clone();
            async move {
                let child = current_span().unwrap();
                assert_eq!(child.trace_id(), root.trace_id());
                tokio::task::yield_now().await;
                // A spawned task keeps the span only when asked to.
                let carried = tokio::spawn(async { current_span() }.in_current_span());
                assert_eq!(carried.await.unwrap(), Some(child));
                let bare = tokio::spawn(async { current_span() });
                assert_eq!(bare.await.unwrap(), None);
                async {}.in_span(d3.span(format!("grandchild-{i}"))).await;
                assert_eq!(current_span(), Some(child), "restored after the inner span");
            }
            .in_span(d2.span(format!("child-{i}")))
            .await;
            assert_eq!(current_span(), Some(root));
        }
    }
    .in_span(d.span("root"))
    .await;
    // A fresh top-level span starts a new trace.
    let other = async { current_span().unwrap() }
        .in_span(d.span("other"))
        .await;

    d.flush().await;
    let recs = r.records();
    let id = |name: &str| {
        recs.iter()
            .find(|r| r.class == "SpanEnter" && r.name.as_deref() == Some(name))
            .unwrap()
            .clone()
    };
    assert_eq!(id("root").parent, None);
    for i in 0..3 {
        assert_eq!(id(&format!("child-{i}")).parent, id("root").span);
        assert_eq!(
            id(&format!("grandchild-{i}")).parent,
            id(&format!("child-{i}")).span
        );
    }
    assert_eq!(id("other").parent, None);
    assert_ne!(Some(other.span_id()), id("root").span);
}

#[tokio::test]
async fn tag_scopes_nest_and_merge_and_records_carry_the_merged_tags() {
    let d = Dispatcher::new("tags").unwrap();
    let r = Recorder::new();
    d.add_handler(r.clone()).unwrap();
    let e = |n| Seq { emitter: 0, n };
    with_tags(
        [("tenant", json!("acme")), ("tier", json!("free"))],
        async {
            d.event(e(0)).await.unwrap();
            with_tags([("tier", json!("pro")), ("req", json!(7))], async {
                tokio::task::yield_now().await;
                d.event(e(1)).await.unwrap();
                // A per-event tag is added, but the active scope wins on a clash (llama-index).
                d.event(e(2))
                    .tag("extra", true)
                    .tag("tier", "event")
                    .now()
                    .unwrap();
                tags_in_scope([("tenant", "globex")], || d.event(e(3)).now().unwrap());
            })
            .await;
            d.event(e(4)).await.unwrap();
        },
    )
    .await;
    d.event(e(5)).await.unwrap();
    d.flush().await;

    let tags: Vec<serde_json::Value> = r
        .records()
        .iter()
        .map(|r| serde_json::to_value(&r.tags).unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            json!({"tenant": "acme", "tier": "free"}),
            json!({"tenant": "acme", "tier": "pro", "req": 7}),
            json!({"tenant": "acme", "tier": "pro", "req": 7, "extra": true}),
            json!({"tenant": "globex", "tier": "pro", "req": 7}),
            json!({"tenant": "acme", "tier": "free"}),
            json!({}),
        ]
    );
    assert!(Context::current().tags().is_empty());
}

#[tokio::test]
async fn a_span_snapshots_the_tags_active_at_its_entry() {
    let d = Dispatcher::new("snap").unwrap();
    let r = Recorder::new();
    d.add_handler(r.clone()).unwrap();

    // Entered inside a scope, with a tag of its own.
    let job = tags_in_scope([("tenant", "acme")], || {
        d.span("job").tag("job", "nightly").enter()
    });
    // Used later outside that scope, and inside a different one: the snapshot stays.
    with_tags([("tenant", "other"), ("outer", "x")], async {
        job.attach(async {
            d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
            with_tags([("step", 1)], async {
                d.event(Seq { emitter: 0, n: 1 }).await.unwrap();
            })
            .await;
        })
        .await;
    })
    .await;
    job.exit();
    d.flush().await;

    let recs = r.records();
    let enter = recs.iter().find(|r| r.class == "SpanEnter").unwrap();
    assert_eq!(
        serde_json::to_value(&enter.tags).unwrap(),
        json!({"tenant": "acme", "job": "nightly"})
    );
    let events: Vec<_> = recs.iter().filter(|r| r.seq.is_some()).collect();
    assert_eq!(
        serde_json::to_value(&events[0].tags).unwrap(),
        json!({"tenant": "acme", "job": "nightly"})
    );
    assert_eq!(
        serde_json::to_value(&events[1].tags).unwrap(),
        json!({"tenant": "acme", "job": "nightly", "step": 1})
    );
    let exit = recs.iter().find(|r| r.class == "SpanExit").unwrap();
    assert_eq!(exit.tags, enter.tags);
}

#[tokio::test]
async fn an_explicit_span_or_parent_overrides_the_current_one() {
    let d = Dispatcher::new("explicit").unwrap();
    let r = Recorder::new();
    d.add_handler(r.clone()).unwrap();
    let elsewhere = d.span("elsewhere").enter();
    let other = elsewhere.context();
    async {
        d.event(Seq { emitter: 0, n: 0 }).await.unwrap();
        d.event(Seq { emitter: 0, n: 1 })
            .span(Some(other))
            .await
            .unwrap();
        d.event(Seq { emitter: 0, n: 2 }).span(None).now().unwrap();
        // A span with an explicit parent joins that parent's trace; `None` starts a new one.
        let adopted = async { current_span().unwrap() }
            .in_span(d.span("adopted").parent(Some(other)))
            .await;
        assert_eq!(adopted.trace_id(), other.trace_id());
        let orphan = async { current_span().unwrap() }
            .in_span(d.span("orphan").parent(None))
            .await;
        assert_ne!(orphan.trace_id(), current_span().unwrap().trace_id());
    }
    .in_span(d.span("current"))
    .await;
    elsewhere.exit();
    d.flush().await;

    let recs = r.records();
    let enter = |name: &str| {
        recs.iter()
            .find(|r| r.class == "SpanEnter" && r.name.as_deref() == Some(name))
            .unwrap()
            .clone()
    };
    let current = enter("current").span;
    let spans: Vec<_> = recs
        .iter()
        .filter(|r| r.seq.is_some())
        .map(|r| r.span)
        .collect();
    assert_eq!(spans, [current, Some(other.span_id()), None]);
    assert_eq!(enter("adopted").parent, Some(other.span_id()));
    assert_eq!(enter("orphan").parent, None);
}
