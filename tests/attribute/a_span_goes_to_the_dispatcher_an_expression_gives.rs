//! `dispatcher = <expr>`: a span goes to a dispatcher held anywhere — a struct field, a
//! `Registry::new()` registry's, a standalone one — not only to the process-wide registry.

use std::sync::{Arc, OnceLock};

use spanbus::handlers::SimpleSpanHandler;
use spanbus::{Dispatcher, Registry};

struct Pipeline {
    bus: Dispatcher,
}

impl Pipeline {
    #[spanbus::span(dispatcher = self.bus)]
    fn retrieve(&self, query: &str) -> usize {
        query.len()
    }

    #[spanbus::span(dispatcher = &self.bus, name = "pipeline.answer")]
    async fn answer(&self, query: String) -> String {
        format!("{query}!")
    }
}

struct Shared {
    bus: Arc<Dispatcher>,
}

#[spanbus::span(dispatcher = self.bus)]
impl Shared {
    fn step(&self) {}
}

static BUS: OnceLock<Dispatcher> = OnceLock::new();

#[spanbus::span(dispatcher = BUS.get().expect("set by the test"))]
fn from_a_static(x: u32) -> u32 {
    x + 1
}

#[spanbus::span(dispatcher = bus, skip(bus))]
fn from_an_argument(bus: &Dispatcher, x: u32) -> u32 {
    let _ = bus;
    x * 2
}

fn names(spans: &SimpleSpanHandler) -> Vec<String> {
    spans.spans().iter().map(|s| s.name.to_string()).collect()
}

#[tokio::test]
async fn a_span_goes_to_a_dispatcher_in_a_struct_field() {
    let bus = Dispatcher::new("field").unwrap();
    let spans = SimpleSpanHandler::new();
    bus.add_span_handler(spans.clone()).unwrap();
    let pipeline = Pipeline { bus: bus.clone() };
    assert_eq!(pipeline.retrieve("rust"), 4);
    assert_eq!(pipeline.answer("why".into()).await, "why!");
    let shared = Shared {
        bus: Arc::new(bus.clone()),
    };
    shared.step();
    bus.flush().await;
    assert_eq!(
        names(&spans),
        ["Pipeline::retrieve", "pipeline.answer", "Shared::step"]
    );
    assert_eq!(
        spans.spans()[0].dispatcher,
        "field",
        "the field's dispatcher, not one found by name"
    );
}

#[tokio::test]
async fn a_span_goes_to_a_dispatcher_of_a_registry_of_its_own() {
    let registry = Registry::new();
    let bus = registry.get_dispatcher("own.registry").unwrap();
    let spans = SimpleSpanHandler::new();
    registry.root().add_span_handler(spans.clone()).unwrap();
    assert_eq!(from_an_argument(&bus, 21), 42);
    registry.flush().await;
    assert_eq!(
        names(&spans).len(),
        1,
        "reached the registry's root through propagation"
    );
    assert!(names(&spans)[0].ends_with("::from_an_argument"));
    // The process-wide dispatcher of the same name saw nothing.
    assert!(
        spanbus::get_dispatcher("own.registry")
            .unwrap()
            .all_handler_stats()
            .is_empty()
    );
}

#[tokio::test]
async fn a_span_goes_to_a_standalone_dispatcher_in_a_static() {
    let bus = BUS.get_or_init(|| Dispatcher::new("standalone").unwrap());
    let spans = SimpleSpanHandler::new();
    bus.add_span_handler(spans.clone()).unwrap();
    assert_eq!(from_a_static(1), 2);
    bus.flush().await;
    assert_eq!(names(&spans).len(), 1);
    assert!(names(&spans)[0].ends_with("::from_a_static"));
}
