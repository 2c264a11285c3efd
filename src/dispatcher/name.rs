//! Dispatcher names: validated, and interned for the life of the process.
use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::error::NameError;

/// Checks a dispatcher name: non-empty dotted segments, no whitespace or control characters.
pub(crate) fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(ch) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::InvalidChar {
            name: name.to_owned(),
            ch,
        });
    }
    if let Some(i) = name.split('.').position(str::is_empty) {
        return Err(NameError::EmptySegment {
            name: name.to_owned(),
            position: i + 1,
        });
    }
    Ok(())
}

/// The process-wide copy of a dispatcher name.
///
/// Every record carries its dispatcher's name. As an `Arc<str>` that meant one shared reference
/// count bumped by the emitting thread and dropped by each handler's thread for every record —
/// a cache line bouncing between cores. Names are few and long-lived, so each distinct name is
/// stored once for the life of the process and records carry a plain `&'static str`. (A program
/// that invents unboundedly many dispatcher names keeps each of them; dispatchers are meant to
/// be named after components, like loggers.)
///
/// The name is returned behind a second reference (`&'static &'static str`, one word) so the
/// record envelope stays within 64 bytes and a record with a small event fits the record
/// pool's 128-byte blocks (see `crate::pool`).
pub(crate) fn intern(name: &str) -> &'static &'static str {
    static NAMES: Mutex<BTreeMap<&'static str, &'static &'static str>> =
        Mutex::new(BTreeMap::new());
    let mut names = NAMES.lock();
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let thin: &'static &'static str = Box::leak(Box::new(leaked));
    names.insert(leaked, thin);
    thin
}
