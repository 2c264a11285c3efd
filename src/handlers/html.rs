use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use crate::context::Tags;
use crate::error::OutputError;
use crate::handler::Handler;
use crate::handlers::output::OutputStatus;
use crate::handlers::tree::{Forest, Item, SpanKey};
use crate::id::{SpanId, TraceId};
use crate::llm::{LlmSummary, LlmTotals, Prices};
use crate::record::{DropReason, Record, RecordKind};

/// Limits and title of an [`HtmlReport`].
///
/// # Examples
///
/// ```
/// use spanbus::handlers::HtmlReportOptions;
///
/// let options = HtmlReportOptions::new().title("nightly eval").max_spans(2_000);
/// assert_eq!(options.max_spans_value(), 2_000);
/// ```
#[derive(Debug, Clone)]
pub struct HtmlReportOptions {
    title: String,
    max_spans: usize,
    max_events: usize,
    prices: Prices,
}

impl Default for HtmlReportOptions {
    fn default() -> Self {
        HtmlReportOptions {
            title: "spanbus traces".to_owned(),
            max_spans: 20_000,
            max_events: 200_000,
            prices: Prices::new(),
        }
    }
}

impl HtmlReportOptions {
    /// Title "spanbus traces", at most 20,000 spans and 200,000 events.
    pub fn new() -> Self {
        Self::default()
    }

    /// The page's title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The most spans kept; spans entered beyond it are counted and left out of the page.
    pub fn max_spans(mut self, max: usize) -> Self {
        self.max_spans = max;
        self
    }

    /// The most events kept; events beyond it are counted and left out of the page.
    pub fn max_events(mut self, max: usize) -> Self {
        self.max_events = max;
        self
    }

    /// The span limit.
    pub fn max_spans_value(&self) -> usize {
        self.max_spans
    }

    /// Prices LLM calls: each LLM span shows its cost, each trace its total, and traces sort
    /// by cost (see [`Prices`]; without it, no costs).
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = prices;
        self
    }
}

/// A handler that draws every trace as a waterfall in one self-contained HTML file.
///
/// The page has no network resources (inline CSS and JavaScript). Each trace is a timeline:
/// one row per span, nested by parent and sorted by start, with a bar positioned by start and
/// duration; errors, panics, cancellations and shutdown drops are coloured and marked, spans
/// still open are dashed, and events are ticks on their span's row. Hovering shows a summary;
/// clicking a bar or a tick shows its details (name, ids, duration, outcome, arguments, tags,
/// event fields). Orphans (a parent that was never seen) sit under a `? missing parent` row.
///
/// Each trace's header carries its totals — spans, duration, tokens, cost (with
/// [`HtmlReportOptions::prices`]), errors and cancellations — and an LLM span shows its model,
/// tokens, time to first token and cost beside its name (its
/// [`LlmSummary`](crate::llm::LlmSummary)). A toolbar sorts the traces (by start, duration,
/// tokens or cost), filters them (errors only, cancelled only, one model) and searches them
/// (trace id, span names, error text, model). The view lives in the address's fragment —
/// `report.html#sort=cost&errors=1&model=gpt-4o&q=timeout` opens that view — and the traces are
/// drawn 200 at a time as the list scrolls, so a page of 10,000 traces opens in about half a
/// second.
///
/// The file is (re)written at every [`flush`](crate::Dispatcher::flush) barrier and at
/// shutdown, through a temporary file and a rename, so a reader never sees half a page.
/// Failures are counted in the [`OutputStatus`] from [`status`](Self::status).
///
/// # Safety of user text
///
/// Span names, arguments, tags and event fields are embedded as JSON in a
/// `<script type="application/json">` block with `<`, `>`, `&` and the two JavaScript line
/// separators escaped, and the script puts them into the page with `textContent` and
/// `setAttribute` only — never as markup. A span named `</script><img onerror=...>` shows as
/// that text.
///
/// # Memory
///
/// At most [`HtmlReportOptions::max_spans`] spans and [`HtmlReportOptions::max_events`] events
/// are kept (the earliest ones); the page says how many were left out.
///
/// # Examples
///
/// ```
/// use spanbus::handlers::HtmlReport;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("spanbus-doc-{}.html", std::process::id()));
/// let d = spanbus::Dispatcher::new("app")?;
/// let report = HtmlReport::create(&path)?;
/// let status = report.status();
/// d.add_handler(report)?;
///
/// d.span("work").in_scope(|| ());
/// d.flush().await; // writes the page
/// assert_eq!(status.written(), 1);
/// assert!(std::fs::read_to_string(&path)?.contains("<!DOCTYPE html>"));
/// # std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct HtmlReport {
    path: PathBuf,
    options: HtmlReportOptions,
    spans: Vec<SpanData>,
    index: HashMap<SpanId, usize>,
    loose: Vec<EventData>,
    events: usize,
    omitted_spans: u64,
    omitted_events: u64,
    missed: u64,
    latest: Option<DateTime<Utc>>,
    status: OutputStatus,
}

