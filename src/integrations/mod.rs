//! Bridges to other crates, each behind a cargo feature.
//!
//! | feature | module | what it does |
//! |---|---|---|
//! | `tracing` | `tracing` | `tracing` spans and events into spanbus, and spanbus records into `tracing` |
//! | `otlp` | `otlp` | spans exported over OTLP/HTTP with GenAI and OpenInference attributes (Phoenix, MLflow, Langfuse, …) |
//! | — | [`openinference`] | the OpenInference attributes of a span, from the LLM event catalog |
//! | — | [`genai`] | the OpenTelemetry GenAI attributes (`gen_ai.*`) of a span, and the table of their names |

pub mod genai;
pub mod openinference;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "tracing")]
pub mod tracing;
