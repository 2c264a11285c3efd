//! Identifiers: span ids, trace ids and record ids.
//!
//! Span and trace ids have the sizes of W3C Trace Context and OpenTelemetry (8 and 16 bytes), so
//! they map onto OTLP without translation. They are drawn from a per-thread generator
//! (`fastrand`) seeded from the operating system's randomness (through `uuid`'s v4 generator):
//! ids must be unique, not unpredictable, and this costs about a nanosecond instead of a system
//! call. Record ids are version-7 UUIDs: time-ordered, see [`record_uuid`].

use std::cell::Cell;
use std::fmt;
use std::num::{NonZeroU64, NonZeroU128};

use uuid::Uuid;

thread_local! {
    /// This thread's generator state; zero until its first use seeds it.
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// The next 64 random bits of this thread's generator (`fastrand`'s wyrand, its state kept
/// here so that the first use on a thread is seeded from the operating system).
#[inline]
pub(crate) fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = seed();
        }
        let mut rng = fastrand::Rng::with_seed(s);
        let value = rng.u64(..);
        state.set(rng.get_seed());
        value
    })
}

/// A generator seed for a thread's first use, from the OS. The low bit keeps it non-zero.
#[cold]
fn seed() -> u64 {
    (Uuid::new_v4().as_u128() as u64) | 1
}

/// A map keyed by span id, hashed with `foldhash` (seeded per map) rather than SipHash, which
/// cost more than the rest of a span's bookkeeping; the seed keeps ids taken from outside (a
/// `traceparent`) from being chosen to collide.
pub(crate) type SpanIdMap<V> = std::collections::HashMap<SpanId, V, foldhash::fast::RandomState>;

/// Per-thread state of [`record_uuid`]: 42 random bits drawn with the block, and the counter.
#[derive(Clone, Copy)]
struct IdBlock {
    random: u64,
    counter: u64,
}

thread_local! {
    static ID_BLOCK: Cell<IdBlock> = const { Cell::new(IdBlock { random: 0, counter: COUNTER_END }) };
}

/// A block's counter runs up to this, from a random start below half of it.
const COUNTER_END: u64 = 1 << 32;
/// The random bits below the counter.
const RANDOM_BITS: u32 = 42;

/// A record id: a version-7 UUID (RFC 9562), ordered by time.
///
/// The 48-bit millisecond field is the record's own timestamp (so the id says when the record
/// was made, to the millisecond, and costs no second clock read). The 74 bits the RFC leaves
/// to the implementation are a 32-bit counter (its method 1, "fixed bit-length dedicated
/// counter") above 42 random bits; both are per thread. Each thread draws a block from the
/// operating system's randomness: the 42 random bits and a counter start below 2^31. The
/// counter counts up to 2^32, then a new block is drawn. So one thread's ids strictly increase
/// (the record clock never goes backwards, and a block lasts at least 2^31 ids, far more than
/// one millisecond holds).
///
/// Why ids stay unique across threads and processes: two threads' ids can only be equal if
/// they were made in the same millisecond, with equal 42 random bits (probability 2^-42 per
/// pair of blocks) and equal counters, which start at independent random points of a range of
/// 2^31: a thread making n ids in that millisecond overlaps another's run with probability
/// about 2n/2^31. For a million threads alive at once, each making a million ids per second,
/// that is below one collision in 10^6 years.
#[inline(always)]
pub(crate) fn record_uuid(timestamp_nanos: u64) -> Uuid {
    ID_BLOCK.with(|cell| {
        let mut block = cell.get();
        if block.counter == COUNTER_END {
            let (hi, lo) = Uuid::new_v4().as_u64_pair();
            block = IdBlock {
                random: lo & ((1 << RANDOM_BITS) - 1),
                counter: hi & ((1 << 31) - 1),
            };
        }
        let bits = (u128::from(block.counter) << RANDOM_BITS) | u128::from(block.random);
        block.counter += 1;
        cell.set(block);
        v7(timestamp_nanos / 1_000_000, bits)
    })
}

