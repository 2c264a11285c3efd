//! W3C Trace Context `traceparent` header: parse and format.
//!
//! Grammar (W3C Trace Context, "traceparent Header Field Values"):
//!
//! ```text
//! HEXDIGLC       = DIGIT / "a" / "b" / "c" / "d" / "e" / "f"
//! value          = version "-" version-format
//! version        = 2HEXDIGLC            ; ff is forbidden
//! version-format = trace-id "-" parent-id "-" trace-flags      ; for version 00
//! trace-id       = 32HEXDIGLC           ; all zeroes forbidden
//! parent-id      = 16HEXDIGLC           ; all zeroes forbidden
//! trace-flags    = 2HEXDIGLC
//! ```
//!
//! * Version `00`: the value is exactly 55 characters; anything else is invalid.
//! * A higher version (`01`..=`fe`): at least 55 characters; the first 55 are read
//!   with the 00 layout, and if more follow, character 56 must be `-` (what comes
//!   after is an unknown future field and is ignored). The parsed value is then
//!   re-emitted as version `00` (the spec's "downgrade the version" mutation).
//! * Only lowercase hex is accepted. No surrounding whitespace is trimmed: an HTTP
//!   layer strips optional whitespace around field values before this is called.
//!
//! The flags byte is kept as received, so `parse(x).to_string() == x` for every
//! valid version-00 `x`. Only bit 0 (`sampled`) is defined by Level 1, bit 1
//! (`random`) by Level 2; the spec says a vendor MUST send undefined bits as zero,
//! which [`TraceParent::with_known_flags_only`] does.
use std::fmt;
use std::str::FromStr;

use crate::context::SpanContext;
use crate::id::{SpanId, TraceId};

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// A parsed `traceparent` (always represented as version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16-byte trace id, big-endian (the hex string read as one number). Never 0.
    pub trace_id: u128,
    /// 8-byte parent (span) id of the caller, big-endian. Never 0.
    pub parent_id: u64,
    /// trace-flags byte, as received.
    pub flags: u8,
}

impl TraceParent {
    /// The `sampled` bit (bit 0).
    pub const FLAG_SAMPLED: u8 = 0x01;
    /// The `random` bit (bit 1, Trace Context Level 2): the trace id's
    /// rightmost 7 bytes are random.
    pub const FLAG_RANDOM: u8 = 0x02;
    const KNOWN_FLAGS: u8 = Self::FLAG_SAMPLED | Self::FLAG_RANDOM;

    /// Builds a value, rejecting the all-zero ids the spec forbids.
    ///
    /// # Errors
    ///
    /// [`TraceParentError::ZeroTraceId`] or [`TraceParentError::ZeroParentId`].
    pub fn new(trace_id: u128, parent_id: u64, flags: u8) -> Result<Self, TraceParentError> {
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses a `traceparent` header value. Same as `s.parse()`.
    ///
    /// # Errors
    ///
    /// A [`TraceParentError`] naming what is wrong; never panics, whatever the input.
    pub fn parse(s: &str) -> Result<Self, TraceParentError> {
        parse_bytes(s.as_bytes())
    }

    /// Alias for `parent_id`: the caller's span id.
    pub fn span_id(&self) -> u64 {
        self.parent_id
    }

    /// Whether the caller may have recorded trace data (bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & Self::FLAG_SAMPLED != 0
    }

    /// Whether the trace id is marked random (bit 1, Level 2).
    pub fn random(&self) -> bool {
        self.flags & Self::FLAG_RANDOM != 0
    }

    /// Returns a copy with the sampled bit set or cleared.
    pub fn with_sampled(mut self, sampled: bool) -> Self {
        if sampled {
            self.flags |= Self::FLAG_SAMPLED;
        } else {
            self.flags &= !Self::FLAG_SAMPLED;
        }
        self
    }

    /// Returns a copy with the undefined flag bits zeroed, as the spec requires
    /// when sending.
    pub fn with_known_flags_only(mut self) -> Self {
        self.flags &= Self::KNOWN_FLAGS;
        self
    }

