//! [`J`], a JSON value whose objects keep their keys in the order they were built.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A JSON value whose object keys keep the order they were built in (serde_json's own `Value`
/// sorts them), so that every output line starts with `"type"`.
///
/// Not serde_json's `preserve_order` feature: it holds for the whole build, so it would also
/// reorder the admin API's error bodies and span fields in JSON logs, and make parsed input
/// (attribute objects, an object-valued `"id"` echoed back) follow the order it was typed in.
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    /// A scalar or any plain JSON value.
    V(Value),
    /// An object, keys in order.
    O(Vec<(String, J)>),
    /// An array.
    A(Vec<J>),
}

impl J {
    /// An empty object.
    pub fn obj() -> J {
        J::O(Vec::new())
    }

    /// Appends a key to an object (no-op on other values).
    pub fn with(mut self, key: &str, value: impl Into<J>) -> J {
        self.push(key, value);
        self
    }

    /// Appends a key to an object (no-op on other values).
    pub fn push(&mut self, key: &str, value: impl Into<J>) {
        if let J::O(fields) = self {
            fields.push((key.to_string(), value.into()));
        }
    }

    /// Appends every field of `other` (an object) to this object.
    pub fn extend(&mut self, other: J) {
        if let (J::O(fields), J::O(more)) = (self, other) {
            fields.extend(more);
        }
    }

    /// The value as one line of compact JSON (no newline).
    pub fn to_line(&self) -> String {
        // Serializing into a String cannot fail: every key is a string and every value is
        // already JSON.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::V(v) => v.serialize(s),
            J::O(fields) => {
                let mut m = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            J::A(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

impl From<Value> for J {
    fn from(v: Value) -> J {
        J::V(v)
    }
}

macro_rules! j_from {
    ($($t:ty),*) => { $( impl From<$t> for J { fn from(v: $t) -> J { J::V(Value::from(v)) } } )* };
}
j_from!(bool, u16, u32, u64, String, &str);

impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> J {
        v.map_or(J::V(Value::Null), Into::into)
    }
}

impl<T: Into<J>> From<Vec<T>> for J {
    fn from(v: Vec<T>) -> J {
        J::A(v.into_iter().map(Into::into).collect())
    }
}
