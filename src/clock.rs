//! The record clock: a wall-clock timestamp in a few nanoseconds.
//!
//! Every record is stamped when it is made. `SystemTime::now()` costs 25–35 ns in a VM (a
//! `clock_gettime` through the vDSO), which was the largest single item of an emit. This clock
//! reads the CPU's cycle counter instead (through [`quanta`], which uses it only where it is
//! invariant, and falls back to the monotonic clock elsewhere) and turns ticks into nanoseconds
//! since the Unix epoch against a per-thread **anchor**: one reading of the system clock paired
//! with one reading of the counter.
//!
//! # Semantics
//!
//! - A timestamp is nanoseconds since the Unix epoch (UTC), as `SystemTime` would give, to
//!   within the counter's calibration error since the thread's anchor was taken.
//! - Each thread re-anchors to the system clock about every 0.2 s, so timestamps follow the
//!   system clock (NTP slewing and steps included) with that lag, and the counter's drift
//!   cannot accumulate.
//! - Within one thread timestamps never go backwards between anchors; across a re-anchor they
//!   may step by what the counter drifted (microseconds at most), as `SystemTime` itself may.
//! - The counter is calibrated against the monotonic clock once per process (0.5–200 ms;
//!   about 1 ms on the 2-core VM of the benchmarks), when the first handler is attached: records
//!   exist only once a handler listens, so no emit pays for it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Re-anchor after this many nanoseconds of counter time.
const REANCHOR_NS: u64 = 200_000_000;

fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A thread's anchor: the counter's raw reading and the system clock's nanoseconds at the same
/// moment. `raw == 0` means not yet taken.
#[derive(Clone, Copy)]
struct Anchor {
    raw: u64,
    wall: u64,
}

thread_local! {
    static ANCHOR: Cell<Anchor> = const { Cell::new(Anchor { raw: 0, wall: 0 }) };
}

/// Nanoseconds since the Unix epoch according to the system clock (0 before 1970).
fn system_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Calibrates the clock if it is not yet (the first call costs 0.5–200 ms, about one here).
pub(crate) fn calibrate() {
    clock();
}

/// The current time in nanoseconds since the Unix epoch.
#[inline]
pub(crate) fn now_nanos() -> u64 {
    let clock = clock();
    let raw = clock.raw();
    ANCHOR
        .try_with(|cell| {
            let anchor = cell.get();
            let since = clock.delta_as_nanos(anchor.raw, raw);
            if anchor.raw != 0 && since < REANCHOR_NS {
                anchor.wall + since
            } else {
                reanchor(cell, clock)
            }
        })
        // The thread is tearing down its thread-locals: ask the system clock directly.
        .unwrap_or_else(|_| system_nanos())
}

#[cold]
fn reanchor(cell: &Cell<Anchor>, clock: &quanta::Clock) -> u64 {
    let wall = system_nanos();
    cell.set(Anchor {
        raw: clock.raw(),
        wall,
    });
    wall
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_agrees_with_the_system_clock_and_never_goes_backwards_on_a_thread() {
        let mut last = 0;
        for _ in 0..100_000 {
            let before = system_nanos();
            let t = now_nanos();
            let after = system_nanos();
            // Within a millisecond of the system clock: the anchor is at most 0.2 s old, and
            // the counter's calibration error over that is far below this bound.
            assert!(
                t + 1_000_000 >= before && t <= after + 1_000_000,
                "{before} {t} {after}"
            );
            // Between anchors time never goes back; a re-anchor (if the thread was descheduled
            // past the interval) may step back by the counter's drift, microseconds at most.
            assert!(t + 100_000 >= last, "went backwards: {last} then {t}");
            last = t;
        }
    }

    #[test]
    fn a_thread_that_lived_past_the_reanchor_interval_still_agrees() {
        let first = now_nanos();
        // Wait on a real condition: the system clock passing the re-anchor interval.
        while system_nanos() < first + REANCHOR_NS + 1_000_000 {
            std::thread::yield_now();
        }
        let before = system_nanos();
        let t = now_nanos();
        let after = system_nanos();
        assert!(t + 1_000_000 >= before && t <= after + 1_000_000);
    }
}
