//! Ordering: each handler sees the records of one emitter in emit order; a span's enter comes
//! before its events, which come before its exit — also when the span and the events are on
//! different dispatchers of one chain.

use std::collections::HashMap;

use crate::support::recorder::{Rec, Recorder, Seq};
use spanbus::{Dispatcher, HandlerOptions, Registry, SpanFutureExt, SpanId};

type Res = Result<(), Box<dyn std::error::Error>>;

/// Position of the first record matching `pred`.
fn pos(recs: &[Rec], pred: impl Fn(&Rec) -> bool) -> usize {
    recs.iter()
        .position(pred)
        .expect("a record matching the predicate")
}

/// Checks that every span in `recs` is entered before each of its events, and exited after.
fn assert_spans_bracket_their_events(recs: &[Rec]) -> usize {
    let mut checked = 0;
    let spans: Vec<SpanId> = recs
        .iter()
        .filter(|r| r.class == "SpanEnter")
        .filter_map(|r| r.span)
        .collect();
    for span in spans {
        let enter = pos(recs, |r| r.class == "SpanEnter" && r.span == Some(span));
        let exit = pos(recs, |r| r.class == "SpanExit" && r.span == Some(span));
        for (i, r) in recs.iter().enumerate() {
            if r.class == "Seq" && r.span == Some(span) {
                assert!(
                    enter < i && i < exit,
                    "event at {i} outside [{enter}, {exit}]"
                );
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emitters_are_each_seen_in_order_by_every_handler() -> Res {
    const EMITTERS: u64 = 8;
    const PER: u64 = 5_000;
    // A small channel, so that emitters really wait for room and sync emits overrun the bound.
    let d = Dispatcher::builder("order")
        .capacity(64.try_into()?)
        .build()?;
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::new()).collect();
    for r in &recorders {
        d.add_handler(r.clone())?;
    }
    let tasks: Vec<_> = (0..EMITTERS)
        .map(|emitter| {
            let d = d.clone();
            tokio::spawn(async move {
                for n in 0..PER {
                    if n % 3 == 0 {
                        d.event(Seq { emitter, n }).now()?;
                    } else {
                        d.event(Seq { emitter, n }).await?;
                    }
                    if n % 97 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Ok::<_, spanbus::error::EmitError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    d.flush().await;
    for r in &recorders {
        let mut next: HashMap<u64, u64> = HashMap::new();
        let recs = r.records();
        assert_eq!(recs.len() as u64, EMITTERS * PER);
        for rec in recs {
            let (emitter, n) = rec.seq.unwrap();
            let expected = next.entry(emitter).or_default();
            assert_eq!(n, *expected, "emitter {emitter} out of order");
            *expected += 1;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spans_enter_comes_before_its_events_and_its_exit_after() -> Res {
    let d = Dispatcher::builder("spans")
        .capacity(16.try_into()?)
        .build()?;
    let (lossless, lossy_big) = (Recorder::new(), Recorder::new());
    d.add_handler(lossless.clone())?;
    d.add_handler_with(lossy_big.clone(), HandlerOptions::new().lossy(1 << 20))?;
    let tasks: Vec<_> = (0..16u64)
        .map(|emitter| {
            let d = d.clone();
            let span = d.span(format!("task-{emitter}"));
            tokio::spawn(
                async move {
                    for n in 0..200 {
                        d.event(Seq { emitter, n }).await?;
                        if n % 10 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    Ok::<_, spanbus::error::EmitError>(())
                }
                .in_span(span),
            )
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    d.flush().await;
    for r in [&lossless, &lossy_big] {
        let recs = r.records();
        assert_eq!(recs.iter().filter(|r| r.class == "SpanEnter").count(), 16);
        assert_eq!(recs.iter().filter(|r| r.class == "SpanExit").count(), 16);
        assert_eq!(assert_spans_bracket_their_events(&recs), 16 * 200);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_on_a_parent_brackets_events_emitted_on_a_child() -> Res {
    let reg = Registry::new();
    let app = reg.get_dispatcher("app")?;
    let x = reg.get_dispatcher("app.x")?;
    let y = reg.get_dispatcher("app.x.y")?;
    let on_app = Recorder::new();
    app.add_handler(on_app.clone())?;
    let on_x = Recorder::new(); // a handler below the span's dispatcher sees only the events
    x.add_handler(on_x.clone())?;

    let tasks: Vec<_> = (0..4u64)
        .map(|emitter| {
            let (app, x, y) = (app.clone(), x.clone(), y.clone());
            tokio::spawn(async move {
                async {
                    for n in 0..500 {
                        if n % 2 == 0 {
                            x.event(Seq { emitter, n }).await?;
                        } else {
                            y.event(Seq { emitter, n }).now()?;
                        }
                        if n % 25 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    Ok::<_, spanbus::error::EmitError>(())
                }
                .in_span(app.span("outer"))
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    reg.flush().await;

    let recs = on_app.records();
    assert_eq!(assert_spans_bracket_their_events(&recs), 4 * 500);
    let below = on_x.records();
    assert_eq!(below.len(), 4 * 500);
    assert!(below.iter().all(|r| r.class == "Seq" && r.span.is_some()));
    Ok(())
}
