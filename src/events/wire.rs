//! JSON plumbing shared by the typed objects of the catalog: reading fields out of a JSON
//! object with clear errors, and writing a map with some keys owned by typed fields.
//!
//! The objects ([`ChatMessage`](super::ChatMessage), [`ChatResponse`](super::ChatResponse), ...)
//! read themselves from a [`Map`] so that every key they do not model survives in an escape
//! hatch, and write themselves by hand so that typed fields can land inside llama-index's
//! `additional_kwargs`.

use serde::de::Error;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The JSON type of `v`, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Removes `key` from `map`: an object, or an empty one when the key is missing or null.
pub(crate) fn take_object<E: Error>(
    map: &mut Map<String, Value>,
    key: &str,
    owner: &str,
) -> Result<Map<String, Value>, E> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(E::custom(format_args!(
            "{owner}.{key} must be an object, got {}",
            kind(&other)
        ))),
    }
}

/// Removes `key` from `map`: a string, or `None` when the key is missing or null.
pub(crate) fn take_opt_string<E: Error>(
    map: &mut Map<String, Value>,
    key: &str,
    owner: &str,
) -> Result<Option<String>, E> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(E::custom(format_args!(
            "{owner}.{key} must be a string or null, got {}",
            kind(&other)
        ))),
    }
}

/// Removes `key` from `map`: any value but null, or `None`.
pub(crate) fn take_opt_value(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

/// Removes `key` from `map` if it holds a string, and returns it; any other value stays.
pub(crate) fn take_if_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    if map.get(key).is_some_and(Value::is_string)
        && let Some(Value::String(s)) = map.remove(key)
    {
        return Some(s);
    }
    None
}

/// Writes each entry of `extra` whose key is not in `known` (a known key is written from its
/// typed field; writing it twice would make invalid JSON).
pub(crate) fn write_extra<M: SerializeMap>(
    out: &mut M,
    extra: &Map<String, Value>,
    known: &[&str],
) -> Result<(), M::Error> {
    for (k, v) in extra {
        if !known.contains(&k.as_str()) {
            out.serialize_entry(k, v)?;
        }
    }
    Ok(())
}

/// A map written with some keys taken from typed fields: the entries of `base` whose keys are
/// not in `owned`, then `owned`'s.
pub(crate) struct Overlaid<'a> {
    pub(crate) base: &'a Map<String, Value>,
    pub(crate) owned: &'a [(&'static str, Value)],
}

impl Serialize for Overlaid<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let shadowed = |k: &str| self.owned.iter().any(|(o, _)| *o == k);
        let len = self.base.keys().filter(|k| !shadowed(k)).count() + self.owned.len();
        let mut out = serializer.serialize_map(Some(len))?;
        for (k, v) in self.base {
            if !shadowed(k) {
                out.serialize_entry(k, v)?;
            }
        }
        for (k, v) in self.owned {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}
