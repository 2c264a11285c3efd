//! The record clock: a wall-clock timestamp in a few nanoseconds.
//!
//! Every record is stamped when it is made. `SystemTime::now()` costs 25–35 ns in a VM (a
//! `clock_gettime` through the vDSO), which was the largest single item of an emit. This clock
//! reads the CPU's cycle counter instead (through [`quanta`], which uses it only where it is
//! invariant, and falls back to the monotonic clock elsewhere) and maps ticks to nanoseconds
//! since the Unix epoch with one **mapping** shared by every thread: an anchor (a counter
//! reading and the wall-clock time it stands for) and a rate.
//!
//! # Semantics
//!
//! - A timestamp is nanoseconds since the Unix epoch (UTC), as `SystemTime` would give, to
//!   within a few microseconds.
//! - Every thread uses the same mapping, so timestamps taken on different threads are ordered
//!   as the readings of the (invariant, core-synchronized) counter were: a span that begins on
//!   one thread and ends on another never ends before it begins. (A mapping per thread, which
//!   this replaced, let two threads disagree by their anchors' errors: microseconds, more than
//!   a short span lasts.)
//! - About every 0.2 s of counter time, the first thread to stamp a record **re-anchors** the
//!   mapping to the system clock. The new mapping starts where the old one was at that moment
//!   (no step) and absorbs the error by running slightly fast or slow over the next interval,
//!   as NTP slews the system clock. So the clock never goes backwards, and follows the system
//!   clock, NTP's corrections included, with that lag.
//! - An error over 1 ms (the system clock was stepped, or nothing was stamped for a long time)
//!   is corrected by a step instead, which may go backwards, as `SystemTime` itself may.
//! - The counter is calibrated against the monotonic clock once per process (0.5–200 ms;
//!   about 1 ms on the 2-core VM of the benchmarks), when the first handler is attached:
//!   records exist only once a handler listens, so no emit pays for it.
//!
//! The mapping is three words behind a sequence lock: readers retry in the rare case that a
//! re-anchor wrote it while they read it, and a re-anchor takes no lock that a reader waits on
//! for longer than three stores.

use std::hint::spin_loop;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::SystemTime;

/// Re-anchor after this many nanoseconds of counter time.
const REANCHOR_NS: u64 = 200_000_000;
/// Errors up to this are slewed away; larger ones are stepped.
const MAX_SLEW_NS: u64 = 1_000_000;

/// The counter, and its nominal rate: nanoseconds per 2³² ticks.
struct Counter {
    clock: quanta::Clock,
    nominal: u64,
}

fn counter() -> &'static Counter {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let clock = quanta::Clock::new();
        let nominal = clock.delta_as_nanos(0, 1 << 32).max(1);
        Counter { clock, nominal }
    })
}

/// The shared mapping: `wall + (ticks since raw) × mult / 2³²`. `raw == 0` means not yet set.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    raw: u64,
    wall: u64,
    mult: u64,
}

impl Mapping {
    /// Nanoseconds since `raw`, by this mapping's rate. A reading from before the anchor (a
    /// thread that read the counter just before another re-anchored) counts as the anchor.
    #[inline]
    fn since(&self, raw: u64) -> u64 {
        let ticks = raw.saturating_sub(self.raw);
        ((u128::from(ticks) * u128::from(self.mult)) >> 32) as u64
    }
}

/// Even: the mapping is stable; odd: a re-anchor is writing it.
static SEQ: AtomicU64 = AtomicU64::new(0);
static RAW: AtomicU64 = AtomicU64::new(0);
static WALL: AtomicU64 = AtomicU64::new(0);
static MULT: AtomicU64 = AtomicU64::new(0);

