//! The timer that bounds how long a handler task lingers (see `super::channel`).
//!
//! # Semantics
//!
//! While records keep coming, a handler task that has handled a batch parks **lingering**: it
//! is woken by the push that makes its next batch, or by this timer [`DELAY`] after it began
//! lingering, whichever comes first. So a busy handler is woken once per batch instead of once
//! per record, and a record waits for its handler at most about [`DELAY`] plus the timer's
//! resolution (tokio's timer has millisecond resolution).
//!
//! - When the timer fires, the task takes whatever arrived and, if nothing did, parks without
//!   lingering: it is **quiet**, and the next record wakes it at once. A quiet spell therefore
//!   costs no timer at all, and the first record after it is delivered without delay.
//! - The timer is armed once per lingering spell, not once per park: a handler woken by a full
//!   batch that parks lingering again keeps the running deadline (at most one timer per
//!   [`DELAY`] per handler).
//! - A flush or a close wakes a lingering handler at once (see `super::channel`).
//!
//! The timer is the runtime's own (`tokio::time`), so that no thread of ours competes with the
//! runtime's workers for cores. A runtime built without the time driver has no timer; tokio
//! offers no way to ask, so the task tries to make one when it starts and, if that panics, its
//! handler never lingers (tokio prints its "timers are disabled" message once for that task).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How long a lingering handler waits for a full batch before it takes what it has.
pub(crate) const DELAY: Duration = Duration::from_millis(1);

/// A timer of the current runtime, or `None` when it has no time driver (or there is no
/// runtime): tokio offers no way to ask, so this tries to make one (tokio's panic message is
/// printed then).
fn timer() -> Option<Pin<Box<Sleep>>> {
    std::panic::catch_unwind(|| Box::pin(tokio::time::sleep(Duration::ZERO))).ok()
}

/// Whether the current tokio runtime has its time driver (`tokio::time` works here). Prints
/// tokio's panic message when it has not.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn has_time_driver() -> bool {
    timer().is_some()
}

/// A handler task's lingering state and timer.
pub(crate) struct Linger {
    /// `None` without a time driver (then the handler never lingers).
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current lingering spell.
    armed: bool,
    /// No records since the task started or since the last spell ran out: do not linger
    /// until records arrive (the first one wakes the handler at once).
    quiet: bool,
}

impl Linger {
    /// A handler task's state; call inside the task (on its runtime).
    pub(crate) fn new() -> Self {
        let timer = if cfg!(loom) { None } else { timer() };
        Linger {
            timer,
            armed: false,
            // A new handler has nothing to wait for: it arms no timer until it gets records.
            quiet: true,
        }
    }

    /// Whether the next park may linger. Polls the timer: a spell whose delay is over ends
    /// here, so the reader takes what arrived and, finding nothing, parks without lingering
    /// (and the caller calls [`parked`](Self::parked) with `lingering == false`).
    pub(crate) fn may_linger(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = &mut self.timer else {
            return false;
        };
        if self.armed && timer.as_mut().poll(cx).is_ready() {
            self.armed = false;
            self.quiet = true;
        }
        !self.quiet
    }

    /// After a park: arms the timer when the reader lingers and it is not armed yet.
    pub(crate) fn parked(&mut self, lingering: bool, cx: &mut Context<'_>) {
        if let Some(timer) = &mut self.timer
            && lingering
            && !self.armed
        {
            timer.as_mut().reset(Instant::now() + DELAY);
            self.armed = true;
            // Registers the task's waker with the timer (a fresh deadline is not yet due).
            let _ = timer.as_mut().poll(cx);
        }
    }

    /// Records arrived: lingering resumes.
    pub(crate) fn got_records(&mut self) {
        self.quiet = false;
    }
}
