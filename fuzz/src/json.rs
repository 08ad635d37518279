//! Structure-aware mutation of JSON: parse a valid example, change one node of its tree
//! (another type, a number at its limit, a string from the dictionary, a removed or extra key,
//! deep nesting), and serialize it again, so decoders meet input that is well-formed JSON but
//! wrong in one place, which byte mutation rarely produces.

use serde_json::{Map, Number, Value};

use crate::mutate::EDGE_NUMBERS;
use crate::rng::Rng;

/// Field names of belfry's persisted and replicated formats.
pub const JSON_KEYS: &[&str] = &[
    "Put",
    "Delete",
    "SetEnabled",
    "Fire",
    "Batch",
    "Ack",
    "Normal",
    "Blank",
    "Membership",
    "def",
    "name",
    "task",
    "spec",
    "every",
    "anchor",
    "cron",
    "crontab",
    "once",
    "tz",
    "start_at",
    "end_at",
    "args",
    "kwargs",
    "options",
    "queue",
    "routing_key",
    "priority",
    "expires",
    "headers",
    "time_limit",
    "soft_time_limit",
    "ignore_result",
    "catchup",
    "rule",
    "window_secs",
    "enabled",
    "labels",
    "description",
    "expected_revision",
    "incarnation",
    "at",
    "fires",
    "skips",
    "schedule",
    "scheduled_at",
    "task_id",
    "manual",
    "reason",
    "count",
    "task_ids",
    "already_sent",
    "log_id",
    "leader_id",
    "term",
    "node_id",
    "index",
    "payload",
    "vote",
    "committed",
    "prev_log_id",
    "entries",
    "leader_commit",
    "last_log_id",
    "meta",
    "offset",
    "data",
    "done",
    "last_membership",
    "snapshot_id",
    "membership",
    "configs",
    "nodes",
    "addr",
    "last_applied",
    "schedules",
    "outbox",
    "outbox_seq",
    "revision",
    "created_at",
    "updated_at",
    "plan_from",
    "last_fire",
    "fired",
    "skipped",
    "delivered",
    "history",
    "resumed_at",
    "seq",
    "committed_at",
    "request",
    "not_after",
    "Write",
    "Create",
    "Update",
    "Apply",
    "Trigger",
    "ReadIndex",
    "Status",
    "AddNode",
    "RemoveNode",
    "TransferLeader",
    "Elect",
    "HasState",
    "defs",
    "prune",
    "prune_selector",
    "incarnations",
    "keep_enabled",
    "task_id",
    "outcome",
    "dispatched_at",
    "Skipped",
    "Pending",
    "Sent",
    "all",
    "latest",
    "none",
    "outside_catchup_window",
];

/// Strings that mean something to some field.
pub const JSON_STRINGS: &[&str] = &[
    "",
    "a",
    "2025-01-01T00:00:00Z",
    "2030-01-01T00:00:60Z",
    "9999-12-31T23:59:59Z",
    "+262142-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2025-03-09T02:30:00-05:00",
    "00000000-0000-0000-0000-000000000000",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "*/5 * * * *",
    "0 0 30 2 *",
    "1s",
    "100000w",
    "Europe/Paris",
    "Pacific/Apia",
    "America/New_York",
    "Not/AZone",
    "latest",
    "none",
    "all",
    "\u{0}",
    "☃",
];

/// `value` with one node changed; a few rounds may be stacked.
pub fn mutate_value(rng: &mut Rng, value: &mut Value) {
    let nodes = count(value);
    let target = rng.below(nodes);
    let mut seen = 0;
    visit(value, target, &mut seen, &mut |node| change(rng, node));
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

/// Calls `f` on the `target`-th node in pre-order; stops once done.
fn visit(
    value: &mut Value,
    target: usize,
    seen: &mut usize,
    f: &mut dyn FnMut(&mut Value),
) -> bool {
    if *seen == target {
        f(value);
        return true;
    }
    *seen += 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|v| visit(v, target, seen, f)),
        Value::Object(map) => map.values_mut().any(|v| visit(v, target, seen, f)),
        _ => false,
    }
}

fn number(rng: &mut Rng) -> Value {
    let text = match rng.below(3) {
        0 => rng.pick(EDGE_NUMBERS).to_string(),
        1 => rng.between(-1000, 100_000).to_string(),
        _ => format!("{}", rng.next_u64()),
    };
    // Words such as "inf" are not JSON numbers: they become strings.
    serde_json::from_str::<Number>(&text).map_or(Value::String(text), Value::Number)
}

fn scalar(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(1, 2)),
        2 | 3 => number(rng),
        4 => Value::String(rng.pick(JSON_STRINGS).to_string()),
        _ => Value::String(rng.pick(JSON_KEYS).to_string()),
    }
}

