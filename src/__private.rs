//! The runtime of `#[spanbus::span]`: what the generated code calls. Not a public API.

use std::sync::OnceLock;

use parking_lot::Mutex;

pub use serde_json::{Map, Value};

pub use crate::dispatcher::Dispatcher;
pub use crate::span::Span;
use crate::span::{Instrumented, Outcome};

/// The dispatcher named after a module path (`a::b` → `a.b`), looked up once per call site.
pub fn module_dispatcher(
    cell: &'static OnceLock<Dispatcher>,
    module_path: &str,
) -> &'static Dispatcher {
    cell.get_or_init(|| lookup(&module_path.replace("::", ".")))
}

/// The dispatcher named `name` (checked at compile time), looked up once per call site.
pub fn named_dispatcher(cell: &'static OnceLock<Dispatcher>, name: &str) -> &'static Dispatcher {
    cell.get_or_init(|| lookup(name))
}

/// The global dispatcher `name`; the root if the name is rejected (the attribute checks explicit
/// names at compile time, and module paths are valid names, so this is a last resort rather than
/// a panic).
fn lookup(name: &str) -> Dispatcher {
    crate::get_dispatcher(name).unwrap_or_else(|_| crate::root_dispatcher())
}

/// What `dispatcher = <expr>` accepts: a [`Dispatcher`] or a reference to one (through any
/// number of references, and behind an `Arc`).
#[diagnostic::on_unimplemented(
    message = "`dispatcher = ...` must give a `spanbus::Dispatcher` or a reference to one, not `{Self}`",
    label = "not a dispatcher",
    note = "for a dispatcher of the process-wide registry by name, write dispatcher = \"app.llm\""
)]
pub trait DispatcherRef {
    /// The dispatcher.
    fn dispatcher_ref(&self) -> &Dispatcher;
}

impl DispatcherRef for Dispatcher {
    fn dispatcher_ref(&self) -> &Dispatcher {
        self
    }
}

impl<T: DispatcherRef + ?Sized> DispatcherRef for &T {
    fn dispatcher_ref(&self) -> &Dispatcher {
        (**self).dispatcher_ref()
    }
}

impl<T: DispatcherRef + ?Sized> DispatcherRef for std::sync::Arc<T> {
    fn dispatcher_ref(&self) -> &Dispatcher {
        (**self).dispatcher_ref()
    }
}

/// The span names of one call site that names its span by `Self`'s type at run time (a trait's
/// default method, a method of a blanket impl): one name per type that calls it.
///
/// A `static` in a generic fn is shared by every type the fn is instantiated for, so the name
/// cannot be a plain per-call-site cell: the first type to call would name every later one's
/// spans. The first type's name is kept in a cell read without locking; others go in a list.
pub struct MethodNames {
    first: OnceLock<(&'static str, &'static str)>,
    others: Mutex<Vec<(&'static str, &'static str)>>,
}

impl MethodNames {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        MethodNames {
            first: OnceLock::new(),
            others: Mutex::new(Vec::new()),
        }
    }
}

impl Default for MethodNames {
    fn default() -> Self {
        Self::new()
    }
}

/// `Type::method` for `type_name` (from `std::any::type_name::<Self>()`): the last path segment
/// of the type, without generic arguments. Each type's name is made once per call site (and
/// kept for the life of the process: one per type and call site, bounded by the code).
pub fn method_name(
    names: &'static MethodNames,
    type_name: &'static str,
    method: &'static str,
) -> &'static str {
    let make = || -> &'static str {
        Box::leak(format!("{}::{method}", short_type_name(type_name)).into_boxed_str())
    };
    let &(first_type, first_name) = names.first.get_or_init(|| (type_name, make()));
    if first_type == type_name {
        return first_name;
    }
    let mut others = names.others.lock();
    if let Some(&(_, name)) = others.iter().find(|(t, _)| *t == type_name) {
        return name;
    }
    let name = make();
    others.push((type_name, name));
    name
}

