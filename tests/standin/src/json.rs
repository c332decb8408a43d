//! An order-preserving JSON value for response bodies.
//!
//! Salesforce's JSON has a stable key order that clients and humans rely on when reading
//! logs: `attributes` first in every record, `message` before `errorCode` in most error
//! objects but `errorCode` first for `NOT_FOUND` (docs/salesforce-api.md §3, "Key order varies").
//! `serde_json::Value` sorts keys unless the `preserve_order` feature is on, and turning that
//! feature on here would silently change `serde_json` for every other crate in the workspace
//! (features unify), so responses are built from this small type instead.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// A JSON value whose objects keep insertion order.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum J {
    #[default]
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    /// Builds an object from `(key, value)` pairs, keeping their order.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, J)>) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn str(s: impl Into<String>) -> J {
        J::Str(s.into())
    }

    pub fn int(n: i64) -> J {
        J::Num(n.into())
    }

    pub fn uint(n: u64) -> J {
        J::Num(n.into())
    }

    /// Looks a key up in an object (`None` for other kinds).
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Appends or replaces a key of an object; a no-op on other kinds.
    pub fn set(&mut self, key: &str, value: J) {
        if let J::Obj(pairs) = self {
            if let Some(slot) = pairs.iter_mut().find(|(k, _)| k == key) {
                slot.1 = value;
            } else {
                pairs.push((key.to_string(), value));
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts into a `serde_json::Value` (key order is then up to serde_json).
    pub fn to_value(&self) -> Value {
        match self {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Num(n) => Value::Number(n.clone()),
            J::Str(s) => Value::String(s.clone()),
            J::Arr(items) => Value::Array(items.iter().map(J::to_value).collect()),
            J::Obj(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// Serialises to a compact JSON string.
    pub fn to_json(&self) -> String {
        // Serialising this type cannot fail: every key is a string and there is no I/O.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl From<&Value> for J {
    fn from(v: &Value) -> J {
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => J::Num(n.clone()),
            Value::String(s) => J::Str(s.clone()),
            Value::Array(items) => J::Arr(items.iter().map(J::from).collect()),
            Value::Object(map) => {
                J::Obj(map.iter().map(|(k, v)| (k.clone(), J::from(v))).collect())
            }
        }
    }
}

impl From<Value> for J {
    fn from(v: Value) -> J {
        J::from(&v)
    }
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.to_string())
    }
}

impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}

impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::Num(n) => n.serialize(s),
            J::Str(v) => s.serialize_str(v),
            J::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order() {
        let j = J::obj([
            ("b", J::int(1)),
            ("a", J::Null),
            ("attributes", J::str("x")),
        ]);
        assert_eq!(j.to_json(), r#"{"b":1,"a":null,"attributes":"x"}"#);
    }

    #[test]
    fn set_replaces_in_place() {
        let mut j = J::obj([("a", J::int(1)), ("b", J::int(2))]);
        j.set("a", J::int(3));
        j.set("c", J::int(4));
        assert_eq!(j.to_json(), r#"{"a":3,"b":2,"c":4}"#);
    }
}
