//! `spanbus::shutdown` shuts down every dispatcher of the process-wide registry, and every one
//! asked for afterwards. A binary of its own: here, the process is this test's alone, and the
//! shutdown cannot shut down a dispatcher another test is using.

#[path = "../support/mod.rs"]
mod support;

mod process_wide_shutdown_stops_every_dispatcher;
