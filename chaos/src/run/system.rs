//! The system under test, started and healed: the network, Redis (one server behind its slow
//! proxy, or a Sentinel topology), the cluster with a leader, the harness's consumer and the
//! optional Celery worker.
//!
//! Invariant: the parts are dropped (and so stopped) in the reverse of the order they were
//! started. Must not inject faults; healing undoes whatever a nemesis left.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{now, plan::Plan, RunError};
use crate::api::Api;
use crate::broker::{blocking, Broker};
use crate::celery::{Worker, WorkerKind};
use crate::cluster::{Cluster, ClusterConfig};
use crate::history::{incident, SharedHistory};
use crate::nemesis::{Nemesis, Targets};
use crate::net::Network;
use crate::proxy::SlowProxy;
use crate::workload;
use crate::Args;
use belfry_kit::{Consumer, RedisOptions, RedisServer, SentinelOptions, SentinelTopology};

/// Everything started for a run. Fields drop in declaration order: the last started first.
pub(super) struct System {
    /// With `--celery-python`: the worker of `chaos.record`, then that of `chaos.slow`.
    pub(super) workers: Vec<Worker>,
    /// The worker's broker (Redis db 0) and result backend (db 1).
    pub(super) broker: String,
    pub(super) backend: String,
    pub(super) consumer: Consumer,
    pub(super) targets: Targets,
    /// Held here, not only by the targets, so Redis stops before the cluster and the proxy
    /// last.
    _redis: Arc<Mutex<Broker>>,
    pub(super) cluster: Arc<Mutex<Cluster>>,
    _proxy: Option<SlowProxy>,
}

/// Redis as started, with what the nodes and the harness's consumer are given.
struct Started {
    broker: Broker,
    proxy: Option<SlowProxy>,
    /// The nodes' URL (and `[redis]` settings, with Sentinel).
    node_url: String,
    node_config: String,
    consumer: Consumer,
    /// The worker's broker (db 0) and result backend (db 1): the server itself.
    worker_urls: (String, String),
}

impl System {
    pub(super) async fn start(
        args: &Args,
        plan: &Plan,
        history: &SharedHistory,
    ) -> Result<System, RunError> {
        let net = if plan.netns {
            Network::netns()?
        } else {
            Network::loopback()
        };
        let host_ip = net.host_ip();
        let started = if args.sentinel {
            start_sentinel(args, plan, &host_ip).await?
        } else {
            start_single(args, plan, &host_ip).await?
        };
        let cluster = Cluster::start(
            args.nodes,
            net,
            ClusterConfig {
                belfry_bin: plan.belfry_bin.clone(),
                dir: plan.out.join("cluster"),
                redis_url: started.node_url,
                faketime_lib: (plan.clock && plan.kinds.contains(&Nemesis::Clock))
                    .then(|| args.faketime_lib.clone()),
                // Frequent snapshots, so restarts and wiped nodes also exercise snapshot
                // catch-up.
                extra_config: format!("[raft]\nsnapshot_every_logs = 500\n{}", started.node_config),
            },
        )?;
        let cluster = Arc::new(Mutex::new(cluster));
        let redis = Arc::new(Mutex::new(started.broker));
        let targets = Targets {
            cluster: cluster.clone(),
            redis: redis.clone(),
            proxy: started.proxy.clone(),
            api: Api::new(Vec::new()),
            history: history.clone(),
        };
        targets.refresh_api().await;
        wait_for_leader(&cluster, Duration::from_secs(60)).await?;
        println!("{}  cluster up: leader elected", now());
        let consumer = started.consumer;
        let (broker, backend) = started.worker_urls;
        let mut workers = Vec::new();
        if let Some(python) = &args.celery_python {
            for queue in [
                (workload::CELERY_QUEUE, WorkerKind::Record),
                (workload::SLOW_QUEUE, WorkerKind::Slow),
            ] {
                let dir = plan.out.join("celery");
                workers.push(Worker::start(python, &dir, &broker, &backend, queue)?);
            }
        }
        Ok(System {
            workers,
            broker,
            backend,
            consumer,
            targets,
            _redis: redis,
            cluster,
            _proxy: started.proxy,
        })
    }
}

