//! Python `repr()` of JSON values, for Celery's `argsrepr`/`kwargsrepr` headers (shown in logs
//! and Flower).
//!
//! Invariant: the text follows Python's `repr()` (`None`, `True`, Python's quoting and escapes)
//! and is truncated as Celery's `saferepr` does (1,024 characters). Cosmetic only: workers never
//! parse it, so it favours faithfulness over speed, and nothing may rely on reading it back.

use serde_json::{Map, Value};

/// Celery truncates these headers to this many characters.
const MAX_REPR_CHARS: usize = 1024;

/// Python's `repr()` of `value` as Celery would show it, truncated like Celery's `saferepr`.
pub fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    truncated(out)
}

/// `repr()` of a positional-argument list.
pub fn py_repr_list(items: &[Value]) -> String {
    let mut out = String::new();
    write_list(items, &mut out);
    truncated(out)
}

/// `repr()` of a keyword-argument dict.
pub fn py_repr_map(map: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(map, &mut out);
    truncated(out)
}

fn truncated(out: String) -> String {
    if out.len() <= MAX_REPR_CHARS || out.chars().count() <= MAX_REPR_CHARS {
        return out;
    }
    out.chars().take(MAX_REPR_CHARS - 3).collect::<String>() + "..."
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => write_list(items, out),
        Value::Object(map) => write_map(map, out),
    }
}

fn write_list(items: &[Value], out: &mut String) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(item, out);
    }
    out.push(']');
}

fn write_map(map: &Map<String, Value>, out: &mut String) {
    out.push('{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(key, out);
        out.push_str(": ");
        write_repr(item, out);
    }
    out.push('}');
}

/// Python's quoting: single quotes unless the text holds a single quote and no double quote.
fn write_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_repr() {
        assert_eq!(py_repr(&json!([1, 2])), "[1, 2]");
        assert_eq!(py_repr(&json!({"scale": 10})), "{'scale': 10}");
        assert_eq!(
            py_repr(&json!([null, true, false, 1.5])),
            "[None, True, False, 1.5]"
        );
        assert_eq!(
            py_repr(&json!(["it's", "say \"hi\"", "both ' \""])),
            r#"["it's", 'say "hi"', 'both \' "']"#
        );
        assert_eq!(
            py_repr(&json!(["héllo ✓", "a\nb\u{1}"])),
            r"['héllo ✓', 'a\nb\x01']"
        );
    }

    #[test]
    fn truncates_long_values() {
        let long = json!(["x".repeat(5000)]);
        assert_eq!(py_repr(&long).chars().count(), MAX_REPR_CHARS);
        assert!(py_repr(&long).ends_with("..."));
    }
}
