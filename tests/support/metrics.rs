//! The metrics port of a node process: a plain HTTP GET and the value of one series.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::procs::ProcCluster;

/// A plain HTTP/1.0 GET: (status code, body), or None if the node does not answer.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of one series (`name` or `name{labels}` exactly as exported), if present.
pub fn series(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
}

/// The `/metrics` page of node `i`.
pub fn scrape(cluster: &ProcCluster, i: usize) -> Option<String> {
    http_get(&cluster.nodes[i].metrics_addr, "/metrics")
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

/// One series of node `i` (0 when absent or unreachable).
pub fn value(cluster: &ProcCluster, i: usize, name: &str) -> f64 {
    scrape(cluster, i)
        .and_then(|body| series(&body, name))
        .unwrap_or(0.0)
}