/// Reads the mapping and the sequence it was read at.
#[inline]
fn read() -> (Mapping, u64) {
    let mut spins = 0u32;
    loop {
        let seq = SEQ.load(Ordering::Acquire);
        let mapping = Mapping {
            raw: RAW.load(Ordering::Relaxed),
            wall: WALL.load(Ordering::Relaxed),
            mult: MULT.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        if seq & 1 == 0 && SEQ.load(Ordering::Relaxed) == seq {
            return (mapping, seq);
        }
        // A re-anchor is three stores long; if its thread was preempted in the middle, let it
        // run instead of spinning through a time slice.
        spins += 1;
        if spins < 64 {
            spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Nanoseconds since the Unix epoch according to the system clock (0 before 1970).
fn system_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Calibrates the clock if it is not yet (the first call costs 0.5–200 ms, about one here).
pub(crate) fn calibrate() {
    if !cfg!(miri) {
        counter();
    }
}

/// The current time in nanoseconds since the Unix epoch.
#[inline]
pub(crate) fn now_nanos() -> u64 {
    // Miri cannot run the cycle counter's instructions: the unit tests of the unsafe code it
    // checks read the system clock instead.
    if cfg!(miri) {
        return system_nanos();
    }
    let counter = counter();
    let (mapping, seq) = read();
    let raw = counter.clock.raw();
    let since = mapping.since(raw);
    if mapping.raw != 0 && since < REANCHOR_NS {
        mapping.wall + since
    } else {
        reanchor(counter, mapping, seq, raw)
    }
}

/// Re-anchors the mapping (see the module docs) and returns the time at `raw`.
#[cold]
fn reanchor(counter: &Counter, old: Mapping, seq: u64, raw: u64) -> u64 {
    let system = system_nanos();
    // Only one thread writes; the others go on with the mapping they read, which is
    // continuous with the new one at the moment of the re-anchor.
    if SEQ
        .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return if old.raw == 0 {
            system
        } else {
            old.wall + old.since(raw)
        };
    }
    let new = next_mapping(old, raw, system, counter.nominal);
    fence(Ordering::Release);
    RAW.store(new.raw, Ordering::Relaxed);
    WALL.store(new.wall, Ordering::Relaxed);
    MULT.store(new.mult, Ordering::Relaxed);
    SEQ.store(seq + 2, Ordering::Release);
    new.wall
}

/// The mapping that follows `old` at counter reading `raw`, when the system clock reads
/// `system` and the counter's nominal rate is `nominal`.
fn next_mapping(old: Mapping, raw: u64, system: u64, nominal: u64) -> Mapping {
    let step = Mapping {
        raw,
        wall: system,
        mult: nominal,
    };
    if old.raw == 0 {
        return step;
    }
    let here = old.wall + old.since(raw);
    let error = i128::from(system) - i128::from(here);
    if error.unsigned_abs() > u128::from(MAX_SLEW_NS) {
        return step;
    }
    // Run at `(interval + error) / interval` of the nominal rate for the next interval, so
    // that it ends on the system clock; |error| ≤ 1 ms of a 200 ms interval keeps the rate
    // within 0.5 % of nominal, and positive.
    let interval = i128::from(REANCHOR_NS);
    let mult = i128::from(nominal) * (interval + error) / interval;
    Mapping {
        raw,
        wall: here,
        mult: u64::try_from(mult).unwrap_or(nominal).max(1),
    }
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
            // Within a millisecond of the system clock: errors above that are stepped away.
            assert!(
                t + 1_000_000 >= before && t <= after + 1_000_000,
                "{before} {t} {after}"
            );
            assert!(t >= last, "went backwards: {last} then {t}");
            last = t;
        }
    }

    #[test]
    fn a_time_taken_after_another_on_a_different_thread_is_not_earlier() {
        // Fresh threads each time: with one mapping per thread, two threads' anchors could
        // disagree by more than the hand-over takes.
        for _ in 0..200 {
            let first = std::thread::spawn(now_nanos).join().unwrap();
            let second = std::thread::spawn(now_nanos).join().unwrap();
            assert!(second >= first, "{second} is before {first}");
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
        assert!(t >= first);
    }

    #[test]
    fn a_small_error_is_slewed_without_a_step_and_gone_by_the_next_anchor() {
        let nominal = 1u64 << 32; // one nanosecond per tick
        let old = Mapping {
            raw: 1_000,
            wall: 5_000_000_000,
            mult: nominal,
        };
        // 0.2 s later by the counter, the system clock says we are 40 µs behind it.
        let raw = old.raw + REANCHOR_NS;
        let here = old.wall + REANCHOR_NS;
        let new = next_mapping(old, raw, here + 40_000, nominal);
        assert_eq!(new.wall, here, "continuous: no step at the re-anchor");
        let end = new.wall + new.since(raw + REANCHOR_NS);
        let target = here + 40_000 + REANCHOR_NS;
        assert!(end.abs_diff(target) <= 1, "{end} vs {target}");
        // Ahead of the system clock: slower, still forwards.
        let new = next_mapping(old, raw, here - 40_000, nominal);
        assert_eq!(new.wall, here);
        assert!(new.mult < nominal && new.mult > 0);
        assert!(new.since(raw + 10) > 0);
    }

    #[test]
    fn a_large_error_is_stepped_to_the_system_clock() {
        let nominal = 1u64 << 32;
        let old = Mapping {
            raw: 1_000,
            wall: 5_000_000_000,
            mult: nominal,
        };
        let raw = old.raw + REANCHOR_NS;
        let system = old.wall + REANCHOR_NS - 3 * MAX_SLEW_NS;
        let new = next_mapping(old, raw, system, nominal);
        assert_eq!((new.raw, new.wall, new.mult), (raw, system, nominal));
    }
}
