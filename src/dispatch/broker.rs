//! The connection to the broker's master: one Redis server named by a `redis://` URL, or
//! whichever server the sentinels of a `sentinel://` URL name as master now.
//!
//! Invariant: with Sentinel, a connection is dropped as soon as it fails or its server
//! refuses a write as a replica, and the next use asks the sentinels again, so pushes follow
//! the master through a failover. It must not retry a push (that is the dispatcher's call).

use std::time::Duration;

use metrics::{counter, gauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tracing::{info, warn};

use super::sentinel::{self, SentinelAuth, SentinelUrl};
use super::sink::{SinkConfig, SinkError};
use crate::telemetry::names;

/// Where pushes go and the connection they go over.
pub(crate) struct Broker {
    target: Target,
    manager_config: ConnectionManagerConfig,
    timeout: Duration,
}

enum Target {
    /// One server; the connection manager reconnects to it by itself.
    Direct(ConnectionManager),
    Sentinel(Box<SentinelTarget>),
}

struct SentinelTarget {
    url: SentinelUrl,
    master_name: String,
    auth: SentinelAuth,
    /// The master's connections use TLS (with `root_cert`, when given).
    master_tls: bool,
    root_cert: Option<Vec<u8>>,
    current: tokio::sync::Mutex<Option<Current>>,
}

struct Current {
    address: String,
    conn: ConnectionManager,
}

impl Broker {
    /// Builds the broker without connecting (Must be called inside a Tokio runtime).
    pub(crate) fn new(config: &SinkConfig) -> Result<Broker, SinkError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let root_cert = match &config.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                SinkError::Config(format!("redis tls_ca_file {}: {e}", path.display()))
            })?),
            None => None,
        };
        let target = if sentinel::is_sentinel_url(&config.url) {
            Target::Sentinel(Box::new(sentinel_target(config, root_cert)?))
        } else {
            let info = direct_info(config)?;
            let client = client(info, root_cert)?;
            let conn = ConnectionManager::new_lazy_with_config(client, manager_config.clone())
                .map_err(|e| SinkError::Config(format!("redis connection: {e}")))?;
            Target::Direct(conn)
        };
        Ok(Broker {
            target,
            manager_config,
            timeout: config.timeout,
        })
    }

    /// A connection to the master (with Sentinel, found first if none is held).
    pub(crate) async fn connection(&self) -> Result<ConnectionManager, SinkError> {
        match &self.target {
            Target::Direct(conn) => Ok(conn.clone()),
            Target::Sentinel(target) => {
                let mut current = target.current.lock().await;
                if let Some(current) = current.as_ref() {
                    return Ok(current.conn.clone());
                }
                let found = self.connect_to_master(target).await?;
                let conn = found.conn.clone();
                *current = Some(found);
                Ok(conn)
            }
        }
    }

    /// Called with every failed call: with Sentinel, a connection error or a replica's refusal
    /// drops the connection so that the next call finds the master again.
    pub(crate) async fn failed(&self, err: &redis::RedisError) {
        let Target::Sentinel(target) = &self.target else {
            return;
        };
        let lost = err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || matches!(err.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
        if lost {
            if let Some(old) = target.current.lock().await.take() {
                warn!(master = %old.address, %err, "lost the Redis master; asking the sentinels again");
                gauge!(names::REDIS_MASTER, "address" => old.address).set(0.0);
            }
        }
    }

    async fn connect_to_master(&self, target: &SentinelTarget) -> Result<Current, SinkError> {
        let (host, port) = sentinel::find_master(
            &target.url.sentinels,
            &target.auth,
            &target.master_name,
            self.timeout,
        )
        .await
        .map_err(|e| SinkError::NoMaster(e.to_string()))?;
        let address = format!("{host}:{port}");
        let addr = if target.master_tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(target.url.db);
        if let Some(password) = &target.url.master_password {
            settings = settings.set_password(password);
        }
        if let Some(username) = &target.url.master_username {
            settings = settings.set_username(username);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| SinkError::Config(format!("redis master: {e}")))?
            .set_redis_settings(settings);
        let client = client(info, target.root_cert.clone())?;
        let conn = ConnectionManager::new_with_config(client, self.manager_config.clone())
            .await
            .map_err(SinkError::from)?;
        info!(master = %address, name = %target.master_name, "connected to the Redis master the sentinels name");
        counter!(names::REDIS_MASTER_CHANGES).increment(1);
        gauge!(names::REDIS_MASTER, "address" => address.clone()).set(1.0);
        Ok(Current { address, conn })
    }
}

fn sentinel_target(
    config: &SinkConfig,
    root_cert: Option<Vec<u8>>,
) -> Result<SentinelTarget, SinkError> {
    let mut url =
        sentinel::parse(&config.url).map_err(|e| SinkError::Config(format!("redis url: {e}")))?;
    let master_name = config.master_name.clone().ok_or_else(|| {
        SinkError::Config("redis master_name: a sentinel:// URL needs the master's name".into())
    })?;
    if let Some(db) = config.db {
        url.db = db;
    }
    if let Some(password) = &config.password {
        url.master_password = Some(password.clone());
    }
    Ok(SentinelTarget {
        url,
        master_name,
        auth: SentinelAuth {
            username: None,
            password: config.sentinel_password.clone(),
            tls: config.sentinel_tls,
            root_cert: root_cert.clone(),
        },
        master_tls: config.tls,
        root_cert,
        current: tokio::sync::Mutex::new(None),
    })
}

fn direct_info(config: &SinkConfig) -> Result<ConnectionInfo, SinkError> {
    let info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| SinkError::Config(format!("redis url: {e}")))?;
    let mut settings = info.redis_settings().clone();
    if let Some(db) = config.db {
        settings = settings.set_db(db);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    Ok(info.set_redis_settings(settings))
}

pub(super) fn client(
    info: ConnectionInfo,
    root_cert: Option<Vec<u8>>,
) -> Result<Client, SinkError> {
    match root_cert {
        Some(root_cert) => Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        None => Client::open(info),
    }
    .map_err(|e| SinkError::Config(format!("redis url: {e}")))
}