#[derive(Debug)]
struct SpanData {
    id: SpanId,
    parent: Option<SpanId>,
    trace: Option<TraceId>,
    name: String,
    dispatcher: &'static str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    dropped: Option<(DropReason, String)>,
    args: Option<Value>,
    tags: Tags,
    events: Vec<EventData>,
    llm: Option<Box<LlmSummary>>,
}

#[derive(Debug)]
struct EventData {
    at: DateTime<Utc>,
    class_name: &'static str,
    data: Value,
}

impl HtmlReport {
    /// A report written to `path`, with default options. Creates missing parent directories
    /// and writes an empty page, so a bad path fails here rather than at shutdown.
    ///
    /// # Errors
    ///
    /// [`OutputError`] when a directory or the file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<HtmlReport, OutputError> {
        HtmlReport::with_options(path, HtmlReportOptions::default())
    }

    /// A report written to `path` with `options`.
    ///
    /// # Errors
    ///
    /// [`OutputError`] when a directory or the file cannot be created.
    pub fn with_options(
        path: impl AsRef<Path>,
        options: HtmlReportOptions,
    ) -> Result<HtmlReport, OutputError> {
        let path = path.as_ref().to_owned();
        let report = HtmlReport {
            path,
            options,
            spans: Vec::new(),
            index: HashMap::new(),
            loose: Vec::new(),
            events: 0,
            omitted_spans: 0,
            omitted_events: 0,
            missed: 0,
            latest: None,
            status: OutputStatus::default(),
        };
        if let Some(dir) = report.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutputError {
                path: report.path.clone(),
                source,
            })?;
        }
        report.write_page().map_err(|source| OutputError {
            path: report.path.clone(),
            source,
        })?;
        Ok(report)
    }

    /// A handle on how many pages were written and how writing failed; take it before adding
    /// the handler.
    pub fn status(&self) -> OutputStatus {
        self.status.clone()
    }

    /// The page for everything seen so far.
    pub fn render(&self) -> String {
        let data = self.data();
        let json = script_safe_json(&data);
        let title = escape_html(&self.options.title);
        let mut page =
            String::with_capacity(json.len() + PAGE_HEAD.len() + PAGE_SCRIPT.len() + 512);
        page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        page.push_str(&format!("<title>{title}</title>\n"));
        page.push_str(PAGE_HEAD);
        page.push_str(&format!(
            "</head>\n<body>\n<header><h1>{title}</h1><p id=\"summary\"></p></header>\n"
        ));
        page.push_str(
            "<noscript>This report draws its timelines with JavaScript; the raw data is in the \
             spanbus-data block of this file.</noscript>\n<main id=\"traces\"></main>\n\
             <aside id=\"details\"><p class=\"hint\">Click a bar or a tick for details.</p></aside>\n",
        );
        page.push_str("<script type=\"application/json\" id=\"spanbus-data\">");
        page.push_str(&json);
        page.push_str("</script>\n<script>\n");
        page.push_str(PAGE_SCRIPT);
        page.push_str("</script>\n</body>\n</html>\n");
        page
    }

    fn write_page(&self) -> std::io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, &self.path)
    }

    fn write(&mut self) {
        match self.write_page() {
            Ok(()) => self.status.add_written(1),
            Err(e) => self
                .status
                .add_failure(format!("could not write {}: {e}", self.path.display())),
        }
    }

    /// The page's data: traces as rows in tree order, spans, loose events.
    fn data(&self) -> Value {
        let now = self.latest.unwrap_or_else(Utc::now);
        let keys: Vec<SpanKey> = self
            .spans
            .iter()
            .map(|s| SpanKey {
                trace: s.trace,
                id: s.id,
                parent: s.parent,
                start: s.start,
                end: s.end.unwrap_or(now).max(s.start),
            })
            .collect();
        let forest = Forest::build(&keys);
        let mut trace_start: Vec<DateTime<Utc>> = vec![now; self.spans.len()];
        let mut traces = Vec::with_capacity(forest.traces.len());
        let prices = &self.options.prices;
        for t in &forest.traces {
            let mut rows = Vec::new();
            let mut llm = LlmTotals::default();
            let (mut errors, mut cancelled) = (0u64, 0u64);
            let mut models: Vec<&str> = Vec::new();
            forest.walk(&t.roots, |node, lasts| {
                let depth = lasts.len() - 1;
                match forest.nodes[node].item {
                    Item::Span(i) => {
                        trace_start[i] = t.start;
                        rows.push(json!({"d": depth, "s": i}));
                        let s = &self.spans[i];
                        match s.dropped.as_ref().map(|(r, _)| *r) {
                            Some(DropReason::Cancelled) => cancelled += 1,
                            Some(DropReason::Error | DropReason::Panic) => errors += 1,
                            _ => {}
                        }
                        if let Some(summary) = &s.llm {
                            let end = s.end.unwrap_or(now).max(s.start);
                            llm.add(summary, s.dropped.is_none(), end - s.start, prices);
                            if let Some(m) = summary.model.as_deref()
                                && !models.contains(&m)
                            {
                                models.push(m);
                            }
                        }
                    }
                    Item::Missing(id) => rows.push(json!({"d": depth, "m": id.to_string()})),
                }
            });
            traces.push(json!({
                "trace_id": t.trace.map(|id| id.to_string()),
                "start": t.start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "duration_us": micros(t.end - t.start),
                "span_count": t.spans,
                "errors": errors,
                "cancelled": cancelled,
                "llm_calls": llm.calls,
                "input_tokens": llm.input_tokens,
                "output_tokens": llm.output_tokens,
                "cost": (llm.unpriced < llm.calls).then_some(llm.cost),
                "models": models,
                "rows": rows,
            }));
        }
        let spans: Vec<Value> = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let origin = trace_start[i];
                let (outcome, message) = match (&s.dropped, s.end) {
                    (Some((reason, message)), _) => (reason.to_string(), message.as_str()),
                    (None, Some(_)) => ("ok".to_owned(), ""),
                    (None, None) => ("open".to_owned(), ""),
                };
                json!({
                    "id": s.id.to_string(),
                    "parent": s.parent.map(|p| p.to_string()),
                    "trace_id": s.trace.map(|t| t.to_string()),
                    "name": s.name,
                    "dispatcher": s.dispatcher,
                    "start": s.start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "offset_us": micros(s.start - origin),
                    "duration_us": micros(keys[i].end - s.start),
                    "outcome": outcome,
                    "message": message,
                    "args": s.args,
                    "tags": s.tags,
                    "events": s.events.iter().map(|e| event_json(e, origin)).collect::<Vec<_>>(),
                    "llm": s.llm.as_deref().map(|l| llm_json(l, prices)),
                })
            })
            .collect();
        let loose: Vec<Value> = self.loose.iter().map(|e| event_json(e, e.at)).collect();
        json!({
            "generated": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "omitted_spans": self.omitted_spans,
            "omitted_events": self.omitted_events,
            "missed": self.missed,
            "traces": traces,
            "spans": spans,
            "loose_events": loose,
        })
    }
}

