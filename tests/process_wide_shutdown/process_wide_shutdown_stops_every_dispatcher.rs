//! The process-wide registry: `spanbus::shutdown` shuts down every dispatcher of the process.
//! This is the only test of its binary (`process_wide_shutdown`), so the global registry here is
//! this test's alone: a test beside it would find its dispatchers shut down.

use std::time::Duration;

use crate::support::recorder::{Recorder, Seen, Seq};
use spanbus::DropReason;
use spanbus::error::{EmitError, HandlerError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_wide_shutdown_flushes_closes_and_refuses_everything_afterwards() {
    let app = spanbus::get_dispatcher("app").unwrap();
    let llm = spanbus::get_dispatcher("app.llm").unwrap();
    let other = spanbus::get_dispatcher("other").unwrap();
    assert_eq!(spanbus::get_dispatcher("app").unwrap(), app);
    assert_eq!(llm.parent(), Some(app.clone()));
    assert_eq!(app.parent(), Some(spanbus::root_dispatcher()));

    let (on_app, on_other, on_root) = (Recorder::new(), Recorder::new(), Recorder::new());
    app.add_handler(on_app.clone()).unwrap();
    other.add_handler(on_other.clone()).unwrap();
    spanbus::root_dispatcher()
        .add_handler(on_root.clone())
        .unwrap();
    for n in 0..1_000 {
        llm.event(Seq { emitter: 0, n }).now().unwrap();
        other.event(Seq { emitter: 1, n }).await.unwrap();
    }
    let open = llm.span("still open").enter();

    let report = spanbus::shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.handlers.len(), 3);
    assert!(report.timed_out().next().is_none());
    assert_eq!(report.spans_dropped, 1);
    for recorder in [&on_app, &on_other] {
        assert_eq!(recorder.seqs().len(), 1_000);
        let seen = recorder.seen();
        assert_eq!(seen[seen.len() - 2..], [Seen::Flush, Seen::Close]);
    }
    assert_eq!(on_root.seqs().len(), 2_000);
    let dropped = on_app
        .records()
        .into_iter()
        .find(|r| r.class == "SpanDrop")
        .unwrap();
    assert_eq!(dropped.reason, Some(DropReason::Shutdown));
    assert_eq!(dropped.span, Some(open.context().span_id()));
    open.exit(); // nothing happens

    for d in [&app, &llm, &other, &spanbus::root_dispatcher()] {
        assert!(d.is_shut_down(), "{}", d.name());
        assert!(matches!(
            d.event(Seq { emitter: 9, n: 0 }).await,
            Err(EmitError::ShutDown { .. })
        ));
        assert!(matches!(
            d.add_handler(Recorder::new()),
            Err(HandlerError::ShutDown { .. })
        ));
    }
    // A dispatcher first asked for after the process-wide shutdown is shut down too: handlers
    // attached to it would never be flushed or closed.
    let late = spanbus::get_dispatcher("late.comer").unwrap();
    assert!(late.is_shut_down());
    assert!(matches!(
        late.add_handler(Recorder::new()),
        Err(HandlerError::ShutDown { .. })
    ));
    assert!(matches!(
        late.event(Seq { emitter: 9, n: 0 }).now(),
        Err(EmitError::ShutDown { .. })
    ));

    let again = spanbus::shutdown(Duration::from_secs(5)).await;
    assert_eq!(again, report, "idempotent");
    tokio::time::timeout(Duration::from_secs(1), spanbus::flush())
        .await
        .expect("flush after shutdown returns at once");
}
