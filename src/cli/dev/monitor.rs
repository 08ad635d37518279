//! Seeing belfry's pushes without taking them: a `MONITOR` connection to the dev Redis, which
//! streams every command Redis executes, including the `LPUSH` that belfry's push script runs
//! for each message whose marker was new, with the whole envelope.
//!
//! Invariant: the only command sent is `MONITOR`, and only an `LPUSH` run by a script counts
//! as a dispatch. Owns the connection and the parsing of monitor lines: it must not send
//! anything else, since the queues belong to the workers.
//!
//! Why not keyspace notifications on the `belfry:sent:<id>` markers followed by a look at the
//! list: Redis serves a worker blocked in `BRPOP` as soon as the script ends, before any other
//! client's command, so a peek after the notification finds an idle worker already took the
//! message. The monitor stream carries the message itself, at the instant it was pushed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::output::Output;

/// One message belfry pushed, as the dev output shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Dispatch {
    /// When Redis ran the push.
    pub pushed_at: DateTime<Utc>,
    pub schedule: String,
    pub task: String,
    /// The instant the occurrence was due (`belfry_scheduled_at`), as sent.
    pub due: String,
    pub task_id: String,
}

impl Dispatch {
    /// How late the push was, in milliseconds (0 when the due instant does not parse).
    pub(super) fn late_ms(&self) -> i64 {
        DateTime::parse_from_rfc3339(&self.due)
            .map(|due| (self.pushed_at - due.to_utc()).num_milliseconds())
            .unwrap_or_default()
    }

    /// The dispatch line. Its shape is relied on by readers of `belfry dev`'s output; change it
    /// only together with the README and the format test.
    pub(super) fn line(&self) -> String {
        format!(
            "{}  {:<22} {:<16} due {}  late {:>5} ms  id {}",
            self.pushed_at.format("%H:%M:%S%.3f"),
            self.schedule,
            self.task,
            self.due,
            self.late_ms(),
            self.task_id
        )
    }
}

/// Why the monitor connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MonitorError {
    #[error("cannot reach the dev Redis at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the dev Redis refused MONITOR: {0}")]
    Refused(String),
}

/// A connection that Redis has answered `+OK` to `MONITOR` on.
fn open(addr: &str) -> Result<BufReader<TcpStream>, MonitorError> {
    let connect_err = |source| MonitorError::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(addr).map_err(connect_err)?;
    stream.write_all(b"MONITOR\r\n").map_err(connect_err)?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).map_err(connect_err)?;
    if first.trim_end() == "+OK" {
        Ok(reader)
    } else {
        Err(MonitorError::Refused(first.trim_end().to_string()))
    }
}

