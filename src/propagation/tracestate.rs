//! W3C Trace Context `tracestate` header: parse, mutate, format.
//!
//! ```text
//! list        = list-member 0*31( OWS "," OWS list-member )
//! list-member = key "=" value / OWS
//! key         = ( lcalpha / DIGIT ) 0*255( keychar )
//! keychar     = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
//! value       = 0*255( chr ) nblk-chr
//! nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E      ; printable, not "," "=" or space
//! chr         = %x20 / nblk-chr
//! ```
//!
//! * At most 32 list members; empty / whitespace-only members are allowed and dropped.
//! * Spaces and tabs around a member are optional whitespace. Inside a member, the
//!   key must directly precede `=`; leading spaces of the value are part of it;
//!   trailing spaces are OWS.
//! * A key may appear only once: a repeated key is an error.
//! * Key grammar: this follows the current editor's draft, in which `@` is just a
//!   key character. The Level 1 Recommendation was stricter (`tenant@system` with
//!   a 241/14-character split and a simple key starting with a letter); everything
//!   valid there is valid here.
//!
//! Per the spec, if `traceparent` failed to parse, `tracestate` must not be parsed;
//! if `tracestate` fails to parse, `traceparent` is still used (with an empty state).
use std::fmt;
use std::str::FromStr;

/// Maximum number of list members.
pub const MAX_MEMBERS: usize = 32;
/// Maximum key length, in characters.
pub const MAX_KEY_LEN: usize = 256;
/// Maximum value length, in characters.
pub const MAX_VALUE_LEN: usize = 256;

/// An ordered `tracestate` list; leftmost = most recent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    entries: Vec<(String, String)>,
}

/// Why a `tracestate` value (or an entry for it) was rejected.
/// `member` is the 0-based index among the non-empty list members.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceStateError {
    /// More than 32 list members.
    TooManyMembers {
        /// How many there were.
        count: usize,
    },
    /// A non-empty list member has no `=`.
    MissingEquals {
        /// The member's 0-based index.
        member: usize,
    },
    /// The key is empty, too long, or has a character outside the key grammar.
    InvalidKey {
        /// The member's 0-based index.
        member: usize,
    },
    /// The value is empty, too long, or has a character outside the value grammar.
    InvalidValue {
        /// The member's 0-based index.
        member: usize,
    },
    /// The same key appears twice.
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyMembers { count } => {
                write!(
                    f,
                    "tracestate has {count} list members, at most {MAX_MEMBERS} allowed"
                )
            }
            Self::MissingEquals { member } => {
                write!(f, "tracestate list member {member} has no '='")
            }
            Self::InvalidKey { member } => {
                write!(f, "tracestate list member {member} has an invalid key")
            }
            Self::InvalidValue { member } => {
                write!(f, "tracestate list member {member} has an invalid value")
            }
            Self::DuplicateKey { key } => {
                write!(f, "tracestate key '{key}' appears more than once")
            }
        }
    }
}

impl std::error::Error for TraceStateError {}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Key grammar check.
pub fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_KEY_LEN
        && matches!(b[0], b'a'..=b'z' | b'0'..=b'9')
        && b[1..]
            .iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'))
}

/// Value grammar check.
pub fn is_valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_VALUE_LEN
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