    /// A child context: same trace and flags, new parent id.
    ///
    /// # Errors
    ///
    /// [`TraceParentError::ZeroParentId`] when `parent_id` is zero.
    pub fn with_parent_id(self, parent_id: u64) -> Result<Self, TraceParentError> {
        Self::new(self.trace_id, parent_id, self.flags)
    }

    /// The value for a spanbus span: its trace id and its span id as the parent id.
    pub fn from_span_context(span: SpanContext, flags: u8) -> Self {
        Self {
            trace_id: span.trace_id().to_u128(),
            parent_id: span.span_id().to_u64(),
            flags,
        }
    }

    /// The caller's span as a spanbus [`SpanContext`]: spans started under it become its
    /// children in the same trace.
    pub fn span_context(&self) -> Option<SpanContext> {
        Some(SpanContext::new(
            TraceId::from_u128(self.trace_id)?,
            SpanId::from_u64(self.parent_id)?,
        ))
    }
}

impl fmt::Display for TraceParent {
    /// Canonical version-00 form: `00-{trace_id:032x}-{parent_id:016x}-{flags:02x}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a `traceparent` value was rejected. Positions are 0-based byte offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceParentError {
    /// The carrier has no `traceparent` header (see [`extract`](super::extract)).
    Missing,
    /// Shorter than the 55 characters every version needs.
    TooShort {
        /// The value's length in bytes.
        len: usize,
    },
    /// Version 00 with more than 55 characters.
    TooLong {
        /// The value's length in bytes.
        len: usize,
    },
    /// The version is not two lowercase hex digits.
    InvalidVersion,
    /// Version `ff`, which the spec forbids.
    ForbiddenVersion,
    /// A `-` was expected at this position.
    MissingDash {
        /// The 0-based byte offset.
        position: usize,
    },
    /// The trace id is not 32 lowercase hex digits.
    InvalidTraceId,
    /// The trace id is all zeroes.
    ZeroTraceId,
    /// The parent id is not 16 lowercase hex digits.
    InvalidParentId,
    /// The parent id is all zeroes.
    ZeroParentId,
    /// The trace flags are not 2 lowercase hex digits.
    InvalidFlags,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no traceparent header"),
            Self::TooShort { len } => {
                write!(
                    f,
                    "traceparent is too short: {len} characters, need {TRACEPARENT_LEN}"
                )
            }
            Self::TooLong { len } => write!(
                f,
                "traceparent version 00 must be exactly {TRACEPARENT_LEN} characters, got {len}"
            ),
            Self::InvalidVersion => {
                f.write_str("traceparent version is not two lowercase hex digits")
            }
            Self::ForbiddenVersion => f.write_str("traceparent version ff is forbidden"),
            Self::MissingDash { position } => {
                write!(f, "traceparent expects '-' at position {position}")
            }
            Self::InvalidTraceId => {
                f.write_str("traceparent trace-id is not 32 lowercase hex digits")
            }
            Self::ZeroTraceId => f.write_str("traceparent trace-id is all zeroes"),
            Self::InvalidParentId => {
                f.write_str("traceparent parent-id is not 16 lowercase hex digits")
            }
            Self::ZeroParentId => f.write_str("traceparent parent-id is all zeroes"),
            Self::InvalidFlags => {
                f.write_str("traceparent trace-flags is not two lowercase hex digits")
            }
        }
    }
}

impl std::error::Error for TraceParentError {}