/// Connects (retrying until `deadline`), then prints every dispatch from a thread of its own
/// until `stop`, reconnecting if the connection drops. Returns once the first connection is
/// up, so no push made after it is missed.
pub(super) fn watch(
    addr: &str,
    output: Arc<Output>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> Result<(), MonitorError> {
    let mut reader = loop {
        match open(addr) {
            Ok(reader) => break reader,
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let addr = addr.to_string();
    std::thread::spawn(move || loop {
        follow(&mut reader, &output, &stop);
        while !stop.load(Ordering::SeqCst) {
            match open(&addr) {
                Ok(fresh) => {
                    reader = fresh;
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
    });
    Ok(())
}

/// Reads monitor lines until the connection ends or `stop` is set.
fn follow(reader: &mut BufReader<TcpStream>, output: &Output, stop: &AtomicBool) {
    let mut line = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        for dispatch in dispatches(&line) {
            output.dispatch(&dispatch.task_id, &dispatch.line());
        }
    }
}

/// The dispatches in one monitor line: the messages of an `LPUSH` run by a script (only
/// belfry's push script runs one, and only when the marker was new).
pub(super) fn dispatches(line: &[u8]) -> Vec<Dispatch> {
    let Some((pushed_at, source, args)) = parse_line(line) else {
        return Vec::new();
    };
    let from_script = source.rsplit(' ').next() == Some("lua");
    let is_lpush = args
        .first()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"lpush"));
    if !from_script || !is_lpush {
        return Vec::new();
    }
    args.iter()
        .skip(2)
        .filter_map(|payload| from_envelope(pushed_at, payload))
        .collect()
}

/// The dispatch a Celery envelope of belfry's describes (`None` for any other message).
fn from_envelope(pushed_at: DateTime<Utc>, payload: &[u8]) -> Option<Dispatch> {
    let envelope: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let headers = &envelope["headers"];
    let text = |name: &str| headers[name].as_str().map(str::to_string);
    Some(Dispatch {
        pushed_at,
        schedule: text("belfry_schedule")?,
        task: text("task").unwrap_or_default(),
        due: text("belfry_scheduled_at").unwrap_or_default(),
        task_id: text("id")?,
    })
}

/// Splits `+<seconds.micros> [<db> <source>] "arg" "arg" …` into its time, source and
/// unescaped arguments.
fn parse_line(line: &[u8]) -> Option<(DateTime<Utc>, String, Vec<Vec<u8>>)> {
    let line = line.strip_prefix(b"+")?;
    let space = line.iter().position(|&b| b == b' ')?;
    let stamp = std::str::from_utf8(&line[..space]).ok()?;
    let (secs, micros) = stamp.split_once('.')?;
    let at = DateTime::from_timestamp(secs.parse().ok()?, micros.parse::<u32>().ok()? * 1_000)?;
    let rest = line[space + 1..].strip_prefix(b"[")?;
    let close = rest.iter().position(|&b| b == b']')?;
    let source = String::from_utf8_lossy(&rest[..close]).into_owned();
    Some((at, source, parse_args(&rest[close + 1..])?))
}

/// Redis quotes each argument and escapes `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` and any
/// other unprintable byte as `\xHH`.
fn parse_args(mut rest: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return Some(args);
        }
        rest = rest.strip_prefix(b"\"")?;
        let mut arg = Vec::new();
        loop {
            match *rest {
                [b'"', ref tail @ ..] => {
                    rest = tail;
                    break;
                }
                [b'\\', b'x', h, l, ref tail @ ..] => {
                    let hex = [h, l];
                    arg.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                    rest = tail;
                }
                [b'\\', c, ref tail @ ..] => {
                    arg.push(match c {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'a' => 7,
                        b'b' => 8,
                        other => other,
                    });
                    rest = tail;
                }
                [c, ref tail @ ..] => {
                    arg.push(c);
                    rest = tail;
                }
                [] => return None,
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE_LINE: &[u8] = br#"+1796646752.329495 [0 lua] "LPUSH" "celery\x06\x163" "{\"body\":\"W10=\",\"headers\":{\"task\":\"reports.build\",\"id\":\"2725c794-0b5a-5d4e-9f3e-0b7c1d2e3f40\",\"belfry_schedule\":\"report-every-minute\",\"belfry_scheduled_at\":\"2026-12-07T12:32:32Z\",\"argsrepr\":\"caf\xc3\xa9 \\\"q\\\"\"}}""#;

    #[test]
    fn a_script_lpush_is_a_dispatch_with_the_golden_line() {
        let found = dispatches(ENVELOPE_LINE);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].line(),
            "12:32:32.329  report-every-minute    reports.build    due 2026-12-07T12:32:32Z  \
             late   329 ms  id 2725c794-0b5a-5d4e-9f3e-0b7c1d2e3f40"
        );
    }

    #[test]
    fn escapes_are_undone() {
        let (_, source, args) = parse_line(ENVELOPE_LINE).unwrap();
        assert_eq!(source, "0 lua");
        assert_eq!(args[1], b"celery\x06\x163");
        let text = String::from_utf8(args[2].clone()).unwrap();
        assert!(text.contains(r#""argsrepr":"café \"q\"""#), "{text}");
    }

    #[test]
    fn other_commands_are_not_dispatches() {
        let from_client = br#"+1796646752.329400 [0 127.0.0.1:39374] "LPUSH" "celery" "{}""#;
        let pop = br#"+1796646752.329400 [0 127.0.0.1:39374] "BRPOP" "celery" "1""#;
        let marker = br#"+1796646752.329472 [0 lua] "SET" "belfry:sent:x" "1" "NX" "PX" "1000""#;
        for line in [&from_client[..], &pop[..], &marker[..], b"+OK", b"garbage"] {
            assert!(dispatches(line).is_empty());
        }
    }
}