/// `depth` levels of arrays or objects around a scalar.
pub fn nested(rng: &mut Rng, depth: usize) -> Value {
    let object = rng.chance(1, 2);
    let mut value = scalar(rng);
    for _ in 0..depth {
        value = if object {
            let mut map = Map::new();
            map.insert("a".into(), value);
            Value::Object(map)
        } else {
            Value::Array(vec![value])
        };
    }
    value
}

/// Instants at the edges of chrono's range and of RFC 3339's, and odd ones inside.
pub const EDGE_INSTANTS: &[&str] = &[
    "-262143-01-01T00:00:00Z",
    "-262143-01-01T00:00:00.001Z",
    "+262142-12-31T23:59:59.999999999Z",
    "+262142-12-31T23:59:59Z",
    "+262142-12-31T23:58:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2030-01-01T00:00:60Z",
    "2016-12-31T23:59:60.5Z",
    "2025-03-09T02:30:00-05:00",
    "2025-01-01T00:00:00+23:59",
];

/// A change that keeps the node's type but takes it to an edge: numbers to limits, instants to
/// the ends of chrono's range. `None` when the node has no such edge.
fn edge_of(rng: &mut Rng, node: &Value) -> Option<Value> {
    match node {
        Value::Number(_) => Some(number(rng)),
        Value::String(text) if text.parse::<chrono::DateTime<chrono::Utc>>().is_ok() => {
            Some(Value::String(rng.pick::<&str>(EDGE_INSTANTS).to_string()))
        }
        _ => None,
    }
}

fn change(rng: &mut Rng, node: &mut Value) {
    if rng.chance(1, 2) {
        if let Some(edge) = edge_of(rng, node) {
            *node = edge;
            return;
        }
    }
    match rng.below(9) {
        0 | 1 => *node = scalar(rng),
        2 => {
            let depth = 1 + rng.below_either(1, 2, 8, 140);
            *node = nested(rng, depth);
        }
        3 => *node = Value::Array(Vec::new()),
        4 => *node = Value::Object(Map::new()),
        5 => match node {
            // Drop one member.
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(rng.below(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(rng.below(items.len()));
            }
            _ => *node = Value::Null,
        },
        6 => match node {
            // Add a member: a known key with a wrong or odd value.
            Value::Object(map) => {
                map.insert(rng.pick(JSON_KEYS).to_string(), scalar(rng));
            }
            Value::Array(items) => {
                let copy = items.get(rng.below(items.len())).cloned();
                let times = 1 + rng.below(8);
                items.extend(std::iter::repeat_n(copy.unwrap_or(Value::Null), times));
            }
            _ => *node = number(rng),
        },
        7 => {
            // An enum variant's name in place of its object form, or the other way round.
            let key = rng.pick(JSON_KEYS).to_string();
            *node = match rng.below(2) {
                0 => Value::String(key),
                _ => {
                    let mut map = Map::new();
                    map.insert(key, std::mem::take(node));
                    Value::Object(map)
                }
            };
        }
        _ => *node = Value::String(rng.pick(JSON_STRINGS).to_string()),
    }
}

/// A mutated JSON document from a corpus of valid ones: tree mutations, then (sometimes) byte
/// mutations of the text.
pub fn mutated_json(rng: &mut Rng, corpus: &[Vec<u8>], dictionary: &[&str]) -> Vec<u8> {
    let Some(base) = (!corpus.is_empty()).then(|| rng.pick(corpus)) else {
        return Vec::new();
    };
    let mut bytes = match serde_json::from_slice::<Value>(base) {
        Ok(mut value) => {
            for _ in 0..1 + rng.below(4) {
                mutate_value(rng, &mut value);
            }
            serde_json::to_vec(&value).unwrap_or_default()
        }
        Err(_) => base.clone(),
    };
    if rng.chance(1, 4) {
        bytes = crate::mutate::mutated(rng, &[bytes], dictionary);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_mutation_keeps_json_well_formed_and_changes_it() {
        let corpus = [br#"{"a":[1,2,{"b":"c"}],"d":null}"#.to_vec()];
        let mut rng = Rng::new(11);
        let mut changed = 0;
        for _ in 0..500 {
            let mut value: Value = serde_json::from_slice(&corpus[0]).unwrap();
            let before = value.clone();
            mutate_value(&mut rng, &mut value);
            changed += usize::from(value != before);
            serde_json::to_vec(&value).unwrap();
        }
        assert!(changed > 350, "{changed}");
    }

    #[test]
    fn nesting_has_the_depth_asked_for() {
        let mut rng = Rng::new(1);
        let value = nested(&mut rng, 5);
        let text = value.to_string();
        assert!(text.starts_with("[[[[[") || text.starts_with(r#"{"a":{"a":{"a":{"a":{"a":"#));
    }
}
