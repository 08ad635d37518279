//! Following a `belfry server` JSON log (`--log-format json`) as it grows, and reading
//! leadership from it: a node logs "became leader" (with its term) when it starts dispatching
//! and "no longer leader" when it stops.
//!
//! Invariant: each complete line is returned once, in order; a line still being written is
//! held back until its newline arrives. Owns reading the file: it must not judge what a node
//! did (callers do).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The lines of a log file not read yet.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    pub fn new(path: impl Into<PathBuf>) -> LogTail {
        LogTail {
            path: path.into(),
            offset: 0,
            partial: String::new(),
        }
    }

    /// The complete lines written since the last call (none if the file cannot be read).
    pub fn new_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        let Ok(n) = file.read_to_end(&mut bytes) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=end).collect();
        complete.lines().map(str::to_string).collect()
    }
}

/// What a log line says about leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// "became leader" in this term.
    Became(u64),
    /// "no longer leader".
    Lost,
}

/// The leadership change a JSON log line reports, if any.
pub fn leadership(line: &str) -> Option<Leadership> {
    // Cheap filter first: most lines are pushes.
    if !line.contains("leader") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    leadership_of(&value)
}

/// The leadership change a parsed JSON log line reports, if any.
pub fn leadership_of(value: &serde_json::Value) -> Option<Leadership> {
    let message = value["fields"]["message"].as_str().unwrap_or("");
    if message.starts_with("became leader") {
        Some(Leadership::Became(value["fields"]["term"].as_u64()?))
    } else if message.starts_with("no longer leader") {
        Some(Leadership::Lost)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_once_and_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let mut tail = LogTail::new(&path);
        assert!(tail.new_lines().is_empty());
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(tail.new_lines(), ["one"]);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail.new_lines(), ["two", "three"]);
        assert!(tail.new_lines().is_empty());
    }

    #[test]
    fn leadership_lines_are_recognized() {
        let became = r#"{"fields":{"message":"became leader","term":7}}"#;
        let lost = r#"{"fields":{"message":"no longer leader"}}"#;
        assert_eq!(leadership(became), Some(Leadership::Became(7)));
        assert_eq!(leadership(lost), Some(Leadership::Lost));
        assert_eq!(leadership(r#"{"fields":{"message":"pushed"}}"#), None);
    }
}