/// The version-7 UUID of `millis` and the 74 bits `rand` (RFC 9562, section 5.7): 48 bits of
/// milliseconds, the version, the top 12 bits of `rand` (`rand_a`), the variant, its low 62
/// bits (`rand_b`). The same UUID as `uuid::Builder::from_unix_timestamp_millis` (a test
/// checks it), placed inline: that builder is a call of about 24 instructions per record.
#[inline(always)]
fn v7(millis: u64, rand: u128) -> Uuid {
    let rand_a = (rand >> 62) as u64 & 0xfff;
    let rand_b = rand as u64 & ((1 << 62) - 1);
    Uuid::from_u64_pair(
        (millis << 16) | 0x7000 | rand_a,
        0x8000_0000_0000_0000 | rand_b,
    )
}

/// The identifier of a span: 8 non-zero bytes, shown as 16 lowercase hex digits.
///
/// This is the `span_id` field of every record's JSON form.
///
/// # Examples
///
/// ```
/// use spanbus::SpanId;
///
/// let id: SpanId = "00f067aa0ba902b7".parse().unwrap();
/// assert_eq!(id.to_string(), "00f067aa0ba902b7");
/// assert!("0000000000000000".parse::<SpanId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// A new random span id.
    #[inline]
    pub fn random() -> Self {
        loop {
            if let Some(id) = NonZeroU64::new(random_u64()) {
                return SpanId(id);
            }
        }
    }

    /// The id from its 64-bit value; `None` for zero, which W3C reserves for "no span".
    pub fn from_u64(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(SpanId)
    }

    /// The id's 64-bit value.
    pub fn to_u64(self) -> u64 {
        self.0.get()
    }
}

/// The identifier of a trace (the tree a root span starts): 16 non-zero bytes, shown as 32
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// A new random trace id.
    #[inline]
    pub fn random() -> Self {
        loop {
            let bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
            if let Some(id) = NonZeroU128::new(bits) {
                return TraceId(id);
            }
        }
    }

    /// The id from its 128-bit value; `None` for zero, which W3C reserves for "no trace".
    pub fn from_u128(value: u128) -> Option<Self> {
        NonZeroU128::new(value).map(TraceId)
    }

    /// The id's 128-bit value.
    pub fn to_u128(self) -> u128 {
        self.0.get()
    }
}

macro_rules! hex_id {
    ($ty:ident, $int:ty, $width:literal, $from:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:0width$x}", self.0.get(), width = $width)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($ty))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::error::IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bad = || crate::error::IdError {
                    kind: stringify!($ty),
                    input: s.chars().take(64).collect(),
                };
                if s.len() != $width
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(bad());
                }
                let value = <$int>::from_str_radix(s, 16).map_err(|_| bad())?;
                $ty::$from(value).ok_or_else(bad)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(SpanId, u64, 16, from_u64);
