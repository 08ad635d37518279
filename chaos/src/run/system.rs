//! The system under test, started and healed: the network, Redis behind its slow proxy, the
//! cluster with a leader, the harness's consumer and the optional Celery worker.
//!
//! Invariant: the parts are dropped (and so stopped) in the reverse of the order they were
//! started. Must not inject faults; healing undoes whatever a nemesis left.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{now, plan::Plan, RunError};
use crate::api::Api;
use crate::celery::Worker;
use crate::cluster::{Cluster, ClusterConfig};
use crate::history::{incident, SharedHistory};
use crate::nemesis::{Nemesis, Targets};
use crate::net::Network;
use crate::proxy::SlowProxy;
use crate::workload;
use crate::Args;
use belfry_kit::{Consumer, RedisOptions, RedisServer};

/// Everything started for a run. Fields drop in declaration order: the last started first.
pub(super) struct System {
    pub(super) worker: Option<Worker>,
    /// The worker's broker (Redis db 0) and result backend (db 1).
    pub(super) broker: String,
    pub(super) backend: String,
    pub(super) consumer: Consumer,
    pub(super) targets: Targets,
    /// Held here, not only by the targets, so Redis stops before the cluster and the proxy
    /// last.
    _redis: Arc<Mutex<RedisServer>>,
    pub(super) cluster: Arc<Mutex<Cluster>>,
    _proxy: SlowProxy,
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
        // It persists every write (`appendfsync always`), as a production broker should:
        // belfry's idempotency markers and the queued messages survive a crash, so a restart
        // tests belfry and not a Redis that forgot what it was told.
        let redis = RedisServer::launch(RedisOptions {
            bin: args.redis_server.clone(),
            dir: Some(plan.out.join("redis")),
            persist: true,
            ..RedisOptions::default()
        })?;
        let direct_url = redis.url(0);
        let proxy = SlowProxy::start(&host_ip, redis.port)
            .await
            .map_err(RunError::Proxy)?;
        let cluster = Cluster::start(
            args.nodes,
            net,
            ClusterConfig {
                belfry_bin: plan.belfry_bin.clone(),
                dir: plan.out.join("cluster"),
                redis_url: format!("redis://{host_ip}:{}/0", proxy.port),
                faketime_lib: (plan.clock && plan.kinds.contains(&Nemesis::Clock))
                    .then(|| args.faketime_lib.clone()),
                // Frequent snapshots, so restarts and wiped nodes also exercise snapshot
                // catch-up.
                extra_config: "[raft]\nsnapshot_every_logs = 500\n".into(),
            },
        )?;
        let cluster = Arc::new(Mutex::new(cluster));
        let redis = Arc::new(Mutex::new(redis));
        let targets = Targets {
            cluster: cluster.clone(),
            redis: redis.clone(),
            proxy: proxy.clone(),
            api: Api::new(Vec::new()),
            history: history.clone(),
        };
        targets.refresh_api().await;
        wait_for_leader(&cluster, Duration::from_secs(60)).await?;
        println!("{}  cluster up: leader elected", now());
        let consumer = Consumer::start(&direct_url, workload::QUEUE);
        // The worker's broker is Redis itself (db 0), its result backend db 1.
        let (broker, backend) = {
            let r = redis.lock().await;
            (r.url(0), r.url(1))
        };
        let worker = match &args.celery_python {
            Some(python) => Some(Worker::start(
                python,
                &plan.out.join("celery"),
                &broker,
                &backend,
                workload::CELERY_QUEUE,
            )?),
            None => None,
        };
        Ok(System {
            worker,
            broker,
            backend,
            consumer,
            targets,
            _redis: redis,
            cluster,
            _proxy: proxy,
        })
    }
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
    t.proxy.set_delay(Duration::ZERO);
    {
        let mut redis = t.redis.lock().await;
        if !redis.is_running() {
            if let Err(err) = redis.restart() {
                incident(&t.history, format!("heal: redis: {err}"));
            }
        }
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
