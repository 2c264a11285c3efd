//! `#[spanbus::span]` names spans `Type::method` for methods and impl blocks, and by the fn's
//! path otherwise; each call is its own span; the default dispatcher is the module path.

use crate::support::spans::{Outcome, recorded};

struct Store {
    rows: Vec<String>,
}

impl Store {
    #[spanbus::span(dispatcher = "naming")]
    fn get(&self, index: usize) -> Option<&String> {
        self.rows.get(index)
    }

    #[spanbus::span(dispatcher = "naming")]
    async fn push(&mut self, row: String) -> &mut String {
        self.rows.push(row);
        self.rows.last_mut().unwrap()
    }
}

struct Generic<T>(T);

impl<T: Clone + Send> Generic<T> {
    #[spanbus::span(dispatcher = "naming", skip_all)]
    fn inner(&self) -> T {
        self.0.clone()
    }
}

/// Every method of this block is spanned (llama-index's `DispatcherSpanMixin`).
struct Retriever {
    k: usize,
}

#[spanbus::span(dispatcher = "naming.mixin", tags(component = "retriever"))]
impl Retriever {
    fn new(k: usize) -> Self {
        Retriever { k }
    }

    async fn retrieve(&self, query: &str) -> Vec<String> {
        (0..self.k).map(|i| format!("{query}-{i}")).collect()
    }

    #[span(name = "retriever.count", skip(query))]
    fn count(&self, query: &str) -> usize {
        query.len() + self.k
    }

    const fn constant() -> usize {
        7
    }
}

trait Rank {
    fn rank(&self, docs: Vec<String>) -> Vec<String>;
}

#[spanbus::span(dispatcher = "naming.mixin")]
impl Rank for Retriever {
    fn rank(&self, mut docs: Vec<String>) -> Vec<String> {
        docs.reverse();
        docs
    }
}

#[spanbus::span(dispatcher = "naming")]
fn free_function(x: u32) -> u32 {
    x * 2
}

/// Called only by `each_call_is_its_own_span`: the tests of this file run concurrently on the
/// same "naming" dispatcher, and `methods_are_named_type_colon_colon_method` expects exactly
/// one `free_function` span.
#[spanbus::span(dispatcher = "naming")]
fn called_repeatedly(x: u32) -> u32 {
    x + 1
}

#[spanbus::span]
fn on_the_module_dispatcher() -> &'static str {
    "module"
}

#[tokio::test]
async fn methods_are_named_type_colon_colon_method() {
    let (d, spans, _) = recorded("naming");
    let mut store = Store { rows: vec![] };
    *store.push("a".into()).await = "b".into();
    assert_eq!(store.get(0).map(String::as_str), Some("b"));
    assert_eq!(Generic(5u8).inner(), 5);
    assert_eq!(free_function(21), 42);
    d.flush().await;

    assert_eq!(spans.one("Store::push").outcome, Outcome::Exited);
    assert_eq!(spans.one("Store::get").outcome, Outcome::Exited);
    spans.one("Generic::inner");
    let free = concat!(module_path!(), "::free_function");
    assert_eq!(
        free,
        "attribute::the_span_attribute_names_methods_and_impl_blocks_by_their_type::free_function"
    );
    spans.one(free);
}

#[tokio::test]
async fn an_impl_block_spans_every_method_with_its_options() {
    let (d, spans, _) = recorded("naming.mixin");
    let r = Retriever::new(2);
    let docs = r.retrieve("q").await;
    assert_eq!(docs, ["q-0", "q-1"]);
    assert_eq!(r.count("abc"), 5);
    assert_eq!(r.rank(docs), ["q-1", "q-0"]);
    assert_eq!(Retriever::constant(), 7);
    d.flush().await;

    let names: Vec<String> = spans.all().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "Retriever::new",
            "Retriever::retrieve",
            "retriever.count",
            "Retriever::rank"
        ]
    );
    for span in spans.all() {
        assert_eq!(span.outcome, Outcome::Exited);
    }
    // The block's tags reach every method; a method's own options refine the block's.
    assert_eq!(
        spans.one("Retriever::retrieve").tags["component"],
        "retriever"
    );
    assert_eq!(spans.one("retriever.count").tags["component"], "retriever");
    assert_eq!(
        spans.one("Retriever::retrieve").args,
        Some(serde_json::json!({ "query": "q" }))
    );
    assert_eq!(spans.one("retriever.count").args, None);
}

#[tokio::test]
async fn each_call_is_its_own_span() {
    let (d, spans, _) = recorded("naming");
    let before = spans.all().len();
    for _ in 0..3 {
        called_repeatedly(1);
    }
    d.flush().await;
    let name = concat!(module_path!(), "::called_repeatedly");
    let mut ids: Vec<_> = spans.all()[before..]
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.id)
        .collect();
    assert!(ids.len() >= 3);
    ids.sort();
    ids.dedup();
    assert!(ids.len() >= 3, "span ids repeat");
}

#[tokio::test]
async fn the_default_dispatcher_is_named_after_the_module_path() {
    let (d, spans, _) = recorded(&module_path!().replace("::", "."));
    assert_eq!(on_the_module_dispatcher(), "module");
    d.flush().await;
    spans.one(concat!(module_path!(), "::on_the_module_dispatcher"));
}
