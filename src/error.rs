//! Errors returned by spanbus.
//!
//! Every fallible operation returns one of these types, or, for the W3C trace-context headers,
//! [`TraceParentError`](crate::propagation::TraceParentError) or
//! [`TraceStateError`](crate::propagation::TraceStateError) beside their parsers in
//! [`propagation`](crate::propagation). Nothing in the library panics on user input. Each
//! error's `Display` is a plain sentence that names what was wrong.

use std::fmt;

/// A dispatcher name was rejected.
///
/// Names are dotted paths such as `app.retriever`: non-empty segments separated by `.`, with no
/// whitespace or control characters.
///
/// # Examples
///
/// ```
/// use spanbus::get_dispatcher;
/// use spanbus::error::NameError;
///
/// let err = get_dispatcher("app..retriever").unwrap_err();
/// assert!(matches!(err, NameError::EmptySegment { .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid dispatcher name \"app..retriever\": empty segment at position 2"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is the empty string.
    Empty,
    /// A dot-separated segment is empty (`a..b`, `.a`, `a.`).
    EmptySegment {
        /// The rejected name.
        name: String,
        /// The 1-based position of the empty segment.
        position: usize,
    },
    /// The name contains whitespace or a control character.
    InvalidChar {
        /// The rejected name.
        name: String,
        /// The offending character.
        ch: char,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("invalid dispatcher name: the name is empty"),
            NameError::EmptySegment { name, position } => write!(
                f,
                "invalid dispatcher name {name:?}: empty segment at position {position}"
            ),
            NameError::InvalidChar { name, ch } => write!(
                f,
                "invalid dispatcher name {name:?}: character {ch:?} is not allowed"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Emitting a record failed: no handler will see it.
///
/// | variant | cause | what happened to the record |
/// |---|---|---|
/// | [`ShutDown`](Self::ShutDown) | the dispatcher was shut down | refused |
/// | [`Overflow`](Self::Overflow) | a sync emit on a runtime thread found a channel at its hard cap (a lossless handler far behind) | dropped there, counted, and its handlers told in-band ([`Handler::missed`](crate::Handler::missed)); other channels got it |
/// | [`HandlersGone`](Self::HandlersGone) | every handler it reaches lost its task (their tokio runtime was dropped) | counted in each handler's [`HandlerStats::lost`](crate::HandlerStats::lost) |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmitError {
    /// The dispatcher has been shut down.
    ShutDown {
        /// The dispatcher's name.
        dispatcher: String,
    },
    /// A channel the record reaches was at its hard cap (its capacity plus its overflow
    /// allowance), and the emitter could not wait: a runtime thread, a handler or a `Drop`.
    /// The record was dropped there, counted in the stats of that channel's handlers, and
    /// each of them is told through [`Handler::missed`](crate::Handler::missed) before its
    /// next record. Channels with room got it.
    Overflow {
        /// The dispatcher's name.
        dispatcher: String,
    },
    /// Every handler the record reaches is gone: the tokio runtime their tasks ran on was
    /// dropped (or shut down) before the dispatcher was. Add handlers again from a live
    /// runtime; the records emitted meanwhile are counted as lost in each handler's stats.
    HandlersGone {
        /// The dispatcher's name.
        dispatcher: String,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::ShutDown { dispatcher } => {
                write!(f, "dispatcher {dispatcher:?} has been shut down")
            }
            EmitError::Overflow { dispatcher } => write!(
                f,
                "a handler of dispatcher {dispatcher:?} is too far behind: the record was \
                 dropped past the channel's hard cap (counted and reported to the handler)"
            ),
            EmitError::HandlersGone { dispatcher } => write!(
                f,
                "every handler that dispatcher {dispatcher:?} reaches is gone: the tokio runtime \
                 running them was dropped"
            ),
        }
    }
}

impl std::error::Error for EmitError {}

/// A handler could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerError {
    /// No tokio runtime is running on this thread, so the handler's task cannot be spawned.
    NoRuntime,
    /// The dispatcher has been shut down.
    ShutDown {
        /// The dispatcher's name.
        dispatcher: String,
    },
    /// The handler options are invalid (for example a capacity of zero).
    InvalidOptions(&'static str),
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::NoRuntime => f.write_str(
                "no tokio runtime is running on this thread: add handlers from inside a runtime",
            ),
            HandlerError::ShutDown { dispatcher } => {
                write!(f, "dispatcher {dispatcher:?} has been shut down")
            }
            HandlerError::InvalidOptions(why) => write!(f, "invalid handler options: {why}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// A record could not be turned into JSON.
#[derive(Debug)]
pub struct SerializeError {
    /// The name of the event whose payload failed.
    pub event: &'static str,
    /// The serializer's error.
    pub source: serde_json::Error,
}

impl fmt::Display for SerializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {:?} could not be serialized: {}",
            self.event, self.source
        )
    }
}

