//! Identifiers: span ids, trace ids and record ids.
//!
//! Span and trace ids have the sizes of W3C Trace Context and OpenTelemetry (8 and 16 bytes), so
//! they map onto OTLP without translation. They are drawn from a per-thread `wyrand` generator
//! seeded from the operating system's randomness (through `uuid`'s v4 generator): ids must be
//! unique, not unpredictable, and this costs about a nanosecond instead of a system call.

use std::cell::Cell;
use std::fmt;
use std::num::{NonZeroU64, NonZeroU128};

use uuid::Uuid;

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// The next 64 random bits of this thread's generator.
#[inline]
pub(crate) fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = seed();
        }
        // wyrand: https://github.com/wangyi-fudan/wyhash
        s = s.wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A generator seed for a thread's first use, from the OS. The low bit keeps it non-zero.
#[cold]
fn seed() -> u64 {
    (Uuid::new_v4().as_u128() as u64) | 1
}

/// A map keyed by span id. Span ids are already uniformly random 64-bit values, so the key is
/// mixed with one multiply and a per-process random seed instead of SipHash (which cost more
/// than the rest of a span's bookkeeping); the seed keeps ids taken from outside (a
/// `traceparent`) from being chosen to collide.
pub(crate) type SpanIdMap<V> = std::collections::HashMap<SpanId, V, SpanIdHasherBuilder>;

/// Builds [`SpanIdHasher`]s with the process's seed.
#[derive(Clone, Copy, Default)]
pub(crate) struct SpanIdHasherBuilder;

/// See [`SpanIdMap`].
pub(crate) struct SpanIdHasher(u64);

fn process_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| (Uuid::new_v4().as_u128() as u64) | 1)
}

impl std::hash::BuildHasher for SpanIdHasherBuilder {
    type Hasher = SpanIdHasher;

    fn build_hasher(&self) -> SpanIdHasher {
        SpanIdHasher(process_seed())
    }
}

impl std::hash::Hasher for SpanIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `SpanId` (it hashes one u64); kept correct for any other key.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        let t = u128::from(self.0 ^ value) * 0x9e37_79b9_7f4a_7c15;
        self.0 = ((t >> 64) as u64) ^ (t as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Per-thread state of [`record_uuid`]: the upper half of the current id block (version bits
/// set), the lower half's starting point, and how many ids the block has handed out.
#[derive(Clone, Copy)]
struct IdBlock {
    hi: u64,
    lo: u64,
    used: u64,
}

thread_local! {
    static ID_BLOCK: Cell<IdBlock> = const { Cell::new(IdBlock { hi: 0, lo: 0, used: BLOCK_IDS }) };
}

/// Ids handed out from one block before a fresh random block is drawn.
const BLOCK_IDS: u64 = 1 << 32;
/// The 62 bits of the lower half that are not the RFC 4122 variant bits.
const LO_MASK: u64 = (1 << 62) - 1;

/// A record id: a valid version-4 (random) UUID, made from a per-thread random block and a
/// counter instead of 122 fresh random bits per id.
///
/// Each thread draws a block from the operating system's randomness (`Uuid::new_v4`): 60
/// random bits in the upper half (the other 4 are the version) and a random 62-bit starting
/// point in the lower half (the other 2 are the variant). Ids in a block are the starting point
/// plus 0, 1, 2, ... (modulo 2^62) in the lower half, and a block is replaced after 2^32 ids, so
/// a block's ids are distinct from each other.
///
/// Why ids stay unique across threads and processes: two blocks can only share an id if their
/// random upper halves are equal (probability 2^-60) and their runs of at most 2^32 consecutive
/// lower halves, each starting at a uniformly random point of a 2^62 cycle, overlap
/// (probability at most 2·2^32/2^62 = 2^-29). So a given pair of blocks collides with
/// probability at most 2^-89, and among B blocks ever drawn (by every thread of every process)
/// with probability at most B²/2 · 2^-89: for a billion blocks (2^30, each up to four billion
/// ids) that is below 2^-30. Fully random v4 UUIDs give about 2^-43 for 2^40 ids in total, the
/// same order; the counter costs an add instead of two generator steps.
///
/// Always inlined into the record's construction (as a call it cost ~13 instructions of its
/// ~31 per record, callgrind W1).
#[inline(always)]
pub(crate) fn record_uuid() -> Uuid {
    ID_BLOCK.with(|cell| {
        let mut block = cell.get();
        if block.used == BLOCK_IDS {
            let (hi, lo) = Uuid::new_v4().as_u64_pair();
            block = IdBlock { hi, lo, used: 0 };
        }
        let lo = (block.lo & !LO_MASK) | (block.lo.wrapping_add(block.used) & LO_MASK);
        block.used += 1;
        cell.set(block);
        Uuid::from_u64_pair(block.hi, lo)
    })
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
        let tops: std::collections::HashSet<u64> = (1..=1000u64)
            .map(|v| SpanIdHasherBuilder.hash_one(SpanId::from_u64(v).unwrap()) >> 57)
            .collect();
        assert!(
            tops.len() > 64,
            "only {} distinct control bytes",
            tops.len()
        );
    }

    #[test]
    fn record_uuids_are_version_4_and_distinct_across_threads() {
        let per_thread: Vec<Vec<Uuid>> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).map(|_| record_uuid()).collect()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut all = std::collections::HashSet::new();
        for ids in &per_thread {
            for id in ids {
                assert_eq!(id.get_version(), Some(uuid::Version::Random), "{id}");
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
                assert!(all.insert(*id), "duplicate {id}");
            }
        }
        // Threads draw different blocks: their upper halves differ.
        let his: std::collections::HashSet<u64> = per_thread
            .iter()
            .map(|ids| ids[0].as_u64_pair().0)
            .collect();
        assert_eq!(his.len(), 4);
    }

    #[test]
    fn a_record_uuid_block_stays_valid_across_the_wrap_of_its_lower_half() {
        ID_BLOCK.with(|cell| {
            cell.set(IdBlock {
                hi: 0x0123_4567_89ab_4def,
                lo: 0x8000_0000_0000_0000 | (LO_MASK - 1),
                used: 0,
            })
        });
        let ids: Vec<Uuid> = (0..4).map(|_| record_uuid()).collect();
        let los: Vec<u64> = ids.iter().map(|id| id.as_u64_pair().1).collect();
        assert_eq!(
            los,
            [
                0xbfff_ffff_ffff_fffe,
                0xbfff_ffff_ffff_ffff,
                0x8000_0000_0000_0000,
                0x8000_0000_0000_0001
            ]
        );
        for id in ids {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