fn micros(d: TimeDelta) -> f64 {
    d.num_microseconds()
        .map_or(d.num_milliseconds() as f64 * 1e3, |us| us as f64)
}

/// A span's LLM summary for the page (and its click details).
fn llm_json(l: &LlmSummary, prices: &Prices) -> Value {
    json!({
        "operation": l.operation,
        "model": l.model,
        "provider": l.provider,
        "input_tokens": l.input_tokens,
        "output_tokens": l.output_tokens,
        "cache_read_tokens": l.cache_read_tokens,
        "reasoning_tokens": l.reasoning_tokens,
        "ttft_us": l.ttft.map(micros),
        "chunks": l.chunks,
        "finish_reason": l.finish_reason,
        "cost": l.cost(prices),
        "brief": l.brief(prices),
    })
}

fn event_json(e: &EventData, origin: DateTime<Utc>) -> Value {
    json!({
        "offset_us": micros(e.at - origin),
        "class_name": e.class_name,
        "data": e.data,
    })
}

/// JSON that can sit inside a `<script>` element: no `<`, `>` or `&` (so no `</script>` or
/// `<!--`), and no U+2028/U+2029. These only occur inside JSON strings, where `\u003c`-style
/// escapes mean the same characters.
fn script_safe_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + 64);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Text for an HTML text node or a quoted attribute value.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Handler for HtmlReport {
    async fn handle(&mut self, record: &Record) {
        let at = record.timestamp();
        self.latest = Some(self.latest.map_or(at, |l| l.max(at)));
        match record.kind() {
            RecordKind::SpanEnter(enter) => {
                if self.index.contains_key(&enter.id) {
                    return;
                }
                if self.spans.len() >= self.options.max_spans {
                    self.omitted_spans += 1;
                    return;
                }
                self.index.insert(enter.id, self.spans.len());
                self.spans.push(SpanData {
                    id: enter.id,
                    parent: enter.parent,
                    trace: record.span().map(|s| s.trace_id()),
                    name: enter.name.to_string(),
                    dispatcher: record.dispatcher_static(),
                    start: at,
                    end: None,
                    dropped: None,
                    args: enter.args.clone(),
                    tags: record.tags().clone(),
                    events: Vec::new(),
                    llm: None,
                });
            }
            RecordKind::SpanExit(exit) => {
                if let Some(&i) = self.index.get(&exit.id)
                    && self.spans[i].end.is_none()
                {
                    self.spans[i].end = Some(at);
                }
            }
            RecordKind::SpanDrop(drop) => {
                if let Some(&i) = self.index.get(&drop.id)
                    && self.spans[i].end.is_none()
                {
                    let span = &mut self.spans[i];
                    span.end = Some(at);
                    span.dropped = Some((drop.reason, drop.message.clone()));
                }
            }
            RecordKind::Event(_) => {
                if self.events >= self.options.max_events {
                    self.omitted_events += 1;
                    return;
                }
                self.events += 1;
                let span = record.span_id().and_then(|id| self.index.get(&id).copied());
                let data = match record.to_json() {
                    Ok(mut map) => {
                        if let Some(i) = span
                            && LlmSummary::reads(record.class_name())
                        {
                            self.spans[i].llm.get_or_insert_with(Box::default).observe(
                                record.class_name(),
                                at,
                                &map,
                            );
                        }
                        for key in ["class_name", "span_id", "trace_id", "timestamp"] {
                            map.remove(key);
                        }
                        Value::Object(map)
                    }
                    Err(e) => {
                        self.status.add_unserializable();
                        let mut map = Map::new();
                        map.insert("error".into(), Value::String(e.to_string()));
                        Value::Object(map)
                    }
                };
                let event = EventData {
                    at,
                    class_name: record.class_name(),
                    data,
                };
                match span {
                    Some(i) => self.spans[i].events.push(event),
                    None => self.loose.push(event),
                }
            }
        }
    }

    async fn missed(&mut self, count: u64) {
        self.missed += count;
    }

    async fn flush(&mut self) {
        self.write();
    }

    async fn close(&mut self) {
        self.write();
    }
}

