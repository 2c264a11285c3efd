//! `SimpleSpanHandler::running`: the spans entered and not yet ended, with their ids, names and
//! start times, beside the closed ones.

use spanbus::handlers::SimpleSpanHandler;

#[tokio::test]
async fn running_spans_are_listed_until_they_end_then_move_to_the_closed_ones() {
    let d = spanbus::Dispatcher::new("running").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();

    let query = d.span("query").enter();
    let retrieve = d.span("retrieve").enter();
    d.flush().await;

    let running = spans.running();
    let names: Vec<&str> = running.iter().map(|s| s.name.as_ref()).collect();
    println!("running: {names:?}");
    assert_eq!(names, ["query", "retrieve"], "oldest first");
    assert_ne!(running[0].id, running[1].id);
    assert_eq!(running[0].dispatcher, "running");
    assert!(running[0].start <= running[1].start);
    assert!(spans.spans().is_empty());

    drop(retrieve);
    d.flush().await;
    assert_eq!(spans.running().len(), 1);
    assert_eq!(spans.spans()[0].name, "retrieve");
    drop(query);
    d.flush().await;
    assert!(spans.running().is_empty());
    assert_eq!(spans.len(), 2);

    // A span still running at shutdown is dropped there, and leaves the running list.
    let _left_open = d.span("left_open").enter();
    d.flush().await;
    assert_eq!(spans.running().len(), 1);
    d.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(spans.running().is_empty());
    assert_eq!(
        spans.spans().last().map(|s| s.name.as_ref()),
        Some("left_open")
    );
}
