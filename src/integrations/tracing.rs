//! The `tracing` bridge, both ways (cargo feature `tracing`).
//!
//! - [`SpanbusLayer`] is a [`tracing_subscriber::Layer`]: `tracing` spans and events — from your
//!   code or from instrumented crates such as reqwest, hyper or sqlx — become spanbus spans and
//!   [`TracingEvent`]s on a dispatcher you choose, so spanbus handlers see them.
//! - [`TracingHandler`] is a spanbus [`Handler`]: every spanbus record it receives is re-emitted
//!   as a `tracing` event with target [`TRACING_TARGET`] (`"spanbus"`), so `tracing-subscriber`'s
//!   `fmt` or any other subscriber sees spanbus activity.
//!
//! Both can be installed at once: the bridge never loops (see [No loops](#no-loops)).
//!
//! # Examples
//!
//! ## `tracing` into spanbus
//!
//! ```
//! use spanbus::handlers::SimpleSpanHandler;
//! use spanbus::integrations::tracing::SpanbusLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = spanbus::Dispatcher::new("tracing")?;
//! let spans = SimpleSpanHandler::new();
//! bus.add_span_handler(spans.clone())?;
//!
//! let subscriber = tracing_subscriber::registry().with(SpanbusLayer::new(bus.clone()));
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info_span!("fetch", url = "https://example.com").in_scope(|| {
//!         tracing::info!(status = 200, "fetched"); // a `TracingEvent` in span "fetch"
//!     });
//! });
//!
//! bus.flush().await;
//! assert_eq!(spans.spans()[0].name, "fetch");
//! # Ok(())
//! # }
//! ```
//!
//! ## spanbus into `tracing`
//!
//! ```
//! use serde::Serialize;
//! use spanbus::SpanFutureExt;
//! use spanbus::integrations::tracing::TracingHandler;
//!
//! #[derive(Serialize)]
//! struct Retrieved {
//!     documents: usize,
//! }
//! impl spanbus::Event for Retrieved {
//!     const NAME: &'static str = "Retrieved";
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! tracing_subscriber::fmt().init(); // or any subscriber
//!
//! let app = spanbus::Dispatcher::new("app")?;
//! app.add_handler(TracingHandler::new().level(tracing::Level::INFO))?;
//!
//! async { app.event(Retrieved { documents: 3 }).await }
//!     .in_span(app.span("retrieve"))
//!     .await?;
//! app.flush().await; // three lines printed: span enter, Retrieved, span exit
//! # Ok(())
//! # }
//! ```
//!
//! # How `tracing` maps onto spanbus ([`SpanbusLayer`])
//!
//! | `tracing` | spanbus |
//! |---|---|
//! | a span, at its **first enter** | a span entered on the layer's dispatcher ([`SpanEnter`](crate::record::SpanEnter)) |
//! | later enters and exits (an instrumented future is entered at every poll) | nothing: the span stays open |
//! | the span **closed** (its last handle dropped) | the span exited ([`SpanExit`](crate::record::SpanExit)) |
//! | a span closed without ever being entered | nothing: it did no work (unless it was a parent, see below) |
//! | the span's name | the span's name (`target::name` with [`SpanbusLayer::qualified_names`]) |
//! | the span's fields, including those recorded before its first enter | the span's `args`: a JSON object |
//! | fields recorded after the first enter | not kept: a spanbus span's arguments are fixed at its enter |
//! | an event | a [`TracingEvent`] `{ target, level, message, fields }`, emitted with [`Emit::now`](crate::dispatcher::Emit::now) |
//!
//! A span opens at its first enter rather than at its creation so that its start time is when
//! its work starts and fields recorded between `info_span!(..)` and entering are kept. A span
//! needed earlier — as the explicit parent of another span or event — opens then.
//!
//! **Parents.** A span is parented where it was created: its explicit `parent:` if it has one
//! (`parent: None` makes a spanbus root), otherwise the spanbus span current at its creation.
//! While a bridged span is entered the layer makes its spanbus span current, so that span is the
//! `tracing` parent's spanbus span — or a spanbus span nested inside it — and spanbus spans and
//! events emitted inside `tracing` spans nest under them too. When no spanbus span is current,
//! the `tracing` parent's spanbus span is used. Events are attributed the same way: explicit
//! parent, else the current spanbus span, else the current `tracing` span's.
//!
//! Like `tracing`'s own current span, a bridged span entered with `span.enter()` and held across
//! an `.await` stays current on the thread while the task is suspended — unless the task runs
//! inside a spanbus span, whose poll restores its own context. Use `.instrument(span)`.
//!
//! `tracing` knows no failures or cancellations, so bridged spans always end with an exit (an
//! `#[instrument(err)]` error is an `ERROR` event inside the span). A `tracing` span that is
//! leaked never closes, so neither does its spanbus span until shutdown drops it.
//!
//! Use one `SpanbusLayer` per subscriber (its per-span data has one slot). Filter what crosses
//! with `tracing-subscriber`'s per-layer filters, for example
//! `SpanbusLayer::new(d).with_filter(LevelFilter::INFO)`: chatty crates emit many `TRACE`
//! events, and each one that reaches the layer becomes a record when the dispatcher has handlers.
//!
//! # LLM clients that speak the GenAI conventions
//!
//! Rust LLM clients (genai with its `otel` feature, rig) describe each model call with a
//! `tracing` span in the OpenTelemetry GenAI conventions: `gen_ai.operation.name`,
//! `gen_ai.request.model`, `gen_ai.usage.input_tokens`, …, most recorded while the call runs.
//! For such a span the layer keeps every field, opens the spanbus span when the `tracing` span
//! is created (clients may record into a call's span without entering it), names it by its
//! `otel.name` (`chat gpt-4o-mini`), and emits the matching catalog events in it — a start event when it
//! opens, an end event when it closes — so the call counts as an LLM call in every output
//! ([`LlmSummary`](crate::llm::LlmSummary), the trees, the page, the OpenInference
//! attributes). A span the client marks failed (`otel.status_code = "error"`) is dropped with
//! its `error.type`.
//!
//! | `gen_ai.operation.name` | events |
//! |---|---|
//! | `chat` | `LLMChatStartEvent`, `LLMChatEndEvent` |
//! | `text_completion`, `generate_content` | `LLMCompletionStartEvent`, `LLMCompletionEndEvent` |
//! | `embeddings` | `EmbeddingStartEvent`, `EmbeddingEndEvent` |
//! | `execute_tool` | `AgentToolCallEvent` |
//! | anything else | none (the span is bridged as any other) |
//!
//! The request's model and provider go in the start event's `model_dict` (`model`,
//! `provider`); the response's model, token counts (input, output, cache-read, reasoning),
//! first finish reason and time to first chunk (`gen_ai.response.time_to_first_chunk`,
//! seconds, as `additional_kwargs.time_to_first_chunk`) in the end event's response. Message
//! content is there only when the client recorded it (`gen_ai.input.messages`,
//! `gen_ai.output.messages`, which clients capture only on opt-in).
//!
//! # How spanbus maps onto `tracing` ([`TracingHandler`])
//!
//! Every record becomes one `tracing` event with target [`TRACING_TARGET`], at the handler's
//! level (default `INFO`), emitted from the handler's task, with the fields
//!
//! | field | value |
//! |---|---|
//! | `message` | the event's class name; `span enter: <name>`, `span exit`, `span drop (<reason>): <text>` for span signals |
//! | `class_name` | [`Record::class_name`] |
//! | `span_id`, `trace_id` | the record's span (absent when it has none) |
//! | `dispatcher` | the emitting dispatcher's name |
//! | `record` | the whole record as JSON ([`Record::to_json`], llama-index field names) |
//!
//! Span signals become events, not `tracing` spans: a `tracing` span's name is static metadata
//! fixed at compile time, while spanbus span names are data, and a handler sees a span's enter
//! and exit as separate records long after the code ran. (So `tracing-opentelemetry`, which
//! attaches events to the current `tracing` span, sees these events only inside one.)
//!
//! By default [`TracingEvent`]s are not re-emitted — they came from `tracing` in the first
//! place, and would print twice; [`TracingHandler::include_bridged_events`] turns that on.
//!
//! # No loops
//!
//! A record re-emitted by [`TracingHandler`] never comes back through [`SpanbusLayer`], and a
//! `tracing` event bridged by the layer is re-emitted at most once:
//!
//! - [`TracingHandler`] emits with target [`TRACING_TARGET`], and the layer ignores every span
//!   and event whose target is `spanbus` or starts with `spanbus::`;
//! - while either side is handing a record over, a thread-local flag is set and the layer
//!   ignores everything on that thread — whatever the target, even if a subscriber rewrites it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Number, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Dispatch, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::context::{self, Context, SpanContext};
use crate::dispatcher::Dispatcher;
use crate::event::Event;
use crate::handler::Handler;
use crate::record::{Record, RecordKind};
use crate::span::OpenSpan;

mod genai;

use genai::GenAiCall;

/// The `tracing` target of everything [`TracingHandler`] emits; [`SpanbusLayer`] ignores it.
pub const TRACING_TARGET: &str = "spanbus";

/// Bridged spans on one thread's stack stop being tracked past this depth (a guard held across
/// `.await` on a migrating task can leave entries behind; they must not grow without bound).
const MAX_ENTERED: usize = 1024;

thread_local! {
    /// Set while a record crosses the bridge on this thread, in either direction.
    static BRIDGING: Cell<bool> = const { Cell::new(false) };
    /// The bridged spans entered on this thread, innermost last, with what to restore.
    static ENTERED: RefCell<Vec<Entered>> = const { RefCell::new(Vec::new()) };
}

/// Sets [`BRIDGING`] for its lifetime (restoring the previous value, also on unwind).
struct Bridging {
    was: bool,
}

impl Bridging {
    fn start() -> Bridging {
        Bridging {
            was: BRIDGING.try_with(|b| b.replace(true)).unwrap_or(true),
        }
    }
}

impl Drop for Bridging {
    fn drop(&mut self) {
        let _ = BRIDGING.try_with(|b| b.set(self.was));
    }
}

fn bridging() -> bool {
    BRIDGING.try_with(Cell::get).unwrap_or(true)
}

fn ignored_target(target: &str) -> bool {
    target
        .strip_prefix(TRACING_TARGET)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// One bridged span entered on this thread.
struct Entered {
    id: Id,
    ours: Option<SpanContext>,
    previous: Context,
}

// ---- tracing -> spanbus -----------------------------------------------------------------------

/// An event that came from `tracing`, as [`SpanbusLayer`] emits it.
///
/// Its JSON form is `{"target": .., "level": "INFO", "message": .., "fields": {..}}`.
///
/// # Examples
///
/// ```
/// use spanbus::integrations::tracing::TracingEvent;
///
/// fn log_line(record: &spanbus::Record) -> Option<String> {
///     let e = record.event::<TracingEvent>()?;
///     Some(format!("{} {}: {}", e.level, e.target, e.message.as_deref().unwrap_or("")))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TracingEvent {
    /// The event's target (by default its module path).
    pub target: String,
    /// Its level: `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// Its message, if it has one (the `message` field, formatted).
    pub message: Option<String>,
    /// Its other fields as JSON values: numbers and booleans as such, strings as strings, and
    /// anything else by its `Debug` text (errors by their `Display` text).
    pub fields: Map<String, Value>,
}

impl Event for TracingEvent {
    const NAME: &'static str = "TracingEvent";
}

/// A [`tracing_subscriber::Layer`] that turns `tracing` spans and events into spanbus spans and
/// [`TracingEvent`]s on one dispatcher.
///
/// See the [module documentation](self) for the mapping, an example, and why installing it
/// together with [`TracingHandler`] does not loop.
#[derive(Debug, Clone)]
pub struct SpanbusLayer {
    dispatcher: Dispatcher,
    qualified_names: bool,
}

impl SpanbusLayer {
    /// A layer emitting on `dispatcher`.
    pub fn new(dispatcher: Dispatcher) -> SpanbusLayer {
        SpanbusLayer {
            dispatcher,
            qualified_names: false,
        }
    }

    /// Names spans `target::name` (e.g. `hyper::client::connect`) instead of just `name`
    /// (the default, which for `#[instrument]` is the function's name).
    pub fn qualified_names(mut self, qualified: bool) -> SpanbusLayer {
        self.qualified_names = qualified;
        self
    }

    /// The dispatcher this layer emits on.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The spanbus context of a bridged span, opening the span if it has not been yet.
    fn ensure_open<S>(&self, span: &SpanRef<'_, S>) -> Option<Context>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let (parent_kind, captured) = {
            let ext = span.extensions();
            let bridged = ext.get::<Bridged>()?;
            if let Some((_, ctx)) = &bridged.open {
                return Some(ctx.clone());
            }
            (bridged.parent, bridged.captured.span())
        };
        let tracing_parent = || {
            span.parent()
                .and_then(|p| self.ensure_open(&p))
                .and_then(|c| c.span())
        };
        let parent = match parent_kind {
            ParentKind::Root => None,
            ParentKind::Explicit => tracing_parent().or(captured),
            ParentKind::Contextual => captured.or_else(tracing_parent),
        };
        let mut ext = span.extensions_mut();
        let bridged = ext.get_mut::<Bridged>()?;
        if let Some((_, ctx)) = &bridged.open {
            return Some(ctx.clone()); // opened meanwhile on another thread
        }
        let _bridging = Bridging::start();
        let mut pending = self.dispatcher.span(bridged.name.clone()).parent(parent);
        if !bridged.fields.is_empty() {
            pending = pending.args(Value::Object(std::mem::take(&mut bridged.fields)));
        }
        let open = bridged.captured.in_scope(|| pending.enter());
        if let Some(call) = &bridged.genai {
            call.start(&self.dispatcher, open.context());
        }
        let ctx = bridged.captured.clone().with_span(Some(open.context()));
        bridged.open = Some((open, ctx.clone()));
        Some(ctx)
    }

    fn bridged_context<S>(&self, id: &Id, ctx: &LayerContext<'_, S>) -> Option<Context>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        ctx.span(id).and_then(|span| self.ensure_open(&span))
    }
}

/// How a `tracing` span got its parent.
#[derive(Debug, Clone, Copy)]
enum ParentKind {
    /// `parent: None`.
    Root,
    /// `parent: &span`.
    Explicit,
    /// The span current at creation.
    Contextual,
}

/// What the layer keeps in a `tracing` span's extensions.
struct Bridged {
    name: Cow<'static, str>,
    /// Fields recorded before the span opened.
    fields: Map<String, Value>,
    /// The spanbus context current when the `tracing` span was created.
    captured: Context,
    parent: ParentKind,
    /// Once opened: the spanbus span and its context.
    open: Option<(OpenSpan, Context)>,
    /// A GenAI-convention span: its fields, for the catalog events (see `genai`).
    genai: Option<GenAiCall>,
}

impl<S> Layer<S> for SpanbusLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let meta = attrs.metadata();
        if bridging() || ignored_target(meta.target()) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = JsonFields::default();
        attrs.record(&mut fields);
        let genai = GenAiCall::of(&fields.map);
        let name = if let Some(name) = GenAiCall::name(&fields.map) {
            Cow::Owned(name)
        } else if self.qualified_names {
            Cow::Owned(format!("{}::{}", meta.target(), meta.name()))
        } else {
            Cow::Borrowed(meta.name())
        };
        let parent = if attrs.is_root() {
            ParentKind::Root
        } else if attrs.is_contextual() {
            ParentKind::Contextual
        } else {
            ParentKind::Explicit
        };
        let bridged = Bridged {
            name,
            fields: fields.map,
            captured: Context::current(),
            parent,
            open: None,
            genai,
        };
        let opens_now = bridged.genai.is_some();
        // `replace`, not `insert`: a second bridge layer on the same subscriber must not panic.
        span.extensions_mut().replace(bridged);
        if opens_now {
            // A client may never enter its call's span (genai records into it while the call
            // runs): the call starts now, so its spanbus span does too.
            self.ensure_open(&span);
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(call) = ext.get_mut::<Bridged>().and_then(|b| b.genai.as_mut()) {
            let mut fields = JsonFields::default();
            values.record(&mut fields);
            call.record(fields.map);
        }
        if let Some(bridged) = ext.get_mut::<Bridged>()
            && bridged.open.is_none()
        {
            let mut fields = JsonFields {
                map: std::mem::take(&mut bridged.fields),
                message: None,
            };
            values.record(&mut fields);
            bridged.fields = fields.map;
        }
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(bridged) = self.bridged_context(id, &ctx) else {
            return;
        };
        let ours = bridged.span();
        let previous = context::replace_current(bridged);
        let _ = ENTERED.try_with(|stack| {
            let mut stack = stack.borrow_mut();
            if stack.len() >= MAX_ENTERED {
                stack.remove(0);
            }
            stack.push(Entered {
                id: id.clone(),
                ours,
                previous,
            });
        });
    }

    fn on_exit(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        let _ = ENTERED.try_with(|stack| {
            let mut stack = stack.borrow_mut();
            let Some(at) = stack.iter().rposition(|e| e.id == *id) else {
                return;
            };
            let entry = stack.remove(at);
            if at < stack.len() {
                // Exited out of order: whoever was entered above us now restores what we
                // would have.
                stack[at].previous = entry.previous;
            } else if context::current_span() == entry.ours {
                // Restore only if nobody replaced our context meanwhile (a spanbus future that
                // polled inside the span restores its own context when it yields).
                context::replace_current(entry.previous);
            }
        });
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let (open, genai) = match span.extensions_mut().get_mut::<Bridged>() {
            Some(b) => (b.open.take(), b.genai.take()),
            None => return,
        };
        if let Some((open, _)) = open {
            let _bridging = Bridging::start();
            let failed = genai.as_ref().and_then(|call| {
                call.end(&self.dispatcher, open.context());
                call.error()
            });
            match failed {
                Some(error) => open.fail(error),
                None => open.exit(),
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if bridging() || ignored_target(meta.target()) {
            return;
        }
        let span = if event.is_root() {
            None
        } else if let Some(parent) = event.parent() {
            self.bridged_context(parent, &ctx)
                .and_then(|c| c.span())
                .or_else(context::current_span)
        } else {
            context::current_span().or_else(|| {
                ctx.lookup_current()
                    .and_then(|s| self.ensure_open(&s))
                    .and_then(|c| c.span())
            })
        };
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let bridged = TracingEvent {
            target: meta.target().to_owned(),
            level: meta.level().to_string(),
            message: fields.message,
            fields: fields.map,
        };
        let _bridging = Bridging::start();
        // After shutdown the dispatcher refuses records; a layer has nowhere to report that,
        // and the event is still where `tracing` put it.
        let _ = self.dispatcher.event(bridged).span(span).now();
    }
}

/// A [`Visit`] that records field values as JSON, keeping `message` apart.
#[derive(Default)]
struct JsonFields {
    map: Map<String, Value>,
    message: Option<String>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.map.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value =
            Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

// ---- spanbus -> tracing -----------------------------------------------------------------------

/// A spanbus [`Handler`] that re-emits every record it receives as a `tracing` event
/// (target [`TRACING_TARGET`]).
///
/// See the [module documentation](self) for the fields, an example, and why installing it
/// together with [`SpanbusLayer`] does not loop.
///
/// The events go to the `tracing` subscriber that is the default where the handler's task
/// runs — the global one (`set_global_default`, `fmt().init()`) in most programs — or to the
/// one given with [`dispatch`](Self::dispatch).
#[derive(Debug, Clone)]
pub struct TracingHandler {
    level: Level,
    dispatch: Option<Dispatch>,
    bridged_events: bool,
}

impl Default for TracingHandler {
    fn default() -> Self {
        TracingHandler::new()
    }
}

impl TracingHandler {
    /// A handler emitting at `INFO` to the default subscriber, skipping [`TracingEvent`]s.
    pub fn new() -> TracingHandler {
        TracingHandler {
            level: Level::INFO,
            dispatch: None,
            bridged_events: false,
        }
    }

    /// The level of the events emitted.
    pub fn level(mut self, level: Level) -> TracingHandler {
        self.level = level;
        self
    }

    /// Emits to `dispatch` instead of the default subscriber of the handler's thread.
    pub fn dispatch(mut self, dispatch: Dispatch) -> TracingHandler {
        self.dispatch = Some(dispatch);
        self
    }

    /// Also re-emits [`TracingEvent`]s (records that [`SpanbusLayer`] made from `tracing`
    /// events, which the subscriber has already seen). Off by default.
    pub fn include_bridged_events(mut self, include: bool) -> TracingHandler {
        self.bridged_events = include;
        self
    }

    fn emit(&self, record: &Record) {
        if !self.bridged_events && record.event::<TracingEvent>().is_some() {
            return;
        }
        let message = match record.kind() {
            RecordKind::Event(_) => Cow::Borrowed(record.class_name()),
            RecordKind::SpanEnter(enter) => Cow::Owned(format!("span enter: {}", enter.name)),
            RecordKind::SpanExit(_) => Cow::Borrowed("span exit"),
            RecordKind::SpanDrop(drop) => {
                Cow::Owned(format!("span drop ({}): {}", drop.reason, drop.message))
            }
        };
        let json = match record.to_json() {
            Ok(map) => Value::Object(map).to_string(),
            Err(e) => format!("{{\"error\":{}}}", Value::String(e.to_string())),
        };
        let fields = Fields {
            message: &message,
            class_name: record.class_name(),
            span_id: record.span_id().map(|s| s.to_string()),
            trace_id: record.span().map(|s| s.trace_id().to_string()),
            dispatcher: record.dispatcher(),
            record: &json,
        };
        self.send(|| fields.emit(self.level));
    }

    fn send(&self, f: impl FnOnce()) {
        let _bridging = Bridging::start();
        match &self.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, f),
            None => f(),
        }
    }
}

/// The fields of one re-emitted record.
struct Fields<'a> {
    message: &'a str,
    class_name: &'a str,
    span_id: Option<String>,
    trace_id: Option<String>,
    dispatcher: &'a str,
    record: &'a str,
}

