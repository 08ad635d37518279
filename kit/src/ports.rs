//! Loopback TCP ports for the processes the kit starts (for `belfry dev`, the tests, the
//! benchmarks and the fault-injection harness), told to their peers before any of them listens.
//!
//! Invariant: a port handed out was free a moment before and lies below the kernel's ephemeral
//! range, where no outgoing connection or port-0 request lands (the kernel picks only when that
//! range has no free port), and one process hands a port out again only after all the others.
//! It must not choose a production node's port, which the operator names.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: clear of the well-known and most registered service ports.
const FLOOR: u32 = 10_000;
/// Linux's default ephemeral range starts here; used when the real one cannot be read.
const DEFAULT_EPHEMERAL_LOW: u32 = 32_768;

/// How many ports this process has handed out (the next candidate's offset).
static HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// A port on 127.0.0.1 that was free a moment ago, outside the ephemeral range and not handed
/// out before by this process. Falls back to a kernel-chosen port when no such range exists.
pub fn loopback_port() -> std::io::Result<u16> {
    let ceiling = ephemeral_low().min(u32::from(u16::MAX));
    if ceiling > FLOOR {
        let span = ceiling - FLOOR;
        // Processes started together begin at different places, so they rarely probe the
        // same ports.
        let start = std::process::id().wrapping_mul(7_919) % span;
        let free = (0..span).find_map(|_| {
            let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
            let port = u16::try_from(FLOOR + start.wrapping_add(n) % span).ok()?;
            TcpListener::bind(("127.0.0.1", port)).ok().map(|_| port)
        });
        if let Some(port) = free {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..200).map(|_| loopback_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in ports {
            if low > FLOOR {
                assert!(u32::from(port) >= FLOOR && u32::from(port) < low, "{port}");
            }
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }
}
