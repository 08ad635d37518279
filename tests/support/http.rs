//! A small HTTP/1.1 client for the web console's tests and benchmark: one connection per
//! request (`Connection: close`), a cookie jar, forms and JSON bodies.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the first hidden `csrf` input.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=csrf value=\"")
            .expect("a CSRF field on the page");
        let rest = &self.body[at + "name=csrf value=\"".len()..];
        rest[..rest.find('"').expect("a closing quote")].to_string()
    }
}

/// A browser-like client of one node's console: it keeps the cookies it is given.
pub struct Browser {
    pub addr: String,
    pub cookies: BTreeMap<String, String>,
}

fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `value`, percent-encoded for a query string.
pub fn query_value(value: &str) -> String {
    encode(&[("x", value)])[2..].to_string()
}

impl Browser {
    pub fn new(addr: &str) -> Browser {
        Browser {
            addr: addr.to_string(),
            cookies: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, None, &[])
    }

    pub fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let body = encode(pairs);
        self.request(
            "POST",
            path,
            Some(("application/x-www-form-urlencoded", body)),
            &[],
        )
    }

    pub fn post_json(&mut self, path: &str, json: &str, csrf: &str) -> Reply {
        self.request(
            "POST",
            path,
            Some(("application/json", json.to_string())),
            &[("x-csrf-token", csrf)],
        )
    }

    /// Logs in with `token` through the login form; the reply to the POST.
    pub fn login(&mut self, token: &str) -> Reply {
        let form = self.get("/login");
        let csrf = form.csrf();
        self.post_form("/login", &[("csrf", &csrf), ("token", token)])
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the console");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = match body {
            Some((content_type, body)) => {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    body.len()
                ));
                body
            }
            None => String::new(),
        };
        head.push_str("\r\n");
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .expect("send the request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the reply");
        let reply = parse(&raw);
        for set in reply.headers_named("set-cookie") {
            let pair = set.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || set.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        reply
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    }
}
