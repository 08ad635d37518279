//! A schedule's labels: a small string map packed into one byte buffer, each string behind its
//! length (a `BTreeMap` or a vector of pairs would cost over 100 bytes a schedule, a large share
//! of a million schedules' state).
//!
//! Invariant: the pairs are sorted by key and the keys unique, and labels serialize exactly as
//! a map, so log entries and snapshots read the same either way. Owns the representation only:
//! it must not check limits on labels (that is `validate`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Labels sorted by key, keys unique: `[len u32 LE][key][len u32 LE][value]…`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[u8]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing any value it had.
    pub fn insert(&mut self, key: String, value: String) {
        let mut pairs: BTreeMap<&str, &str> = self.iter().collect();
        pairs.insert(&key, &value);
        *self = Labels::pack(pairs);
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels in key order.
    pub fn iter(&self) -> LabelIter<'_> {
        LabelIter { rest: &self.0 }
    }

    fn pack<K: AsRef<str>, V: AsRef<str>>(sorted: BTreeMap<K, V>) -> Labels {
        let size = sorted
            .iter()
            .map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut bytes = Vec::with_capacity(size);
        for (k, v) in &sorted {
            for part in [k.as_ref(), v.as_ref()] {
                // A label longer than u32::MAX bytes cannot come through any API (requests are
                // bounded far below that); saturate rather than wrap if it ever did.
                let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&part.as_bytes()[..len as usize]);
            }
        }
        Labels(bytes.into_boxed_slice())
    }
}

/// The labels of one schedule, in key order.
pub struct LabelIter<'a> {
    rest: &'a [u8],
}

impl<'a> LabelIter<'a> {
    fn next_str(&mut self) -> Option<&'a str> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (text, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        std::str::from_utf8(text).ok()
    }
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        Some((self.next_str()?, self.next_str()?))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(String, String)> for Labels {
    /// Later values win over earlier ones for the same key, as with a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Labels::pack(iter.into_iter().collect::<BTreeMap<String, String>>())
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = LabelIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Labels, A::Error> {
                let mut pairs = BTreeMap::new();
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    pairs.insert(k, v);
                }
                Ok(Labels::pack(pairs))
            }
        }
        deserializer.deserialize_map(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::Labels;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn behaves_as_a_sorted_map() {
        let labels: Labels = pairs(&[("team", "a"), ("env", "prod"), ("team", "b")])
            .into_iter()
            .collect();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.get("team"), Some("b"));
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get("nope"), None);
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["env", "team"]);
    }

    #[test]
    fn reads_and_writes_exactly_as_a_map_does() {
        let map: BTreeMap<String, String> = pairs(&[("b", "2"), ("a", "1")]).into_iter().collect();
        let labels: Labels = pairs(&[("b", "2"), ("a", "1")]).into_iter().collect();
        let from_map = serde_json::to_string(&map).unwrap();
        assert_eq!(serde_json::to_string(&labels).unwrap(), from_map);
        let back: Labels = serde_json::from_str(&from_map).unwrap();
        assert_eq!(back, labels);
        assert!(serde_json::from_str::<Labels>("[1]").is_err());
    }

    #[test]
    fn keeps_empty_values_long_values_and_inserts_in_order() {
        let long = "x".repeat(300);
        let mut labels: Labels = pairs(&[("k", ""), ("z", &long)]).into_iter().collect();
        labels.insert("m".into(), "middle".into());
        labels.insert("k".into(), "again".into());
        let all: Vec<(&str, &str)> = labels.iter().collect();
        assert_eq!(all, [("k", "again"), ("m", "middle"), ("z", long.as_str())]);
        let owned: Vec<(String, String)> = labels.clone().into_iter().collect();
        assert_eq!(owned.len(), 3);
        assert!(Labels::default().is_empty());
        assert_eq!(Labels::default().iter().count(), 0);
    }
}