impl std::error::Error for SerializeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A span or trace id could not be parsed from its hex form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    /// Which id type was being parsed (`SpanId` or `TraceId`).
    pub kind: &'static str,
    /// The rejected input (at most its first 64 characters).
    pub input: String,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = if self.kind == "TraceId" { 32 } else { 16 };
        write!(
            f,
            "invalid {}: {:?} is not {digits} lowercase hex digits with at least one non-zero",
            self.kind, self.input
        )
    }
}

impl std::error::Error for IdError {}

/// An output file (a JSON Lines log, an HTML report) could not be created.
#[derive(Debug)]
pub struct OutputError {
    /// The file.
    pub path: std::path::PathBuf,
    /// The operating system's error.
    pub source: std::io::Error,
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not create {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A JSON Lines file could not be read at all (malformed lines are reported separately, as
/// [`LineError`]s).
#[derive(Debug)]
#[non_exhaustive]
pub enum JsonlError {
    /// The file could not be opened.
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Reading failed part-way, at this 1-based line.
    Read {
        /// The line being read.
        line: usize,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl fmt::Display for JsonlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonlError::Open { path, source } => {
                write!(f, "could not open {}: {source}", path.display())
            }
            JsonlError::Read { line, source } => {
                write!(f, "reading failed at line {line}: {source}")
            }
        }
    }
}

impl std::error::Error for JsonlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JsonlError::Open { source, .. } | JsonlError::Read { source, .. } => Some(source),
        }
    }
}

/// One line of a JSON Lines file that is not a valid record: not JSON, not an object, or a
/// missing or malformed envelope field.
#[derive(Debug)]
pub struct LineError {
    /// The 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub source: serde_json::Error,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.source)
    }
}

impl std::error::Error for LineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The OTLP exporter could not be built (feature `otlp`).
#[cfg(feature = "otlp")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpError {
    /// No tokio runtime is running on this thread, so the export task cannot be spawned.
    NoRuntime,
    /// The tokio runtime running on this thread was built without its time driver; the export
    /// task needs timers (for batching, backoff and request timeouts).
    NoTimeDriver,
    /// A setting is invalid (for example a batch size of zero).
    InvalidConfig(&'static str),
    /// The OTLP client could not be built; the text is the client's error.
    Build(String),
    /// An `OTEL_EXPORTER_OTLP_*` variable (or one given to
    /// [`environment`](crate::integrations::otlp::OtlpExporterBuilder::environment)) holds a
    /// value the exporter cannot use. `why` names the value, except a header's value (it may be
    /// a secret).
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with its value.
        why: String,
    },
    /// The endpoint is not an `http://` or `https://` URL with a host.
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
    /// A header cannot be sent: its name is not a valid HTTP header name (or gRPC metadata
    /// key), or its value holds characters a header cannot carry. The value is not repeated.
    Header {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// TLS could not be set up: an extra CA certificate that cannot be read or parsed, or no
    /// trusted root certificate at all.
    Tls(String),
    /// The settings ask for something a cargo feature of spanbus brings, and that feature is
    /// off: for example gRPC without `otlp-grpc`, or an `https://` endpoint without
    /// `otlp-tls`.
    FeatureDisabled {
        /// What was asked for.
        needs: &'static str,
        /// The cargo feature that brings it.
        feature: &'static str,
    },
    /// A preset needs an environment variable that is not set (or is empty).
    MissingEnv {
        /// The variable.
        name: &'static str,
        /// The preset that needs it.
        needed_by: &'static str,
    },
}

#[cfg(feature = "otlp")]
impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtlpError::NoRuntime => f.write_str(
                "no tokio runtime is running on this thread: build the OTLP exporter inside a runtime",
            ),
            OtlpError::NoTimeDriver => f.write_str(
                "the tokio runtime on this thread has no time driver, which the OTLP exporter needs: build the runtime with `enable_time()` (or `enable_all()`)",
            ),
            OtlpError::InvalidConfig(why) => write!(f, "invalid OTLP exporter settings: {why}"),
            OtlpError::Build(why) => write!(f, "the OTLP client could not be built: {why}"),
            OtlpError::Env { name, why } => write!(f, "invalid {name}: {why}"),
            OtlpError::Endpoint { endpoint, why } => {
                write!(f, "invalid OTLP endpoint {endpoint:?}: {why}")
            }
            OtlpError::Header { name, why } => write!(f, "invalid OTLP header {name:?}: {why}"),
            OtlpError::Tls(why) => write!(f, "TLS for the OTLP exporter: {why}"),
            OtlpError::FeatureDisabled { needs, feature } => write!(
                f,
                "{needs} needs the cargo feature `{feature}` of spanbus, which is not enabled"
            ),
            OtlpError::MissingEnv { name, needed_by } => {
                write!(f, "{name} is not set, and {needed_by} needs it")
            }
        }
    }
}

#[cfg(feature = "otlp")]
impl std::error::Error for OtlpError {}