impl TraceState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one header value. Same as `s.parse()`.
    pub fn parse(s: &str) -> Result<Self, TraceStateError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut member = 0usize;
        for raw in s.split(',') {
            let m = raw.trim_matches(is_ows);
            if m.is_empty() {
                continue;
            }
            if member == MAX_MEMBERS {
                let count = s
                    .split(',')
                    .filter(|r| !r.trim_matches(is_ows).is_empty())
                    .count();
                return Err(TraceStateError::TooManyMembers { count });
            }
            let (key, value) = m
                .split_once('=')
                .ok_or(TraceStateError::MissingEquals { member })?;
            if !is_valid_key(key) {
                return Err(TraceStateError::InvalidKey { member });
            }
            if !is_valid_value(value) {
                return Err(TraceStateError::InvalidValue { member });
            }
            if entries.iter().any(|(k, _)| k == key) {
                return Err(TraceStateError::DuplicateKey {
                    key: key.to_owned(),
                });
            }
            entries.push((key.to_owned(), value.to_owned()));
            member += 1;
        }
        Ok(Self { entries })
    }

    /// Parses several header fields of one request (combined as one
    /// comma-separated list, per RFC 7230 field order).
    pub fn parse_fields<'a>(
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, TraceStateError> {
        let joined: Vec<&str> = fields.into_iter().collect();
        Self::parse(&joined.join(","))
    }

    /// Builds from entries, validating each and the whole list.
    pub fn from_entries<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, TraceStateError> {
        let mut out = Self::new();
        for (i, (k, v)) in entries.into_iter().enumerate() {
            let (k, v) = (k.into(), v.into());
            if !is_valid_key(&k) {
                return Err(TraceStateError::InvalidKey { member: i });
            }
            if !is_valid_value(&v) {
                return Err(TraceStateError::InvalidValue { member: i });
            }
            if out.get(&k).is_some() {
                return Err(TraceStateError::DuplicateKey { key: k });
            }
            out.entries.push((k, v));
        }
        if out.entries.len() > MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers {
                count: out.entries.len(),
            });
        }
        Ok(out)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries, leftmost first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Adds or updates `key`, moving it to the front (the spec's "update key
    /// value" / "add a new key/value pair" mutations). If the list is full and
    /// `key` is new, the rightmost entry is dropped to make room.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), TraceStateError> {
        if !is_valid_key(key) {
            return Err(TraceStateError::InvalidKey { member: 0 });
        }
        if !is_valid_value(value) {
            return Err(TraceStateError::InvalidValue { member: 0 });
        }
        self.entries.retain(|(k, _)| k != key);
        if self.entries.len() == MAX_MEMBERS {
            self.entries.pop();
        }
        self.entries.insert(0, (key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Deletes `key`; returns its value if it was there.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// Drops whole entries until the formatted header is at most `max_len`
    /// bytes: entries longer than 128 characters first, then from the right,
    /// as the spec's truncation rule says.
    pub fn truncate_to(&mut self, max_len: usize) {
        let entry_len = |(k, v): &(String, String)| k.len() + 1 + v.len();
        while self.formatted_len() > max_len {
            if let Some(i) = self.entries.iter().rposition(|e| entry_len(e) > 128) {
                self.entries.remove(i);
            } else {
                self.entries.pop();
            }
        }
    }

    fn formatted_len(&self) -> usize {
        let n = self.entries.len();
        self.entries
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len())
            .sum::<usize>()
            + n.saturating_sub(1)
    }
}

impl fmt::Display for TraceState {
    /// `k1=v1,k2=v2` with no optional whitespace. Empty state formats as "".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for TraceState {
    type Err = TraceStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TraceStateError as E;

    #[test]
    fn parses_spec_examples() {
        let ts = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts.get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(ts.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert_eq!(ts.iter().next(), Some(("rojo", "00f067aa0ba902b7")));
    }

    #[test]
    fn whitespace_and_empty_members() {
        assert!(TraceState::parse("").unwrap().is_empty());
        assert!(TraceState::parse(" , \t,").unwrap().is_empty());
        let ts = TraceState::parse(" a=1 ,\tb=2\t, ,c=3").unwrap();
        assert_eq!(ts.to_string(), "a=1,b=2,c=3");
        // leading spaces of a value are part of it; trailing are OWS
        let ts = TraceState::parse("a=  x  ").unwrap();
        assert_eq!(ts.get("a"), Some("  x"));
        // space inside a value is fine
        assert_eq!(TraceState::parse("a=x y").unwrap().get("a"), Some("x y"));
    }

    #[test]
    fn keys() {
        for ok in [
            "a",
            "0",
            "a-b_c*d/e@f",
            "tenant@system",
            "1tenant@sys",
            &"a".repeat(256),
        ] {
            assert!(is_valid_key(ok), "{ok:?}");
        }
        for bad in [
            "",
            "A",
            "a b",
            "_a",
            "-a",
            "@a",
            "a.b",
            "a=b",
            "é",
            &"a".repeat(257),
        ] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
        assert_eq!(TraceState::parse("Foo=1"), Err(E::InvalidKey { member: 0 }));
        assert_eq!(
            TraceState::parse("a=1, b =2"),
            Err(E::InvalidKey { member: 1 })
        );
        assert_eq!(TraceState::parse("=1"), Err(E::InvalidKey { member: 0 }));
    }

    #[test]
    fn values() {
        for ok in ["x", " x", "!~", &"v".repeat(256)] {
            assert!(is_valid_value(ok), "{ok:?}");
        }
        for bad in [
            "",
            " ",
            "x ",
            "a,b",
            "a=b",
            "tab\there",
            "é",
            "\u{7f}",
            &"v".repeat(257),
        ] {
            assert!(!is_valid_value(bad), "{bad:?}");
        }
        assert_eq!(TraceState::parse("a="), Err(E::InvalidValue { member: 0 }));
        assert_eq!(
            TraceState::parse("a=1,b=x=y"),
            Err(E::InvalidValue { member: 1 })
        );
        assert_eq!(
            TraceState::parse("a=1,b"),
            Err(E::MissingEquals { member: 1 })
        );
    }

    #[test]
    fn limits_and_duplicates() {
        let list: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert_eq!(TraceState::parse(&list.join(",")).unwrap().len(), 32);
        let list: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            TraceState::parse(&list.join(",")),
            Err(E::TooManyMembers { count: 33 })
        );
        assert_eq!(
            TraceState::parse("a=1,b=2,a=3"),
            Err(E::DuplicateKey { key: "a".into() })
        );
    }

    #[test]
    fn multiple_header_fields_combine() {
        let ts = TraceState::parse_fields(["a=1,b=2", "c=3", ""]).unwrap();
        assert_eq!(ts.to_string(), "a=1,b=2,c=3");
    }

    #[test]
    fn mutations_move_to_front() {
        let mut ts = TraceState::parse("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7").unwrap();
        ts.insert("rojo", "new").unwrap();
        assert_eq!(ts.to_string(), "rojo=new,congo=t61rcWkgMzE");
        ts.insert("spanbus", "s1").unwrap();
        assert_eq!(ts.to_string(), "spanbus=s1,rojo=new,congo=t61rcWkgMzE");
        assert_eq!(ts.remove("rojo").as_deref(), Some("new"));
        assert_eq!(ts.remove("rojo"), None);
        assert_eq!(ts.insert("Bad", "x"), Err(E::InvalidKey { member: 0 }));
        assert_eq!(ts.insert("ok", "x,y"), Err(E::InvalidValue { member: 0 }));

        let mut full = TraceState::from_entries((0..32).map(|i| (format!("k{i}"), "v"))).unwrap();
        full.insert("new", "v").unwrap();
        assert_eq!(full.len(), 32);
        assert_eq!(full.iter().next(), Some(("new", "v")));
        assert_eq!(full.get("k31"), None);
    }

    #[test]
    fn truncation_drops_long_entries_first_then_from_the_right() {
        let long = "x".repeat(200);
        let mut ts =
            TraceState::from_entries([("a", "1"), ("big", long.as_str()), ("b", "2"), ("c", "3")])
                .unwrap();
        ts.truncate_to(512);
        assert_eq!(ts.len(), 4);
        ts.truncate_to(100);
        assert_eq!(ts.to_string(), "a=1,b=2,c=3");
        ts.truncate_to(7);
        assert_eq!(ts.to_string(), "a=1,b=2");
        ts.truncate_to(0);
        assert!(ts.is_empty());
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            E::TooManyMembers { count: 40 }.to_string(),
            "tracestate has 40 list members, at most 32 allowed"
        );
        assert_eq!(
            E::InvalidKey { member: 2 }.to_string(),
            "tracestate list member 2 has an invalid key"
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            "[a-z0-9][a-z0-9_*/@-]{0,20}"
        }
        fn value() -> impl Strategy<Value = String> {
            // printable ASCII minus ',' '=' ; must not end in space
            "[ -+\\--<>-~]{0,20}[!-+\\--<>-~]"
        }

        proptest! {
            #[test]
            fn format_then_parse_round_trips(
                entries in proptest::collection::btree_map(key(), value(), 0..=MAX_MEMBERS)
            ) {
                let ts = TraceState::from_entries(entries).unwrap();
                let s = ts.to_string();
                prop_assert_eq!(TraceState::parse(&s), Ok(ts));
            }

            #[test]
            fn arbitrary_strings_never_panic(s in any::<String>()) {
                if let Ok(ts) = TraceState::parse(&s) {
                    prop_assert!(ts.len() <= MAX_MEMBERS);
                    prop_assert_eq!(TraceState::parse(&ts.to_string()), Ok(ts));
                }
            }

            #[test]
            fn near_miss_strings_never_panic(s in "[a-zA-Z0-9=, \t@*/_-]{0,80}") {
                if let Ok(ts) = TraceState::parse(&s) {
                    prop_assert_eq!(TraceState::parse(&ts.to_string()), Ok(ts));
                }
            }
        }
    }
}
