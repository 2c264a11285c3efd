//! A method's span is named after the type that calls it, as llama-index names a span by the
//! runtime class: a trait's default method (Rust's inherited method) and a blanket impl give each
//! implementor's spans its own name, whichever type called first; a generic impl is named after
//! its type without the arguments.

use std::fmt::Display;

use crate::support::spans::recorded;

/// The base "class": its default methods are inherited by every implementor.
trait Base {
    #[spanbus::span(dispatcher = "naming.runtime")]
    fn base_method(&self) -> u32 {
        1
    }

    #[spanbus::span(dispatcher = "naming.runtime")]
    async fn shared_method(&self) -> u32 {
        2
    }
}

/// A second level: its default method is named after the implementor too.
trait Derived: Base {
    #[spanbus::span(dispatcher = "naming.runtime")]
    fn derived_method(&self) -> u32 {
        self.base_method() + 10
    }
}

struct Root;
struct Child;
struct GrandChild;

impl Base for Root {}
impl Base for Child {}
impl Derived for Child {}
impl Base for GrandChild {}
impl Derived for GrandChild {}

struct Wrapper<T>(T);

#[spanbus::span(dispatcher = "naming.generic")]
impl<T: Clone + Send + Sync> Wrapper<T> {
    fn get(&self) -> T {
        self.0.clone()
    }
}

trait Describe {
    fn describe(&self) -> String;
}

#[spanbus::span(dispatcher = "naming.generic")]
impl<T: Display> Describe for T {
    fn describe(&self) -> String {
        format!("<{self}>")
    }
}

trait Shout {
    fn shout(&self) -> String;
}

impl<T: Display> Shout for T {
    #[spanbus::span(dispatcher = "naming.generic")]
    fn shout(&self) -> String {
        self.to_string().to_uppercase()
    }
}

fn names(spans: &crate::support::spans::Spans) -> Vec<String> {
    spans.all().into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn default_trait_methods_are_named_by_each_implementor_sync_and_async() {
    let (d, spans, _) = recorded("naming.runtime");
    // The base type calls first: before the fix its name stuck to every later caller.
    assert_eq!(Root.base_method(), 1);
    assert_eq!(Child.base_method(), 1);
    assert_eq!(GrandChild.base_method(), 1);
    assert_eq!(Root.shared_method().await, 2);
    assert_eq!(Child.shared_method().await, 2);
    assert_eq!(GrandChild.shared_method().await, 2);
    assert_eq!(GrandChild.derived_method(), 11);
    assert_eq!(Child.derived_method(), 11);
    // Again, in another order: names come from the caller every time.
    assert_eq!(GrandChild.base_method(), 1);
    assert_eq!(Root.base_method(), 1);
    d.flush().await;

    let got = names(&spans);
    println!("{got:?}");
    for name in [
        "Root::base_method",
        "Child::base_method",
        "GrandChild::shared_method",
        "Child::derived_method",
    ] {
        assert!(got.iter().any(|n| n == name), "{name} missing from {got:?}");
    }
    let count = |name: &str| got.iter().filter(|n| *n == name).count();
    assert_eq!(count("Root::base_method"), 2);
    // GrandChild's: two direct calls and one from inside its `derived_method`.
    assert_eq!(count("GrandChild::base_method"), 3);
    assert_eq!(count("Child::base_method"), 2);
    assert_eq!(count("Root::shared_method"), 1);
    assert_eq!(count("Child::shared_method"), 1);
    assert_eq!(count("GrandChild::derived_method"), 1);
    assert_eq!(got.len(), 12, "{got:?}");
}

#[tokio::test]
async fn generic_and_blanket_impls_are_named_by_the_calling_type() {
    let (d, spans, _) = recorded("naming.generic");
    assert_eq!(Wrapper(5u8).get(), 5);
    assert_eq!(Wrapper(String::from("x")).get(), "x");
    assert_eq!(7u32.describe(), "<7>");
    assert_eq!("doc".to_owned().describe(), "<doc>");
    assert_eq!(1.5f64.shout(), "1.5");
    assert_eq!('a'.shout(), "A");
    d.flush().await;

    let got = names(&spans);
    println!("{got:?}");
    assert_eq!(
        got,
        [
            "Wrapper::get",
            "Wrapper::get",
            "u32::describe",
            "String::describe",
            "f64::shout",
            "char::shout"
        ]
    );
}