/// One `redis-server` that persists every write (`appendfsync always`), as a production
/// broker should: belfry's idempotency markers and the queued messages survive a crash, so a
/// restart tests belfry and not a Redis that forgot what it was told. The nodes reach it
/// through the slow proxy; the consumer reads it directly.
async fn start_single(args: &Args, plan: &Plan, host_ip: &str) -> Result<Started, RunError> {
    let redis = RedisServer::launch(RedisOptions {
        bin: args.redis_server.clone(),
        dir: Some(plan.out.join("redis")),
        persist: true,
        ..RedisOptions::default()
    })?;
    let proxy = SlowProxy::start(host_ip, redis.port)
        .await
        .map_err(RunError::Proxy)?;
    // With the workers, the nodes follow outcomes in the workers' result backend (db 1),
    // through the same proxy, so the overlap policies meet Redis's faults too.
    let node_config = match &args.celery_python {
        Some(_) => format!(
            "[results]\nbackend = \"redis://{host_ip}:{}/1\"\n",
            proxy.port
        ),
        None => String::new(),
    };
    Ok(Started {
        node_url: format!("redis://{host_ip}:{}/0", proxy.port),
        node_config,
        consumer: Consumer::start(&redis.url(0), workload::QUEUE),
        worker_urls: (redis.url(0), redis.url(1)),
        broker: Broker::Single(redis),
        proxy: Some(proxy),
    })
}

/// A master, one replica and three sentinels on the host's address (which the nodes reach from
/// their namespaces). The nodes push with `min_replicas = 1`, so a confirmed push is on the
/// replica before it counts, and the consumer follows the master, its own pops confirmed the
/// same way: a failover then loses nothing on either side.
async fn start_sentinel(args: &Args, plan: &Plan, host_ip: &str) -> Result<Started, RunError> {
    let options = SentinelOptions {
        host: host_ip.to_string(),
        dir: Some(plan.out.join("redis")),
        redis_bin: args.redis_server.clone(),
        sentinel_bin: args.redis_sentinel.clone(),
        ..SentinelOptions::new(1)
    };
    let topology = tokio::task::spawn_blocking(move || SentinelTopology::start(options))
        .await
        .map_err(|e| belfry_kit::KitError::Sentinel(format!("starting: {e}")))??;
    println!(
        "{}  redis: master, replica and three sentinels on {host_ip}",
        now()
    );
    // No worker runs with Sentinel (see `Plan`); these name the master at start regardless.
    let worker_urls = (
        topology.master_locator(0)().unwrap_or_default(),
        topology.master_locator(1)().unwrap_or_default(),
    );
    Ok(Started {
        node_url: topology.url(0),
        node_config: format!(
            "[redis]\nmaster_name = \"{}\"\nmin_replicas = 1\n",
            topology.master_name()
        ),
        consumer: Consumer::following(topology.master_locator(0), workload::QUEUE),
        worker_urls,
        broker: Broker::Sentinel(topology),
        proxy: None,
    })
}

async fn wait_for_leader(cluster: &Mutex<Cluster>, wait: Duration) -> Result<(), RunError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if cluster.lock().await.leader().is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RunError::NoLeader(wait));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Undoes every fault: the network whole, every member running and thawed, clocks true,
/// Redis up and fast.
pub(super) async fn heal(t: &Targets) {
    if let Some(proxy) = &t.proxy {
        proxy.set_delay(Duration::ZERO);
    }
    if let Err(err) = blocking(&t.redis, Broker::heal).await {
        incident(&t.history, format!("heal: redis: {err}"));
    }
    let mut c = t.cluster.lock().await;
    c.net.heal();
    for id in c.members() {
        c.cont(id);
        if c.has_clock_control() {
            let _ = c.set_clock(id, 0);
        }
        if !c.is_running(id) {
            if let Err(err) = c.spawn(id) {
                incident(&t.history, format!("heal: restart node {id}: {err}"));
            }
        }
    }
}
