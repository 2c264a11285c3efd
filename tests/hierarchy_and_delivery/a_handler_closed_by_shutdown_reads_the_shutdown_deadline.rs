//! A handler's last `flush` and its `close` read the deadline of the shutdown that closes it
//! (`spanbus::handler::close_deadline`), so they can finish by it; everywhere else (a flush
//! barrier, `handle`, a removed handler's close, outside a handler) there is none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spanbus::{Dispatcher, Handler, Record};

/// Which hook saw which deadline, in call order.
type Seen = Arc<Mutex<Vec<(&'static str, Option<Instant>)>>>;

struct Watch(Seen);

impl Watch {
    fn note(&self, hook: &'static str) {
        let deadline = spanbus::handler::close_deadline();
        self.0.lock().unwrap().push((hook, deadline));
    }
}

impl Handler for Watch {
    async fn handle(&mut self, _: &Record) {
        self.note("handle");
    }

    async fn flush(&mut self) {
        self.note("flush");
    }

    async fn close(&mut self) {
        self.note("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_flush_and_the_close_of_a_shutdown_read_its_deadline_and_nothing_else_does() {
    assert_eq!(
        spanbus::handler::close_deadline(),
        None,
        "outside a handler"
    );

    let shut = Seen::default();
    let d = Dispatcher::new("closing_by_a_deadline").unwrap();
    d.add_handler(Watch(shut.clone())).unwrap();
    d.span("work").in_scope(|| ());
    d.flush().await;
    let timeout = Duration::from_secs(2);
    let before = Instant::now();
    let report = d.shutdown(timeout).await;
    let after = Instant::now();
    assert!(report.is_clean(), "{report:?}");

    let removed = Seen::default();
    let d = Dispatcher::new("closing_without_a_deadline").unwrap();
    let id = d.add_handler(Watch(removed.clone())).unwrap();
    d.span("work").in_scope(|| ());
    assert!(d.remove_handler(id));
    d.flush().await;
    let wait_until = Instant::now() + Duration::from_secs(5);
    while removed.lock().unwrap().last().map(|s| s.0) != Some("close") {
        assert!(
            Instant::now() < wait_until,
            "the removed handler was closed"
        );
        tokio::task::yield_now().await;
    }

    let shut = shut.lock().unwrap().clone();
    let removed = removed.lock().unwrap().clone();
    let from_start = |seen: &[(&str, Option<Instant>)]| {
        seen.iter()
            .map(|(hook, d)| format!("{hook}: {:?}", d.map(|d| d - before)))
            .collect::<Vec<_>>()
    };
    println!(
        "deadlines seen, from the shutdown call: shutdown({timeout:?}) {:?}; removed {:?}",
        from_start(&shut),
        from_start(&removed)
    );
    let hooks: Vec<_> = shut.iter().map(|s| s.0).collect();
    assert_eq!(hooks, ["handle", "handle", "flush", "flush", "close"]);
    for (hook, deadline) in &shut[..3] {
        assert_eq!(*deadline, None, "{hook} outside shutdown");
    }
    for (hook, deadline) in &shut[3..] {
        let deadline = deadline.unwrap_or_else(|| panic!("{hook} at shutdown has no deadline"));
        assert!(
            deadline >= before + timeout && deadline <= after + timeout,
            "{hook}: the shutdown's deadline"
        );
    }
    assert!(
        removed.iter().all(|(_, deadline)| deadline.is_none()),
        "{removed:?}"
    );
    assert_eq!(removed.last().map(|s| s.0), Some("close"));
}