hex_id!(TraceId, u128, 32, from_u128);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_hex_form() {
        for _ in 0..1000 {
            let s = SpanId::random();
            assert_eq!(s.to_string().parse::<SpanId>().unwrap(), s);
            let t = TraceId::random();
            assert_eq!(t.to_string().parse::<TraceId>().unwrap(), t);
        }
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "00f067aa0ba902b",
            "00F067AA0BA902B7",
            "00f067aa0ba902bz",
            "+0f067aa0ba902b7",
        ] {
            assert!(bad.parse::<SpanId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn span_id_maps_find_what_they_hold_and_spread_keys() {
        use std::hash::BuildHasher;
        let ids: Vec<SpanId> = (0..10_000).map(|_| SpanId::random()).collect();
        let mut map = SpanIdMap::default();
        for (i, id) in ids.iter().enumerate() {
            map.insert(*id, i);
        }
        assert_eq!(map.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.remove(id), Some(i));
        }
        // Sequential ids (say, chosen from outside) still land in distinct top-7-bit groups.
        let hasher = map.hasher();
        let tops: std::collections::HashSet<u64> = (1..=1000u64)
            .map(|v| hasher.hash_one(SpanId::from_u64(v).unwrap()) >> 57)
            .collect();
        assert!(
            tops.len() > 64,
            "only {} distinct control bytes",
            tops.len()
        );
    }

    /// Record ids as the record clock would stamp them now.
    fn ids(n: usize) -> Vec<Uuid> {
        (0..n)
            .map(|_| record_uuid(crate::clock::now_nanos()))
            .collect()
    }

    #[test]
    fn record_ids_are_version_7_distinct_across_threads_and_increase_within_each() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let per_thread: Vec<Vec<Uuid>> = (0..8)
            .map(|_| std::thread::spawn(|| ids(50_000)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut all = std::collections::HashSet::new();
        for ids in &per_thread {
            for pair in ids.windows(2) {
                assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            }
            for id in ids {
                assert_eq!(id.get_version(), Some(uuid::Version::SortRand), "{id}");
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
                let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
                let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
                // The record clock follows the system clock to well within a millisecond.
                assert!(
                    ms + 1 >= before && ms <= after + 1,
                    "{id}: {ms} not in {before}..={after}"
                );
                assert!(all.insert(*id), "duplicate {id}");
            }
        }
        println!(
            "{} record ids from 8 threads, all distinct and in order",
            all.len()
        );
    }

    #[test]
    fn a_record_id_block_is_redrawn_when_its_counter_runs_out() {
        ID_BLOCK.with(|cell| {
            cell.set(IdBlock {
                random: 0x2aa_aaaa_aaaa,
                counter: COUNTER_END - 2,
            })
        });
        let ids = ids(4);
        // The 74 bits after the timestamp: 12 of `rand_a`, then 62 of `rand_b`.
        let bits = |id: &Uuid| {
            let (hi, lo) = id.as_u64_pair();
            (u128::from(hi & 0xfff) << 62) | u128::from(lo & ((1 << 62) - 1))
        };
        let counter = |id: &Uuid| (bits(id) >> RANDOM_BITS) as u64;
        assert_eq!(
            ids[0].as_u64_pair().1 & ((1 << RANDOM_BITS) - 1),
            0x2aa_aaaa_aaaa
        );
        assert!(ids[0] < ids[1]);
        assert!(
            counter(&ids[2]) < 1 << 31,
            "the new block starts its counter below 2^31"
        );
        assert_eq!(counter(&ids[3]), counter(&ids[2]) + 1);
        for id in ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn a_record_id_is_the_uuid_crates_version_7_layout() {
        for _ in 0..1000 {
            let millis = random_u64() >> 16;
            let rand = (u128::from(random_u64()) << 64 | u128::from(random_u64())) >> 54;
            let rand_a = ((rand >> 62) as u16).to_be_bytes();
            let rand_b = ((rand as u64) & ((1 << 62) - 1)).to_be_bytes();
            let mut bytes = [0u8; 10];
            bytes[..2].copy_from_slice(&rand_a);
            bytes[2..].copy_from_slice(&rand_b);
            let expected = uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid();
            assert_eq!(v7(millis, rand), expected);
        }
    }

    /// Run by the next test in child processes: prints record ids, one per line.
    #[test]
    #[ignore = "a child process of record_ids_are_distinct_across_processes"]
    fn print_record_ids_for_a_parent_process() {
        if std::env::var_os("SPANBUS_PRINT_RECORD_IDS").is_some() {
            for id in ids(20_000) {
                println!("record-id {id}");
            }
        }
    }

    #[test]
    fn record_ids_are_distinct_across_processes() {
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--ignored", "--exact", "--nocapture", "--test-threads=1"])
                    .arg("id::tests::print_record_ids_for_a_parent_process")
                    .env("SPANBUS_PRINT_RECORD_IDS", "1")
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut all: std::collections::HashSet<Uuid> = ids(20_000).into_iter().collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let text = String::from_utf8(out.stdout).unwrap();
            let mut n = 0;
            // The first id shares its line with the test harness's "test ... " prefix.
            for line in text
                .lines()
                .filter_map(|l| Some(l.rsplit_once("record-id ")?.1))
            {
                assert!(all.insert(line.parse().unwrap()), "duplicate {line}");
                n += 1;
            }
            assert_eq!(n, 20_000, "the child printed every id");
        }
        println!("{} record ids from 5 processes, all distinct", all.len());
    }
}
