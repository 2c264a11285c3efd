//! Hierarchy: a record goes to its dispatcher's handlers, then each ancestor's, stopping after a
//! dispatcher whose `propagate` is false (the root's is); parents are the nearest registered
//! ancestor and are re-linked when an intermediate appears; standalone dispatchers work; handlers
//! come and go at any time.

use std::time::Duration;

use crate::support::recorder::{Recorder, Seen, Seq, wait_until};
use spanbus::{Dispatcher, HandlerOptions, Registry};

type Res = Result<(), Box<dyn std::error::Error>>;

fn seq(n: u64) -> Seq {
    Seq { emitter: 0, n }
}

/// Which of the recorders received the `Seq` event numbered `n`.
fn receivers(recorders: &[(&str, &Recorder)], n: u64) -> Vec<String> {
    recorders
        .iter()
        .filter(|(_, r)| r.seqs().contains(&n))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[tokio::test]
async fn a_record_reaches_its_dispatcher_and_every_ancestor_up_to_the_root() -> Res {
    let reg = Registry::new();
    let root = reg.root();
    let app = reg.get_dispatcher("app")?;
    let x = reg.get_dispatcher("app.x")?;
    let y = reg.get_dispatcher("app.x.y")?;
    let other = reg.get_dispatcher("other")?;
    let (r_root, r_app, r_x, r_y, r_other) = (
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
    );
    root.add_handler(r_root.clone())?;
    app.add_handler(r_app.clone())?;
    x.add_handler(r_x.clone())?;
    y.add_handler(r_y.clone())?;
    other.add_handler(r_other.clone())?;

    y.event(seq(1)).await?;
    x.event(seq(2)).await?;
    app.event(seq(3)).await?;
    root.event(seq(4)).await?;
    other.event(seq(5)).await?;
    reg.flush().await;

    let all = [
        ("root", &r_root),
        ("app", &r_app),
        ("app.x", &r_x),
        ("app.x.y", &r_y),
        ("other", &r_other),
    ];
    assert_eq!(receivers(&all, 1), ["root", "app", "app.x", "app.x.y"]);
    assert_eq!(receivers(&all, 2), ["root", "app", "app.x"]);
    assert_eq!(receivers(&all, 3), ["root", "app"]);
    assert_eq!(receivers(&all, 4), ["root"]);
    assert_eq!(receivers(&all, 5), ["root", "other"]);

    // Every receiver sees the same record (one id, shared, not a copy per handler) with the
    // emitting dispatcher's name, not its own.
    let ids: Vec<_> = [&r_root, &r_app, &r_x, &r_y]
        .iter()
        .map(|r| {
            let rec = r.records().into_iter().find(|r| r.seq == Some((0, 1)));
            let rec = rec.unwrap();
            assert_eq!(rec.dispatcher, "app.x.y");
            rec.id
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    Ok(())
}

#[tokio::test]
async fn propagation_stops_after_a_dispatcher_whose_propagate_is_false() -> Res {
    let reg = Registry::new();
    assert!(!reg.root().propagate(), "the root's propagate is false");
    assert_eq!(reg.root().parent(), None);

    let app = reg.get_dispatcher("app")?;
    let x = reg.get_dispatcher("app.x")?;
    let y = reg.get_dispatcher("app.x.y")?;
    let (r_root, r_app, r_x, r_y) = (
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
    );
    reg.root().add_handler(r_root.clone())?;
    app.add_handler(r_app.clone())?;
    x.add_handler(r_x.clone())?;
    y.add_handler(r_y.clone())?;
    let all = [
        ("root", &r_root),
        ("app", &r_app),
        ("app.x", &r_x),
        ("app.x.y", &r_y),
    ];

    y.event(seq(1)).await?;
    x.set_propagate(false);
    y.event(seq(2)).await?; // stops after app.x, which still gets it
    x.event(seq(3)).await?;
    x.set_propagate(true);
    y.set_propagate(false);
    y.event(seq(4)).await?; // only app.x.y
    y.set_propagate(true);
    y.event(seq(5)).await?; // the whole chain again
    reg.flush().await;

    assert_eq!(receivers(&all, 1), ["root", "app", "app.x", "app.x.y"]);
    assert_eq!(receivers(&all, 2), ["app.x", "app.x.y"]);
    assert_eq!(receivers(&all, 3), ["app.x"]);
    assert_eq!(receivers(&all, 4), ["app.x.y"]);
    assert_eq!(receivers(&all, 5), ["root", "app", "app.x", "app.x.y"]);

    // A record emitted on the root stops there: nothing is above it anyway, but a
    // standalone chain with propagate=false in the middle stops the same way.
    let top = Dispatcher::new("top")?;
    let mid = Dispatcher::builder("top.mid")
        .parent(&top)
        .propagate(false)
        .build()?;
    let leaf = Dispatcher::builder("top.mid.leaf").parent(&mid).build()?;
    let (r_top, r_mid, r_leaf) = (Recorder::new(), Recorder::new(), Recorder::new());
    top.add_handler(r_top.clone())?;
    mid.add_handler(r_mid.clone())?;
    leaf.add_handler(r_leaf.clone())?;
    leaf.event(seq(6)).await?;
    leaf.flush().await;
    top.flush().await;
    let chain = [("top", &r_top), ("mid", &r_mid), ("leaf", &r_leaf)];
    assert_eq!(receivers(&chain, 6), ["mid", "leaf"]);
    Ok(())
}

#[test]
fn the_parent_is_the_nearest_registered_ancestor_and_is_relinked_when_an_intermediate_appears()
-> Res {
    let reg = Registry::new();
    let abc = reg.get_dispatcher("a.b.c")?;
    assert_eq!(
        abc.parent(),
        Some(reg.root()),
        "no ancestor registered: root"
    );
    let abcd = reg.get_dispatcher("a.b.c.d")?;
    assert_eq!(abcd.parent(), Some(abc.clone()));
    let abx = reg.get_dispatcher("a.bx")?; // shares a text prefix with a.b, not a segment
    let a = reg.get_dispatcher("a")?;
    assert_eq!(a.parent(), Some(reg.root()));
    assert_eq!(abc.parent(), Some(a.clone()), "re-linked from root to a");
    assert_eq!(abx.parent(), Some(a.clone()), "re-linked from root to a");
    assert_eq!(abcd.parent(), Some(abc.clone()), "nearer parent kept");

    let ab = reg.get_dispatcher("a.b")?;
    assert_eq!(ab.parent(), Some(a.clone()));
    assert_eq!(abc.parent(), Some(ab.clone()), "re-linked from a to a.b");
    assert_eq!(abcd.parent(), Some(abc.clone()), "nearer parent kept");
    assert_eq!(abx.parent(), Some(a.clone()), "a.bx is not under a.b");

    // The registry hands out the one dispatcher of each name.
    assert_eq!(reg.get_dispatcher("a.b.c")?, abc);
    assert_eq!(reg.get_dispatcher("root")?, reg.root());
    // Another registry has its own dispatchers.
    assert_ne!(Registry::new().get_dispatcher("a.b.c")?, abc);
    Ok(())
}

#[tokio::test]
async fn records_follow_a_relinked_parent() -> Res {
    let reg = Registry::new();
    let leaf = reg.get_dispatcher("svc.db.pool")?;
    let svc = reg.get_dispatcher("svc")?;
    let (r_svc, r_db) = (Recorder::new(), Recorder::new());
    svc.add_handler(r_svc.clone())?;
    leaf.event(seq(1)).await?; // leaf → svc (re-linked from root)
    let db = reg.get_dispatcher("svc.db")?;
    db.add_handler(r_db.clone())?;
    leaf.event(seq(2)).await?; // leaf → svc.db → svc
    reg.flush().await;
    assert_eq!(r_svc.seqs(), [1, 2]);
    assert_eq!(r_db.seqs(), [2]);
    Ok(())
}

#[tokio::test]
async fn a_standalone_dispatcher_works_on_its_own() -> Res {
    let d = Dispatcher::new("solo")?;
    assert_eq!(d.parent(), None);
    assert!(d.propagate());
    d.event(seq(0)).await?; // nobody listens: fine
    let r = Recorder::new();
    d.add_handler(r.clone())?;
    d.event(seq(1)).await?;
    d.event(seq(2)).now()?;
    d.flush().await;
    assert_eq!(r.seqs(), [1, 2]);
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.handlers.len(), 1);
    assert!(report.is_clean());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_can_be_added_and_removed_at_any_time() -> Res {
    let d = Dispatcher::new("dyn")?;
    let (a, b) = (Recorder::new(), Recorder::new());
    let id_a = d.add_handler(a.clone())?;
    for n in 0..100 {
        d.event(seq(n)).await?;
    }
    let id_b = d.add_handler_with(b.clone(), HandlerOptions::new().name("b"))?;
    for n in 100..200 {
        d.event(seq(n)).await?;
    }
    d.flush().await;
    assert!(d.remove_handler(id_a));
    assert!(!d.remove_handler(id_a), "removing twice is a no-op");
    assert!(
        wait_until(Duration::from_secs(5), || a.seen().last()
            == Some(&Seen::Close))
        .await,
        "the removed handler's close hook ran: {:?}",
        a.seen().last()
    );
    for n in 200..300 {
        d.event(seq(n)).await?;
    }
    d.flush().await;

    assert_eq!(a.seqs(), (0..200).collect::<Vec<_>>());
    assert_eq!(b.seqs(), (100..300).collect::<Vec<_>>());
    let stats = d.all_handler_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].0, id_b);
    assert_eq!(stats[0].1.name, "b");
    assert_eq!(stats[0].1.delivered, 200);

    assert!(d.remove_handler(id_b));
    assert!(
        wait_until(Duration::from_secs(5), || b.seen().last()
            == Some(&Seen::Close))
        .await,
        "the removed handler's close hook ran"
    );
    d.event(seq(300)).await?; // no handler left: still fine
    let c = Recorder::new();
    d.add_handler(c.clone())?;
    d.event(seq(301)).await?;
    d.flush().await;
    assert_eq!(c.seqs(), [301]);
    assert_eq!(b.seqs().len(), 200);
    Ok(())
}

#[tokio::test]
async fn removing_a_handler_from_the_wrong_dispatcher_does_nothing() -> Res {
    let (d, e) = (Dispatcher::new("d")?, Dispatcher::new("e")?);
    let r = Recorder::new();
    let id = d.add_handler(r.clone())?;
    assert!(!e.remove_handler(id));
    d.event(seq(1)).await?;
    d.flush().await;
    assert_eq!(r.seqs(), [1]);
    Ok(())
}

/// Hangs forever in `handle`.
struct Hung;

impl spanbus::Handler for Hung {
    async fn handle(&mut self, _: &spanbus::Record) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_hung_lossless_handler_releases_the_emitters_it_held() -> Res {
    let d = Dispatcher::builder("held")
        .capacity(4.try_into()?)
        .build()?;
    let hung = d.add_handler(Hung)?;
    let emitter = tokio::spawn({
        let d = d.clone();
        async move {
            for n in 0..10_000 {
                d.event(seq(n)).await?;
            }
            Ok::<_, spanbus::error::EmitError>(())
        }
    });
    // The emitter cannot finish while the hung handler holds the channel full.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), async {
            while !emitter.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err()
    );
    assert!(d.remove_handler(hung));
    tokio::time::timeout(Duration::from_secs(10), emitter).await???;
    Ok(())
}

#[test]
fn concurrent_creation_in_any_order_links_every_dispatcher_to_its_nearest_registered_ancestor()
-> Res {
    // Every name of a 3-wide, 4-deep tree, created from 4 threads in different orders.
    let mut names = Vec::new();
    let segs = ["a", "b", "c"];
    let mut level: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    for _ in 0..4 {
        names.extend(level.iter().cloned());
        level = level
            .iter()
            .flat_map(|p| segs.iter().map(move |s| format!("{p}.{s}")))
            .collect();
    }
    for round in 0..5u64 {
        let reg = Registry::new();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let (reg, names) = (&reg, &names);
                scope.spawn(move || {
                    // A different deterministic order per thread and round; some names skipped.
                    let mut order: Vec<&String> = names.iter().collect();
                    let mut state = (round * 4 + t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    for i in (1..order.len()).rev() {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        order.swap(i, (state % (i as u64 + 1)) as usize);
                    }
                    for name in order {
                        // Some intermediates never exist: `c`, and every `x.b` at depth 2.
                        let depth = name.matches('.').count();
                        if name != "c" && !(depth == 1 && name.ends_with(".b")) {
                            reg.get_dispatcher(name).unwrap();
                        }
                    }
                });
            }
        });
        let all = reg.dispatchers();
        let registered: std::collections::HashMap<String, Dispatcher> = all
            .iter()
            .map(|d| (d.name().to_owned(), d.clone()))
            .collect();
        assert_eq!(all.len(), 1 + names.len() - 1 - 3);
        assert_eq!(reg.get_dispatcher("c.a")?.parent(), Some(reg.root()));
        assert_eq!(
            reg.get_dispatcher("a.b.c")?.parent(),
            Some(reg.get_dispatcher("a")?)
        );
        for d in &all[1..] {
            let name = d.name();
            let nearest = name
                .rmatch_indices('.')
                .map(|(i, _)| &name[..i])
                .find_map(|a| registered.get(a).cloned())
                .unwrap_or_else(|| reg.root());
            assert_eq!(d.parent(), Some(nearest), "round {round}: {name}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_added_on_an_ancestor_mid_stream_gets_a_gapless_suffix() -> Res {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    const N: u64 = 200_000;
    for round in 0..3u64 {
        let reg = Registry::new();
        let app = reg.get_dispatcher("app")?;
        let leaf = reg.get_dispatcher("app.x.y")?;
        let counter = Arc::new(AtomicU64::new(0));
        let emitter = tokio::spawn({
            let (leaf, counter) = (leaf.clone(), Arc::clone(&counter));
            async move {
                for n in 0..N {
                    if n % 2 == 0 {
                        leaf.event(seq(n)).now()?;
                    } else {
                        leaf.event(seq(n)).await?;
                    }
                    counter.store(n + 1, Ordering::SeqCst);
                    if n % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Ok::<_, spanbus::error::EmitError>(())
            }
        });
        // Wait until the stream is well under way, then attach on the ancestor.
        let start_at = 20_000 * (round + 1);
        assert!(
            wait_until(Duration::from_secs(30), || counter.load(Ordering::SeqCst)
                >= start_at)
            .await
        );
        let r = Recorder::new();
        let id = app.add_handler(r.clone())?;
        let emitted_before_add = counter.load(Ordering::SeqCst);
        let stop_at = emitted_before_add + 30_000;
        assert!(
            wait_until(Duration::from_secs(30), || counter.load(Ordering::SeqCst)
                >= stop_at)
            .await
        );
        assert!(app.remove_handler(id));
        let emitted_before_remove = counter.load(Ordering::SeqCst);
        emitter.await??;

        let got = r.seqs();
        let (first, last) = (got[0], *got.last().unwrap());
        // `counter` lags by the one emit that may be in flight while the handler comes or goes.
        assert!(
            first <= emitted_before_add + 1,
            "everything emitted after add_handler returned is seen (first {first}, \
             {emitted_before_add} emitted before)"
        );
        assert!(
            last <= emitted_before_remove,
            "nothing emitted after remove_handler returned is seen"
        );
        assert_eq!(got, (first..=last).collect::<Vec<_>>(), "no gaps");
    }
    Ok(())
}
