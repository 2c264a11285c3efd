//! What the test binaries share. Each binary's `main.rs` includes it with
//! `#[path = "../support/mod.rs"] mod support;`, and its modules use what they need.
//!
//! - [`recorder`]: a handler that records everything it sees, a numbered event, `wait_until`;
//! - [`spans`]: handlers that record closed spans and events, and per-span end counts;
//! - [`chromium`]: headless Chromium, for the HTML page;
//! - [`example`]: the main example's binary and the figures of its output;
//! - [`otlp_endpoint`]: a loopback OTLP/HTTP endpoint (plain or TLS) that decodes what it
//!   receives (protobuf or JSON, gzip or not) and answers what a test tells it (a status,
//!   `Retry-After`, or nothing);
//! - [`grpc_endpoint`]: a loopback OTLP/gRPC endpoint (a tonic `TraceService` server) that
//!   answers `OK` or a status a test chooses;
//! - [`test_pki`]: a CA and a server certificate made by the test, for the TLS endpoints;
//! - [`phoenix`]: a real Arize Phoenix: whether it is up, and its spans read back;
//! - [`mlflow`]: a real MLflow tracking server: whether it is up, experiments, traces read back;
//! - [`process_wide`]: the lock held by the tests that use the process-wide registry.
#![allow(dead_code)] // each test binary uses a different subset

pub mod chromium;
pub mod example;
pub mod grpc_endpoint;
pub mod mlflow;
pub mod otlp_endpoint;
pub mod phoenix;
pub mod recorder;
pub mod spans;
pub mod test_pki;

/// A catalog object (a `ChatMessage`, `ChatResponse`, `NodeWithScore`, …) from its llama-index
/// JSON, for tests that write the events' contents as JSON.
pub fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("the JSON of a catalog object")
}

/// Held by each test that flushes the process-wide registry or attaches handlers to it
/// (`spanbus::flush`, handlers on `spanbus::get_dispatcher`'s dispatchers), in binaries that
/// hold more than one such test: the tests of a binary share its process, so without the lock
/// one's process-wide flush would wait on another's handlers.
static PROCESS_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other test of this binary uses the process-wide registry; hold the guard
/// until the test ends.
pub async fn process_wide() -> tokio::sync::MutexGuard<'static, ()> {
    PROCESS_WIDE.lock().await
}