fn short_type_name(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A span argument: any `Serialize` value. The marker `A` is a type named after the argument,
/// so the error names it.
#[diagnostic::on_unimplemented(
    message = "argument `{A}` is not serializable, so #[spanbus::span] cannot capture it",
    label = "`{Self}` does not implement `serde::Serialize`",
    note = "add it to `skip({A})` in #[spanbus::span(...)] (or use `skip_all`), or implement `serde::Serialize` for it"
)]
pub trait SpanArg<A> {
    /// The argument as a JSON value.
    fn to_span_value(&self) -> Value;
}

impl<T: serde::Serialize + ?Sized, A> SpanArg<A> for T {
    fn to_span_value(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|e| Value::String(format!("<not serializable: {e}>")))
    }
}

/// The error type of a spanned fn returning `Result`: its `Display` text is the drop message.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` must implement `std::fmt::Display` for #[spanbus::span] to record it",
    label = "a `Result` fn's span is dropped with the error's text, so `{Self}` needs `Display`",
    note = "implement `std::fmt::Display` for `{Self}`"
)]
pub trait SpanError: std::fmt::Display {}

impl<E: std::fmt::Display + ?Sized> SpanError for E {}

/// [`Span::in_scope_result`] for the attribute, with its own diagnostic.
pub fn in_scope_result<T, E: SpanError>(
    span: Span,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    span.in_scope_result(f)
}

/// [`Span::instrument_result`] for the attribute, with its own diagnostic.
pub fn instrument_result<F, T, E>(
    span: Span,
    future: F,
) -> crate::span::Instrumented<F, crate::span::ResultOutput>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: SpanError,
{
    span.instrument_result(future)
}

/// [`Span::in_scope`] for the attribute.
pub fn in_scope<R>(span: Span, f: impl FnOnce() -> R) -> R {
    span.in_scope(f)
}

/// [`Span::instrument`] for the attribute.
pub fn instrument<F: std::future::Future>(
    span: Span,
    future: F,
) -> crate::span::Instrumented<F, crate::span::AnyOutput> {
    span.instrument(future)
}

/// A return value that `#[span(ret)]` records on the span's exit.
#[diagnostic::on_unimplemented(
    message = "the return type `{Self}` is not serializable, so #[span(ret)] cannot record it",
    label = "`{Self}` does not implement `serde::Serialize`",
    note = "implement `serde::Serialize` for `{Self}`, or remove `ret`"
)]
pub trait SpanReturn {
    /// The value as JSON.
    fn to_recorded(&self) -> Value;
}

impl<T: serde::Serialize + ?Sized> SpanReturn for T {
    fn to_recorded(&self) -> Value {
        crate::span::to_recorded_value(self)
    }
}

/// An error value that `#[span(err)]` records on the span's drop.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` is not serializable, so #[span(err)] cannot record it",
    label = "`{Self}` does not implement `serde::Serialize`",
    note = "implement `serde::Serialize` for `{Self}`, or remove `err` (the span is still dropped with the error's text)"
)]
pub trait SpanErrorValue {
    /// The value as JSON.
    fn to_recorded(&self) -> Value;
}

impl<E: serde::Serialize + ?Sized> SpanErrorValue for E {
    fn to_recorded(&self) -> Value {
        crate::span::to_recorded_value(self)
    }
}

/// `#[span(ret)]` on a fn not returning `Result`: the output exits the span and is recorded.
pub enum Ret {}

impl<T: SpanReturn> Outcome<T> for Ret {
    fn failure(_: &T) -> Option<String> {
        None
    }

    fn recorded(output: &T) -> Option<Value> {
        Some(output.to_recorded())
    }
}

/// `#[span(ret)]` on a `Result` fn: the `Ok` value is recorded on the exit.
pub enum RetOk {}

impl<T: SpanReturn, E: SpanError> Outcome<Result<T, E>> for RetOk {
    fn failure(output: &Result<T, E>) -> Option<String> {
        output.as_ref().err().map(ToString::to_string)
    }

    fn recorded(output: &Result<T, E>) -> Option<Value> {
        output.as_ref().ok().map(SpanReturn::to_recorded)
    }
}

/// `#[span(err)]`: the `Err` value is recorded on the drop.
pub enum ErrValue {}