const PAGE_HEAD: &str = r#"<style>
:root { --ok:#3b82f6; --error:#dc2626; --panic:#9333ea; --cancelled:#f59e0b; --shutdown:#6b7280; --open:#94a3b8; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111827; background: #f9fafb; display: grid; grid-template-columns: minmax(0, 1fr) 360px; grid-template-rows: auto 1fr; min-height: 100vh; }
header { grid-column: 1 / 3; padding: 10px 16px; background: #111827; color: #f9fafb; }
header h1 { margin: 0; font-size: 16px; }
header p { margin: 2px 0 0; color: #cbd5e1; }
main { padding: 12px 16px; overflow: auto; }
aside { border-left: 1px solid #e5e7eb; padding: 12px; background: #fff; overflow: auto; position: sticky; top: 0; max-height: 100vh; }
aside pre { white-space: pre-wrap; word-break: break-word; background: #f3f4f6; padding: 8px; border-radius: 4px; font-size: 12px; }
aside h2 { font-size: 14px; margin: 0 0 6px; word-break: break-word; }
.hint { color: #6b7280; }
section.trace { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; margin-bottom: 14px; }
section.trace > h2 { font-size: 13px; margin: 0; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; font-weight: 600; }
section.trace > h2 .meta { color: #6b7280; font-weight: 400; margin-left: 8px; }
.row { display: grid; grid-template-columns: 360px minmax(0, 1fr); align-items: center; min-height: 22px; border-bottom: 1px solid #f3f4f6; }
.row:hover { background: #f8fafc; }
.label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; padding: 0 6px; }
.label .mark { font-weight: 700; margin-right: 4px; }
.label.missing { color: #9ca3af; font-style: italic; }
.lane { position: relative; height: 22px; margin-right: 10px; }
.bar { position: absolute; top: 4px; height: 14px; min-width: 2px; border-radius: 2px; background: var(--ok); cursor: pointer; }
.bar.error { background: var(--error); }
.bar.panic { background: var(--panic); }
.bar.cancelled { background: repeating-linear-gradient(45deg, var(--cancelled), var(--cancelled) 4px, #fde68a 4px, #fde68a 8px); }
.bar.shutdown { background: var(--shutdown); }
.bar.open { background: transparent; border: 1px dashed var(--open); }
.bar.selected { outline: 2px solid #111827; }
.tick { position: absolute; top: 1px; width: 2px; height: 20px; background: #111827; opacity: .75; cursor: pointer; margin-left: -1px; }
.tick:hover { opacity: 1; width: 4px; margin-left: -2px; }
.dur { position: absolute; top: 4px; font-size: 11px; line-height: 14px; color: #374151; white-space: nowrap; pointer-events: none; }
.dur.inside { color: #fff; text-shadow: 0 0 2px rgba(0,0,0,.6); }
.legend span { display: inline-block; margin-right: 10px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 3px; vertical-align: middle; }
.loose { margin-top: 10px; }
.toolbar { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 0 0 10px; }
.toolbar .shown { color: #6b7280; }
.label .llm { color: #6b7280; margin-left: 8px; font-size: 11px; }
.more { color: #6b7280; cursor: pointer; }
</style>
"#;

const PAGE_SCRIPT: &str = r##""use strict";
(function () {
  var data = JSON.parse(document.getElementById("spanbus-data").textContent);
  var MARKS = { ok: "", error: "\u2717", panic: "\u203c", cancelled: "\u23f9", shutdown: "\u23fb", open: "\u2026" };
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(us) {
    if (us < 1000) return Math.round(us) + " \u00b5s";
    if (us < 1e6) return (us / 1000).toFixed(3) + " ms";
    return (us / 1e6).toFixed(3) + " s";
  }
  function pct(x, total) { return total > 0 ? Math.max(0, Math.min(100, 100 * x / total)) : 0; }
  var details = document.getElementById("details");
  var selected = null;
  function show(title, obj, node) {
    if (selected) selected.classList.remove("selected");
    selected = node || null;
    if (selected) selected.classList.add("selected");
    details.textContent = "";
    details.appendChild(el("h2", null, title));
    details.appendChild(el("pre", null, JSON.stringify(obj, null, 2)));
  }
  function spanDetails(s) {
    return { name: s.name, span_id: s.id, parent_span_id: s.parent, trace_id: s.trace_id,
      dispatcher: s.dispatcher, start: s.start, duration: fmt(s.duration_us), outcome: s.outcome,
      message: s.message, llm: s.llm, args: s.args, tags: s.tags,
      events: s.events.map(function (e) { return { class_name: e.class_name, at: "+" + fmt(e.offset_us), fields: e.data }; }) };
  }
  var nSpans = data.spans.length, nEvents = data.loose_events.length, failed = 0;
  data.spans.forEach(function (s) { nEvents += s.events.length; if (s.outcome !== "ok") failed++; });
  var summary = data.traces.length + " traces \u00b7 " + nSpans + " spans \u00b7 " + nEvents + " events \u00b7 " + failed + " not ok";
  if (data.omitted_spans || data.omitted_events) summary += " \u00b7 left out: " + data.omitted_spans + " spans, " + data.omitted_events + " events";
  if (data.missed) summary += " \u00b7 " + data.missed + " records missed";
  summary += " \u00b7 generated " + data.generated;
  document.getElementById("summary").textContent = summary;
  var main = document.getElementById("traces");
  var legend = el("p", "legend");
  ["ok", "error", "panic", "cancelled", "shutdown", "open"].forEach(function (k) {
    var item = el("span"); var sw = el("i", "bar " + k); sw.style.position = "static"; sw.style.display = "inline-block";
    item.appendChild(sw); item.appendChild(document.createTextNode(k)); legend.appendChild(item);
  });
  main.appendChild(legend);
  function usd(c) { return c === null || c === undefined ? "" : c > 0 && c < 1e-6 ? "<$0.000001" : "$" + (c === 0 || c >= 1e-4 ? c.toFixed(4) : c.toFixed(6)); }
  function traceMeta(t) {
    var parts = [t.span_count + " spans", fmt(t.duration_us)];
    if (t.input_tokens + t.output_tokens > 0) parts.push(t.input_tokens + "\u2192" + t.output_tokens + " tok");
    if (t.cost !== null && t.cost !== undefined) parts.push(usd(t.cost));
    if (t.errors) parts.push(t.errors + (t.errors === 1 ? " error" : " errors"));
    if (t.cancelled) parts.push(t.cancelled + " cancelled");
    parts.push(t.start);
    return parts.join(" \u00b7 ");
  }
  // The view: which traces, in which order; kept in the address's #fragment
  // (sort=start|duration|tokens|cost, errors=1, cancelled=1, model=..., q=...).
  var state = { sort: "start", errors: false, cancelled: false, model: "", q: "" };
  (location.hash || "").replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("="); if (i < 0) return;
    var k = decodeURIComponent(kv.slice(0, i)), v = decodeURIComponent(kv.slice(i + 1));
    if (k === "sort" && ["start", "duration", "tokens", "cost"].indexOf(v) >= 0) state.sort = v;
    if (k === "errors" || k === "cancelled") state[k] = v === "1";
    if (k === "model") state.model = v;
    if (k === "q") state.q = v;
  });
  var models = {};
  data.traces.forEach(function (t) { t.models.forEach(function (m) { models[m] = true; }); });
  var searchText = [];
  function textOf(i) {
    if (searchText[i] === undefined) {
      var t = data.traces[i], words = [t.trace_id || ""];
      t.rows.forEach(function (r) {
        if (r.s === undefined) return;
        var s = data.spans[r.s]; words.push(s.name, s.message);
        if (s.llm && s.llm.model) words.push(s.llm.model);
      });
      searchText[i] = words.join("\n").toLowerCase();
    }
    return searchText[i];
  }
  var KEYS = { start: null, duration: function (t) { return t.duration_us; },
    tokens: function (t) { return t.input_tokens + t.output_tokens; },
    cost: function (t) { return t.cost === null || t.cost === undefined ? -1 : t.cost; } };
  function view() {
    var q = state.q.toLowerCase(), out = [];
    for (var i = 0; i < data.traces.length; i++) {
      var t = data.traces[i];
      if (state.errors && !t.errors) continue;
      if (state.cancelled && !t.cancelled) continue;
      if (state.model && t.models.indexOf(state.model) < 0) continue;
      if (q && textOf(i).indexOf(q) < 0) continue;
      out.push(i);
    }
    var key = KEYS[state.sort];
    if (key) out.sort(function (a, b) { return key(data.traces[b]) - key(data.traces[a]) || a - b; });
    return out;
  }
  var bar = el("div", "toolbar");
  function control(label, input) { var l = el("label", null, label + " "); l.appendChild(input); bar.appendChild(l); return input; }
  var sortSel = control("sort", el("select"));
  sortSel.id = "sort";
  [["start", "start"], ["duration", "duration \u2193"], ["tokens", "tokens \u2193"], ["cost", "cost \u2193"]].forEach(function (o) {
    var opt = el("option", null, o[1]); opt.value = o[0]; sortSel.appendChild(opt);
  });
  var errBox = el("input"); errBox.type = "checkbox"; errBox.id = "only-errors"; control("errors", errBox);
  var canBox = el("input"); canBox.type = "checkbox"; canBox.id = "only-cancelled"; control("cancelled", canBox);
  var modelSel = control("model", el("select"));
  modelSel.id = "model";
  [""].concat(Object.keys(models).sort()).forEach(function (m) { var opt = el("option", null, m || "any"); opt.value = m; modelSel.appendChild(opt); });
  var search = el("input"); search.type = "search"; search.id = "search"; search.placeholder = "trace id, span name, error, model";
  control("search", search);
  var shown = el("span", "shown"); bar.appendChild(shown);
  main.appendChild(bar);
  var list = el("div"); list.id = "trace-list"; main.appendChild(list);
  function drawTrace(t) {
    var sec = el("section", "trace");
    sec.setAttribute("data-trace-id", t.trace_id || "");
    sec.setAttribute("data-errors", t.errors);
    sec.setAttribute("data-cancelled", t.cancelled);
    if (t.cost !== null && t.cost !== undefined) sec.setAttribute("data-cost", t.cost);
    var h = el("h2", null, "trace " + (t.trace_id || "(none)"));
    h.appendChild(el("span", "meta", traceMeta(t)));
    sec.appendChild(h);
    t.rows.forEach(function (r) {
      var row = el("div", "row");
      var label, lane = el("div", "lane");
      if (r.m !== undefined) {
        label = el("div", "label missing", "? missing parent " + r.m);
        row.setAttribute("data-missing-parent", r.m);
      } else {
        var s = data.spans[r.s];
        label = el("div", "label");
        if (MARKS[s.outcome]) label.appendChild(el("span", "mark " + s.outcome, MARKS[s.outcome]));
        label.appendChild(document.createTextNode(s.name));
        if (s.llm && s.llm.brief) label.appendChild(el("span", "llm", s.llm.brief));
        label.setAttribute("title", s.name + (s.llm && s.llm.brief ? " \u00b7 " + s.llm.brief : ""));
        var b = el("div", "bar " + s.outcome);
        b.setAttribute("data-span-id", s.id);
        b.setAttribute("data-outcome", s.outcome);
        var left = pct(s.offset_us, t.duration_us), width = pct(s.duration_us, t.duration_us);
        b.style.left = left + "%";
        b.style.width = width + "%";
        b.setAttribute("title", s.name + " \u00b7 " + fmt(s.duration_us) + " \u00b7 " + s.outcome + (s.message ? ": " + s.message : ""));
        b.addEventListener("click", function () { show(s.name, spanDetails(s), b); });
        lane.appendChild(b);
        var dur = el("span", "dur", fmt(s.duration_us));
        if (width > 25) { dur.className = "dur inside"; dur.style.right = "calc(" + (100 - left - width) + "% + 4px)"; }
        else if (left + width > 80) { dur.style.right = "calc(" + (100 - left) + "% + 4px)"; }
        else { dur.style.left = "calc(" + (left + width) + "% + 4px)"; }
        lane.appendChild(dur);
        s.events.forEach(function (e) {
          var tick = el("div", "tick");
          tick.setAttribute("data-event-of", s.id);
          tick.setAttribute("title", e.class_name + " +" + fmt(e.offset_us));
          tick.style.left = pct(e.offset_us, t.duration_us) + "%";
          tick.addEventListener("click", function (ev) { ev.stopPropagation(); show(e.class_name, { span: s.name, span_id: s.id, at: "+" + fmt(e.offset_us), fields: e.data }, tick); });
          lane.appendChild(tick);
        });
      }
      label.style.paddingLeft = (6 + 16 * r.d) + "px";
      row.appendChild(label);
      row.appendChild(lane);
      sec.appendChild(row);
    });
    return sec;
  }
  // Traces are drawn a batch at a time, the next batch when the end of the list scrolls into
  // view, so a page of ten thousand traces opens as fast as one of two hundred.
  var BATCH = 200, current = [], drawn = 0, more = el("p", "more");
  function drawMore() {
    var until = Math.min(current.length, drawn + BATCH), frag = document.createDocumentFragment();
    for (; drawn < until; drawn++) frag.appendChild(drawTrace(data.traces[current[drawn]]));
    list.appendChild(frag);
    more.textContent = drawn < current.length ? (current.length - drawn) + " more traces \u2026" : "";
    list.appendChild(more);
  }
  if (window.IntersectionObserver) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && drawn < current.length) drawMore();
    }).observe(more);
  }
  more.addEventListener("click", drawMore);
  function apply() {
    current = view(); drawn = 0; list.textContent = "";
    main.setAttribute("data-shown", current.length);
    shown.textContent = current.length + " of " + data.traces.length + " traces";
    drawMore();
    var h = ["sort=" + state.sort];
    if (state.errors) h.push("errors=1");
    if (state.cancelled) h.push("cancelled=1");
    if (state.model) h.push("model=" + encodeURIComponent(state.model));
    if (state.q) h.push("q=" + encodeURIComponent(state.q));
    if (history.replaceState) history.replaceState(null, "", "#" + h.join("&"));
  }
  sortSel.value = state.sort; errBox.checked = state.errors; canBox.checked = state.cancelled;
  modelSel.value = state.model; search.value = state.q;
  sortSel.addEventListener("change", function () { state.sort = sortSel.value; apply(); });
  errBox.addEventListener("change", function () { state.errors = errBox.checked; apply(); });
  canBox.addEventListener("change", function () { state.cancelled = canBox.checked; apply(); });
  modelSel.addEventListener("change", function () { state.model = modelSel.value; apply(); });
  var typing = null;
  search.addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(function () { state.q = search.value; apply(); }, 150); });
  apply();
  if (data.loose_events.length) {
    var box = el("section", "trace loose");
    box.appendChild(el("h2", null, data.loose_events.length + " events outside any recorded span"));
    data.loose_events.forEach(function (e) {
      var row = el("div", "row");
      var label = el("div", "label", e.class_name);
      label.style.cursor = "pointer";
      label.addEventListener("click", function () { show(e.class_name, e.data, null); });
      row.appendChild(label);
      row.appendChild(el("div", "lane"));
      box.appendChild(row);
    });
    main.appendChild(box);
  }
  document.body.setAttribute("data-render-ms", Math.round(performance.now()));
})();
"##;