/// Value of one lowercase hex digit, or None.
fn hex_lc(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Reads lowercase hex into a u128 (callers pass at most 32 digits).
fn parse_hex(digits: &[u8]) -> Option<u128> {
    digits
        .iter()
        .try_fold(0u128, |acc, &b| Some((acc << 4) | u128::from(hex_lc(b)?)))
}

fn expect_dash(b: &[u8], position: usize) -> Result<(), TraceParentError> {
    if b.get(position) == Some(&b'-') {
        Ok(())
    } else {
        Err(TraceParentError::MissingDash { position })
    }
}

fn parse_bytes(b: &[u8]) -> Result<TraceParent, TraceParentError> {
    use TraceParentError as E;
    // Version first, so a bad prefix is reported as such even on short input.
    let version = match (b.first(), b.get(1)) {
        (Some(&h), Some(&l)) => match (hex_lc(h), hex_lc(l)) {
            (Some(h), Some(l)) => (h << 4) | l,
            _ => return Err(E::InvalidVersion),
        },
        _ => return Err(E::TooShort { len: b.len() }),
    };
    if version == 0xff {
        return Err(E::ForbiddenVersion);
    }
    if b.len() < TRACEPARENT_LEN {
        expect_dash(b, 2)?;
        return Err(E::TooShort { len: b.len() });
    }
    if version == 0 && b.len() > TRACEPARENT_LEN {
        return Err(E::TooLong { len: b.len() });
    }
    expect_dash(b, 2)?;
    let trace_id = parse_hex(&b[3..35]).ok_or(E::InvalidTraceId)?;
    expect_dash(b, 35)?;
    let parent_id = parse_hex(&b[36..52]).ok_or(E::InvalidParentId)? as u64;
    expect_dash(b, 52)?;
    let flags = parse_hex(&b[53..55]).ok_or(E::InvalidFlags)? as u8;
    // Future versions: the flags are either last or followed by a dash.
    if b.len() > TRACEPARENT_LEN {
        expect_dash(b, TRACEPARENT_LEN)?;
    }
    TraceParent::new(trace_id, parent_id, flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TraceParentError as E;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_spec_example() {
        let tp: TraceParent = GOOD.parse().unwrap();
        assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(tp.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(tp.span_id(), 0x00f067aa0ba902b7);
        assert_eq!(tp.flags, 0x01);
        assert!(tp.sampled());
        assert!(!tp.random());
        assert_eq!(tp.to_string(), GOOD);
    }

    #[test]
    fn not_sampled_and_other_flags_round_trip() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let tp = TraceParent::parse(s).unwrap();
        assert!(!tp.sampled());
        assert_eq!(tp.to_string(), s);

        // Flag bits are a bit field: 09 = sampled + an undefined bit.
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09").unwrap();
        assert!(tp.sampled());
        assert_eq!(tp.flags, 0x09);
        assert_eq!(tp.with_known_flags_only().flags, 0x01);
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert!(tp.sampled() && tp.random());
        assert_eq!(tp.with_sampled(false).flags, 0x02);
    }

    #[test]
    fn display_pads_with_zeroes() {
        let tp = TraceParent::new(1, 2, 0).unwrap();
        assert_eq!(
            tp.to_string(),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
        let tp = TraceParent::new(u128::MAX, u64::MAX, 0xff).unwrap();
        assert_eq!(
            tp.to_string(),
            "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff"
        );
        assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
    }

    #[test]
    fn new_rejects_zero_ids() {
        assert_eq!(TraceParent::new(0, 1, 1), Err(E::ZeroTraceId));
        assert_eq!(TraceParent::new(1, 0, 1), Err(E::ZeroParentId));
        let tp = TraceParent::new(1, 1, 1).unwrap();
        assert_eq!(tp.with_parent_id(0), Err(E::ZeroParentId));
        assert_eq!(tp.with_parent_id(7).unwrap().parent_id, 7);
    }

    #[test]
    fn rejects_malformed_values() {
        let cases: &[(&str, TraceParentError)] = &[
            ("", E::TooShort { len: 0 }),
            ("0", E::TooShort { len: 1 }),
            ("00", E::MissingDash { position: 2 }),
            ("00-", E::TooShort { len: 3 }),
            // one hex digit short in the trace id
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                E::TooShort { len: 54 },
            ),
            // version
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::InvalidVersion,
            ),
            (
                "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::InvalidVersion,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::ForbiddenVersion,
            ),
            // version 00 must be exactly 55
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                E::TooLong { len: 56 },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
                E::TooLong { len: 56 },
            ),
            // delimiters
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::MissingDash { position: 2 },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                E::MissingDash { position: 35 },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                E::MissingDash { position: 52 },
            ),
            // uppercase / non-hex
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                E::InvalidTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0g0e4736-00f067aa0ba902b7-01",
                E::InvalidTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                E::InvalidParentId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
                E::InvalidFlags,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
                E::InvalidFlags,
            ),
            // all-zero ids
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                E::ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                E::ZeroParentId,
            ),
            // surrounding whitespace is not trimmed
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::InvalidVersion,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
                E::TooLong { len: 56 },
            ),
            // a sign would be accepted by u128::from_str_radix; not by us
            (
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::InvalidTraceId,
            ),
            // non-ASCII must not panic on char boundaries
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
                E::InvalidTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
                E::TooLong { len: 56 },
            ),
            ("é", E::InvalidVersion),
        ];
        for (input, want) in cases {
            assert_eq!(TraceParent::parse(input), Err(*want), "input {input:?}");
        }
    }

    #[test]
    fn future_versions_are_read_and_downgraded() {
        // exactly 55 characters
        let tp =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.to_string(), GOOD);
        // longer, with a dash after the flags: extra fields ignored
        let tp = TraceParent::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        )
        .unwrap();
        assert_eq!(tp.to_string(), GOOD);
        // longer, but no dash after the flags
        assert_eq!(
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what"),
            Err(E::MissingDash { position: 55 })
        );
        // shorter than 55 never parses
        assert_eq!(
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
            Err(E::TooShort { len: 54 })
        );
        // same field rules as 00
        assert_eq!(
            TraceParent::parse("01-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Err(E::ZeroTraceId)
        );
        assert_eq!(
            TraceParent::parse("fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x"),
            Err(E::InvalidFlags)
        );
    }

    #[test]
    fn error_messages_name_the_part() {
        assert_eq!(
            E::ZeroTraceId.to_string(),
            "traceparent trace-id is all zeroes"
        );
        assert_eq!(
            E::MissingDash { position: 35 }.to_string(),
            "traceparent expects '-' at position 35"
        );
        assert_eq!(
            E::TooShort { len: 3 }.to_string(),
            "traceparent is too short: 3 characters, need 55"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(E::InvalidFlags);
        assert!(boxed.to_string().contains("trace-flags"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn format_then_parse_round_trips(
                trace_id in 1u128..=u128::MAX,
                parent_id in 1u64..=u64::MAX,
                flags: u8,
            ) {
                let tp = TraceParent::new(trace_id, parent_id, flags).unwrap();
                let s = tp.to_string();
                prop_assert_eq!(s.len(), TRACEPARENT_LEN);
                prop_assert_eq!(TraceParent::parse(&s), Ok(tp));
            }

            #[test]
            fn valid_strings_parse_then_format_identically(
                s in "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
            ) {
                match TraceParent::parse(&s) {
                    Ok(tp) => prop_assert_eq!(tp.to_string(), s),
                    // only possible for the (astronomically unlikely) all-zero ids
                    Err(e) => prop_assert!(matches!(e, TraceParentError::ZeroTraceId | TraceParentError::ZeroParentId)),
                }
            }

            #[test]
            fn arbitrary_strings_never_panic(s in any::<String>()) {
                let _ = TraceParent::parse(&s);
            }

            #[test]
            fn near_miss_strings_never_panic(
                s in "[0-9a-fA-F\\-x ]{0,70}"
            ) {
                if let Ok(tp) = TraceParent::parse(&s) {
                    // whatever parses, re-parses to the same value
                    prop_assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
                }
            }

            #[test]
            fn single_byte_mutations_of_a_valid_value(pos in 0usize..TRACEPARENT_LEN, byte: u8) {
                let mut b = GOOD_BYTES.to_vec();
                b[pos] = byte;
                if let Ok(s) = std::str::from_utf8(&b)
                    && let Ok(tp) = TraceParent::parse(s)
                {
                    // a mutation that still parses must still be canonical v00 or a
                    // downgraded future version, and formatting is stable.
                    prop_assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
                    prop_assert!(b[pos] != b'-' || pos == 2 || pos == 35 || pos == 52);
                }
            }
        }

        const GOOD_BYTES: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    }
}
