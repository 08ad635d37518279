//! Redis Sentinel as kombu reads it: a `sentinel://` URL naming one or more sentinels
//! (`sentinel://[:password@]host:port[/db]`, joined by `;`), a master name given separately,
//! and the question every sentinel answers: where is the master now?
//!
//! Invariant: an address is taken for the master only if a sentinel names it and the server
//! there says it is a master (`ROLE`), so a demoted master a stale sentinel still names is never
//! written to; a sentinel that refuses belfry's credentials is reported as such, naming the
//! setting to change. It must not keep connections or decide when to ask (that is `broker`).

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The URL scheme of a Sentinel-managed broker, as kombu spells it.
pub(crate) const SCHEME: &str = "sentinel://";

/// The sentinels of a `sentinel://` URL and what it says of the master: its password and
/// database (kombu takes both from the URL; the sentinels get their own password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub master_password: Option<String>,
    pub master_username: Option<String>,
    pub db: i64,
}

/// True when `url` names sentinels rather than a Redis server.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.trim_start().starts_with(SCHEME)
}

/// Parses `sentinel://[[user]:password@]host[:port][/db]` alternatives joined by `;`. The
/// password and database are the master's; the first alternative that gives them decides.
/// The error never repeats the URL (it may hold a password).
pub(crate) fn parse(url: &str) -> Result<SentinelUrl, String> {
    let mut parsed = SentinelUrl {
        sentinels: Vec::new(),
        master_password: None,
        master_username: None,
        db: 0,
    };
    let mut db = None;
    for (n, part) in url.split(';').map(str::trim).enumerate() {
        if part.is_empty() {
            continue;
        }
        let Some(rest) = part.strip_prefix(SCHEME) else {
            return Err(format!(
                "sentinel {}: every ';'-separated part must start with {SCHEME}",
                n + 1
            ));
        };
        // Parsed as a redis:// URL: the same rules for credentials, host, port and database.
        let info = format!("redis://{rest}")
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("sentinel {}: {e}", n + 1))?;
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            other => return Err(format!("sentinel {}: unsupported address {other}", n + 1)),
        };
        // redis:// defaults to 6379; a sentinel without a port is on Sentinel's 26379.
        let port = if has_port(rest) { port } else { 26379 };
        parsed.sentinels.push((host, port));
        let settings = info.redis_settings();
        if parsed.master_password.is_none() {
            parsed.master_password = settings.password().map(str::to_string);
            parsed.master_username = settings.username().map(str::to_string);
        }
        if db.is_none() && has_path(rest) {
            db = Some(settings.db());
        }
    }
    if parsed.sentinels.is_empty() {
        return Err("a sentinel:// URL must name at least one sentinel".into());
    }
    parsed.db = db.unwrap_or(0);
    Ok(parsed)
}

fn authority(rest: &str) -> &str {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rsplit_once('@').map_or(authority, |(_, hp)| hp)
}

fn has_port(rest: &str) -> bool {
    let host_port = authority(rest);
    // An IPv6 literal's colons are inside brackets.
    let after_host = host_port.rsplit_once(']').map_or(host_port, |(_, p)| p);
    after_host.contains(':')
}

fn has_path(rest: &str) -> bool {
    rest.split(['?', '#'])
        .next()
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(_, db)| !db.is_empty())
}

/// How to reach the sentinels themselves.
#[derive(Clone, Debug, Default)]
pub(crate) struct SentinelAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    /// PEM of the CA that signed the servers' certificates, when the system does not trust it.
    pub root_cert: Option<Vec<u8>>,
}

/// Why no master could be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("no sentinel named a master {master:?} that answers as one ({tried})")]
    NoMaster { master: String, tried: String },
}

/// Asks each sentinel in turn where `master` is, and returns the first address whose server
/// says it is the master. Every failure is collected so the error says what each one said.
pub(crate) async fn find_master(
    sentinels: &[(String, u16)],
    auth: &SentinelAuth,
    master: &str,
    timeout: Duration,
) -> Result<(String, u16), DiscoveryError> {
    let mut tried: Vec<(String, String)> = Vec::new();
    for (host, port) in sentinels {
        let sentinel = format!("{host}:{port}");
        match ask_sentinel(host, *port, auth, master, timeout).await {
            Ok(addr) => match is_master(&addr, auth, timeout).await {
                Ok(true) => return Ok(addr),
                Ok(false) => tried.push((
                    sentinel,
                    format!("named {}:{}, which is not a master", addr.0, addr.1),
                )),
                Err(e) => tried.push((sentinel, format!("named {}:{}: {e}", addr.0, addr.1))),
            },
            Err(e) => tried.push((sentinel, e)),
        }
    }
    Err(DiscoveryError::NoMaster {
        master: master.to_string(),
        tried: summarize(&tried),
    })
}