/// `tracing::event!` needs a constant level: one call per level.
macro_rules! event_at_level {
    ($level:expr, $($fields:tt)*) => {
        if $level == Level::ERROR {
            tracing::event!(target: TRACING_TARGET, Level::ERROR, $($fields)*)
        } else if $level == Level::WARN {
            tracing::event!(target: TRACING_TARGET, Level::WARN, $($fields)*)
        } else if $level == Level::INFO {
            tracing::event!(target: TRACING_TARGET, Level::INFO, $($fields)*)
        } else if $level == Level::DEBUG {
            tracing::event!(target: TRACING_TARGET, Level::DEBUG, $($fields)*)
        } else {
            tracing::event!(target: TRACING_TARGET, Level::TRACE, $($fields)*)
        }
    };
}

impl Fields<'_> {
    fn emit(&self, level: Level) {
        event_at_level!(
            level,
            class_name = self.class_name,
            span_id = self.span_id.as_deref(),
            trace_id = self.trace_id.as_deref(),
            dispatcher = self.dispatcher,
            record = self.record,
            "{}",
            self.message
        );
    }
}

impl Handler for TracingHandler {
    async fn handle(&mut self, record: &Record) {
        self.emit(record);
    }

    async fn missed(&mut self, count: u64) {
        let level = self.level;
        self.send(|| {
            event_at_level!(
                level,
                missed = count,
                "spanbus: {count} records missed (lossy delivery)"
            );
        });
    }
}