impl<T, E: SpanError + SpanErrorValue> Outcome<Result<T, E>> for ErrValue {
    fn failure(output: &Result<T, E>) -> Option<String> {
        output.as_ref().err().map(ToString::to_string)
    }

    fn recorded(output: &Result<T, E>) -> Option<Value> {
        output.as_ref().err().map(SpanErrorValue::to_recorded)
    }
}

/// `#[span(ret, err)]`: the `Ok` value on the exit, the `Err` value on the drop.
pub enum RetAndErr {}

impl<T: SpanReturn, E: SpanError + SpanErrorValue> Outcome<Result<T, E>> for RetAndErr {
    fn failure(output: &Result<T, E>) -> Option<String> {
        output.as_ref().err().map(ToString::to_string)
    }

    fn recorded(output: &Result<T, E>) -> Option<Value> {
        match output {
            Ok(value) => Some(SpanReturn::to_recorded(value)),
            Err(error) => Some(SpanErrorValue::to_recorded(error)),
        }
    }
}

/// [`Span::in_scope`] ending the span as `K` says (`ret`, `err`).
fn in_scope_as<K: Outcome<R>, R>(span: Span, f: impl FnOnce() -> R) -> R {
    if span.is_idle() {
        return f();
    }
    crate::span::run_in::<R, K>(span.open_sync(), f)
}

// One fn per form of `ret`/`err`, each bounding the types directly, so that a missing
// `Serialize` is reported with the messages above rather than through `Outcome`.

/// `#[span(ret)]` on a sync fn.
pub fn in_scope_ret<R: SpanReturn>(span: Span, f: impl FnOnce() -> R) -> R {
    in_scope_as::<Ret, R>(span, f)
}

/// `#[span(ret)]` on a sync `Result` fn.
pub fn in_scope_ret_ok<T: SpanReturn, E: SpanError>(
    span: Span,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    in_scope_as::<RetOk, _>(span, f)
}

/// `#[span(err)]` on a sync `Result` fn.
pub fn in_scope_err<T, E: SpanError + SpanErrorValue>(
    span: Span,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    in_scope_as::<ErrValue, _>(span, f)
}

/// `#[span(ret, err)]` on a sync `Result` fn.
pub fn in_scope_ret_err<T: SpanReturn, E: SpanError + SpanErrorValue>(
    span: Span,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    in_scope_as::<RetAndErr, _>(span, f)
}

/// `#[span(ret)]` on an async fn.
pub fn instrument_ret<F>(span: Span, future: F) -> Instrumented<F, Ret>
where
    F: std::future::Future,
    F::Output: SpanReturn,
{
    Instrumented::new(span, future)
}

/// `#[span(ret)]` on an async `Result` fn.
pub fn instrument_ret_ok<F, T: SpanReturn, E: SpanError>(
    span: Span,
    future: F,
) -> Instrumented<F, RetOk>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    Instrumented::new(span, future)
}

/// `#[span(err)]` on an async `Result` fn.
pub fn instrument_err<F, T, E: SpanError + SpanErrorValue>(
    span: Span,
    future: F,
) -> Instrumented<F, ErrValue>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    Instrumented::new(span, future)
}

/// `#[span(ret, err)]` on an async `Result` fn.
pub fn instrument_ret_err<F, T: SpanReturn, E: SpanError + SpanErrorValue>(
    span: Span,
    future: F,
) -> Instrumented<F, RetAndErr>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    Instrumented::new(span, future)
}

/// Spans a stream returned by a `-> impl Stream` fn for its whole life.
pub fn in_span_stream<S: futures::Stream>(
    stream: S,
    span: Span,
) -> crate::stream::InstrumentedStream<S> {
    crate::stream::SpanStreamExt::in_span(stream, span)
}

/// Captures one argument.
pub fn capture<A, T: SpanArg<A> + ?Sized>(value: &T) -> Value {
    value.to_span_value()
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_are_shortened_to_their_last_segment() {
        assert_eq!(short_type_name("my_crate::store::Store"), "Store");
        assert_eq!(
            short_type_name("my_crate::Wrap<alloc::string::String>"),
            "Wrap"
        );
        assert_eq!(short_type_name("Plain"), "Plain");
    }
}