/// What each sentinel said, said once when they all said the same (a refused password).
fn summarize(tried: &[(String, String)]) -> String {
    match tried.split_first() {
        Some(((_, first), rest)) if !rest.is_empty() && rest.iter().all(|(_, r)| r == first) => {
            let all: Vec<&str> = tried.iter().map(|(s, _)| s.as_str()).collect();
            format!("every sentinel ({}): {first}", all.join(", "))
        }
        _ => tried
            .iter()
            .map(|(sentinel, said)| format!("{sentinel}: {said}"))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

async fn ask_sentinel(
    host: &str,
    port: u16,
    auth: &SentinelAuth,
    master: &str,
    timeout: Duration,
) -> Result<(String, u16), String> {
    let settings = RedisConnectionInfo::default();
    let settings = match (&auth.username, &auth.password) {
        (Some(user), Some(pw)) => settings.set_username(user).set_password(pw),
        (None, Some(pw)) => settings.set_password(pw),
        _ => settings,
    };
    let addr = tcp_addr(host, port, auth.tls);
    let mut conn = connect(addr, settings, auth, timeout).await?;
    let reply: Option<(String, String)> = tokio::time::timeout(
        timeout,
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| describe(&e, auth))?;
    let (host, port) = reply.ok_or_else(|| format!("does not know a master {master:?}"))?;
    let port = port
        .parse()
        .map_err(|_| format!("named a master with port {port:?}"))?;
    Ok((host, port))
}

/// Whether the server at `addr` answers `ROLE` as a master. ROLE needs no authentication
/// beyond what the connection does, and the master's password is not the sentinels'; so this
/// asks over an unauthenticated connection and treats NOAUTH as "a server is there", leaving
/// the proof to the first push, which a replica refuses with READONLY.
async fn is_master(
    addr: &(String, u16),
    auth: &SentinelAuth,
    timeout: Duration,
) -> Result<bool, String> {
    let mut conn = connect(
        tcp_addr(&addr.0, addr.1, auth.tls),
        RedisConnectionInfo::default(),
        auth,
        timeout,
    )
    .await?;
    let role: Result<redis::Value, redis::RedisError> =
        tokio::time::timeout(timeout, redis::cmd("ROLE").query_async(&mut conn))
            .await
            .map_err(|_| "timed out".to_string())?;
    match role {
        Ok(redis::Value::Array(items)) => Ok(matches!(
            items.first(),
            Some(redis::Value::BulkString(role)) if role.as_slice() == b"master"
        )),
        Ok(other) => Err(format!("answered ROLE with {other:?}")),
        Err(e) if e.code() == Some("NOAUTH") => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

fn tcp_addr(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    }
}

async fn connect(
    addr: ConnectionAddr,
    settings: RedisConnectionInfo,
    auth: &SentinelAuth,
    timeout: Duration,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let info: ConnectionInfo = addr
        .into_connection_info()
        .map_err(|e| e.to_string())?
        .set_redis_settings(settings);
    let client = super::broker::client(info, auth.root_cert.clone()).map_err(|e| e.to_string())?;
    tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| describe(&e, auth))
}

/// A failed call to a sentinel in words; a refusal of belfry's credentials names the setting
/// that holds them, since the server's own reply does not.
fn describe(err: &redis::RedisError, auth: &SentinelAuth) -> String {
    if err.kind() == redis::ErrorKind::AuthenticationFailed {
        let given = if auth.password.is_some() {
            "the password in [redis] sentinel_password (or sentinel_password_file)"
        } else {
            "the credentials given"
        };
        return format!("refused {given}: {err}");
    }
    if err.code() == Some("NOAUTH") {
        return format!(
            "requires a password: set [redis] sentinel_password (or sentinel_password_file) \
             to the sentinels' requirepass: {err}"
        );
    }
    err.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kombu_style_urls_parse() {
        let url = parse("sentinel://:secret@10.0.0.1:26380/3;sentinel://10.0.0.2;sentinel://h3:1")
            .unwrap();
        assert_eq!(
            url.sentinels,
            [
                ("10.0.0.1".to_string(), 26380),
                ("10.0.0.2".to_string(), 26379),
                ("h3".to_string(), 1)
            ]
        );
        assert_eq!(url.master_password.as_deref(), Some("secret"));
        assert_eq!(url.db, 3);
    }

    #[test]
    fn the_database_defaults_to_zero_and_may_come_from_any_part() {
        assert_eq!(parse("sentinel://a:1").unwrap().db, 0);
        assert_eq!(parse("sentinel://a:1;sentinel://b:2/5").unwrap().db, 5);
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for bad in [
            "",
            ";",
            "sentinel://",
            "redis://a:1;sentinel://b:2",
            "sentinel://a:notaport",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let err = parse("sentinel://:hunter2@a:1;redis://b").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_same_answer_from_every_sentinel_is_said_once() {
        let pair = |s: &str, r: &str| (s.to_string(), r.to_string());
        let same = [pair("a:1", "refused"), pair("b:2", "refused")];
        assert_eq!(summarize(&same), "every sentinel (a:1, b:2): refused");
        let mixed = [pair("a:1", "refused"), pair("b:2", "timed out")];
        assert_eq!(summarize(&mixed), "a:1: refused; b:2: timed out");
        assert_eq!(summarize(&[pair("a:1", "refused")]), "a:1: refused");
    }

    #[test]
    fn only_sentinel_urls_are_taken_for_sentinel() {
        assert!(is_sentinel_url("sentinel://a:1"));
        assert!(!is_sentinel_url("redis://a:1"));
        assert!(!is_sentinel_url("rediss://a:1"));
    }
}
