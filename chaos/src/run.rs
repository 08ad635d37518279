//! One run from start to verdict: set up the network, Redis, the cluster and the consumers;
//! create the workload; inject faults and operate on schedules for the duration; heal
//! everything; wait for the outbox to drain; read belfry's final view; check; report.
//!
//! Owns the order of phases and the waiting between them; must not hold fault or checking
//! logic of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::Mutex;

use crate::api::Api;
use crate::checker::{self, Final, PreviewCheck};
use belfry_kit::{Consumer, RedisOptions, RedisServer};

use crate::cluster::{Cluster, ClusterConfig};
use crate::history::{incident, History, OpKind, SharedHistory};
use crate::nemesis::{self, Nemesis, Targets};
use crate::net::{netns_available, Network};
use crate::proxy::SlowProxy;
use crate::workload;
use crate::Args;

/// Why a run could not be carried out (as opposed to a run that found a problem).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Usage(String),
    #[error("output directory {path}: {source}")]
    Out {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Net(#[from] crate::net::NetError),
    #[error("redis: {0}")]
    Redis(#[from] belfry_kit::KitError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("redis proxy: {0}")]
    Proxy(std::io::Error),
    #[error("the cluster elected no leader within {0:?} of starting")]
    NoLeader(Duration),
    #[error("celery worker: {0}")]
    Celery(#[from] crate::celery::CeleryError),
}

fn now() -> String {
    Utc::now().format("%H:%M:%S%.3f").to_string()
}

fn selected_nemeses(spec: &str, netns: bool, clock: bool) -> Result<Vec<Nemesis>, RunError> {
    let mut out = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "all" {
            out.extend_from_slice(nemesis::ALL);
        } else if name == "none" {
            continue;
        } else {
            out.push(Nemesis::parse(name).ok_or_else(|| {
                RunError::Usage(format!(
                    "unknown nemesis {name:?}; known: {}",
                    nemesis::ALL
                        .iter()
                        .map(|n| n.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?);
        }
    }
    out.sort();
    out.dedup();
    let explicit = spec != "all";
    out.retain(|n| {
        let ok = (!n.needs_netns() || netns) && (*n != Nemesis::Clock || clock);
        if !ok && explicit {
            eprintln!(
                "belfry-chaos: nemesis {} is unavailable here ({}); skipped",
                n.name(),
                if n.needs_netns() {
                    "partitions need netns mode, as root"
                } else {
                    "libfaketime is not installed"
                }
            );
        }
        ok
    });
    Ok(out)
}

fn default_belfry() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("belfry")))
        .unwrap_or_else(|| PathBuf::from("belfry"))
}

/// Runs one whole run; `Ok(true)` when the check passed.
pub async fn run(args: Args) -> Result<bool, RunError> {
    let seed = args.seed.unwrap_or_else(|| {
        let t = Utc::now();
        (t.timestamp_nanos_opt().unwrap_or_default() as u64) ^ u64::from(std::process::id())
    });
    let netns = match args.net.as_str() {
        "netns" => true,
        "loopback" => false,
        "auto" => netns_available(),
        other => {
            return Err(RunError::Usage(format!(
                "--net {other:?}: netns, loopback or auto"
            )))
        }
    };
    let clock = args.faketime_lib.exists();
    let kinds = selected_nemeses(&args.nemesis, netns, clock)?;
    let belfry_bin = args.belfry.clone().unwrap_or_else(default_belfry);
    if !belfry_bin.exists() {
        return Err(RunError::Usage(format!(
            "no belfry binary at {} (build it: cargo build -p belfry, or pass --belfry)",
            belfry_bin.display()
        )));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        // In the repository (ignored by git) when run from its root.
        let base = if Path::new("chaos/Cargo.toml").exists() {
            PathBuf::from("chaos/out")
        } else {
            PathBuf::from("chaos-out")
        };
        base.join(format!(
            "{}-{}n-seed{seed}",
            Utc::now().format("%Y%m%dT%H%M%S"),
            args.nodes
        ))
    });
    std::fs::create_dir_all(&out).map_err(|source| RunError::Out {
        path: out.display().to_string(),
        source,
    })?;
    // Absolute, so children that change directory (redis-server does) still find their files.
    let out = out.canonicalize().map_err(|source| RunError::Out {
        path: out.display().to_string(),
        source,
    })?;
    let command = format!(
        "belfry-chaos --nodes {} --duration {}s --seed {seed} --nemesis {}{}",
        args.nodes,
        args.duration.as_secs(),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        if args.celery_python.is_some() {
            " --celery-python <python>"
        } else {
            ""
        }
    );
    println!(
        "belfry-chaos: seed {seed}, {} nodes, {}s of faults, network {}, output {}",
        args.nodes,
        args.duration.as_secs(),
        if netns { "netns" } else { "loopback" },
        out.display()
    );
    println!("replay with: {command}");

    let history: SharedHistory = Arc::new(StdMutex::new(History {
        seed,
        nodes: args.nodes,
        ..Default::default()
    }));

    // Set up.
    let net = if netns {
        Network::netns()?
    } else {
        Network::loopback()
    };
    let host_ip = net.host_ip();
    // It persists every write (`appendfsync always`), as a production broker should: belfry's
    // idempotency markers and the queued messages survive a crash, so a restart tests belfry
    // and not a Redis that forgot what it was told.
    let redis = RedisServer::launch(RedisOptions {
        bin: args.redis_server.clone(),
        dir: Some(out.join("redis")),
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
            belfry_bin,
            dir: out.join("cluster"),
            redis_url: format!("redis://{host_ip}:{}/0", proxy.port),
            faketime_lib: (clock && kinds.contains(&Nemesis::Clock))
                .then(|| args.faketime_lib.clone()),
            // Frequent snapshots, so restarts and wiped nodes also exercise snapshot catch-up.
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
    let wait = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if cluster.lock().await.leader().is_some() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RunError::NoLeader(wait));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{}  cluster up: leader elected", now());
    let mut consumer = Consumer::start(&direct_url, workload::QUEUE);
    // The worker's broker is Redis itself (db 0), its result backend db 1.
    let (broker, backend) = {
        let r = redis.lock().await;
        (r.url(0), r.url(1))
    };
    let worker = match &args.celery_python {
        Some(python) => Some(crate::celery::Worker::start(
            python,
            &out.join("celery"),
            &broker,
            &backend,
            workload::CELERY_QUEUE,
        )?),
        None => None,
    };

    // The fixed workload, before any fault.
    let t0 = workload::aligned_after(TimeDelta::seconds(6));
    for def in workload::fixed(t0, worker.is_some()) {
        if !workload::create(&targets.api, &history, &def).await {
            return Err(RunError::Usage(format!("could not create {}", def.name)));
        }
    }
    let warm = (t0 + TimeDelta::seconds(3) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(warm).await;

    // Faults and operations.
    let started = Utc::now();
    history.lock().unwrap_or_else(|e| e.into_inner()).started = Some(started);
    println!(
        "{}  faults begin: {}",
        now(),
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let until = tokio::time::Instant::now() + args.duration;
    let (env, cl): (Vec<Nemesis>, Vec<Nemesis>) = kinds.iter().partition(|k| k.is_environment());
    let tracks = vec![
        tokio::spawn(nemesis::run_track(targets.clone(), cl, seed, until)),
        tokio::spawn(nemesis::run_track(
            targets.clone(),
            env,
            seed.rotate_left(17) ^ 0xe4f1,
            until,
        )),
        tokio::spawn(workload::drive(
            targets.api.clone(),
            history.clone(),
            seed,
            until,
        )),
    ];
    for track in tracks {
        let _ = track.await;
    }

    // Heal everything.
    heal(&targets).await;
    let healed = Utc::now();
    let cutoff = healed + TimeDelta::from_std(args.settle).unwrap_or_default();
    {
        let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
        h.healed = Some(healed);
        h.cutoff = Some(cutoff);
    }
    println!(
        "{}  healed; checking occurrences up to {}",
        now(),
        cutoff.format("%H:%M:%S")
    );
    let wait = (cutoff + TimeDelta::seconds(3) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    // With intents committed a second ahead, a running schedule always has some in the
    // outbox: pausing everything (after the cutoff, so no checked instant is affected) lets
    // a healthy cluster drain it to zero.
    pause_all(&targets.api, &history).await;
    drain(&targets, &consumer, worker.as_ref(), cutoff).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    consumer.stop();
    let mut arrivals = consumer.arrivals();
    let mut malformed = consumer.malformed();
    let mut receipts = std::collections::HashSet::new();
    if let Some(worker) = &worker {
        let (ran, bad) = worker.executions(&backend);
        arrivals.extend(ran);
        malformed.extend(bad);
        match crate::celery::push_receipts(&broker) {
            Ok(read) => receipts = read,
            // Without receipts nothing is excused: a lost message then counts as missing.
            Err(err) => eprintln!("{}  cannot read belfry's push receipts: {err}", now()),
        }
    }

    // belfry's own view, to hold against.
    let (finals, previews) = final_views(&targets.api, &history).await;
    replicas_agree(&targets).await;
    let verdict = {
        let h = history.lock().unwrap_or_else(|e| e.into_inner());
        checker::check(&checker::Input {
            history: &h,
            arrivals: &arrivals,
            finals: &finals,
            previews: &previews,
            malformed: &malformed,
            cluster: checker::cluster_id("belfry"),
            receipts: &receipts,
        })
    };
    let text = {
        let h = history.lock().unwrap_or_else(|e| e.into_inner());
        let text =
            crate::report::write(&out, &h, &verdict, &command).map_err(|source| RunError::Out {
                path: out.display().to_string(),
                source,
            })?;
        if let Err(err) = crate::plot::draw(&out.join("lateness.png"), &args.font, &h, &verdict) {
            eprintln!("belfry-chaos: plot: {err}");
        }
        text
    };
    write_arrivals(&out, &arrivals);
    println!("\n{text}");
    println!("report: {}", out.join("report.json").display());
    println!("plot:   {}", out.join("lateness.png").display());
    cluster.lock().await.kill_all();
    Ok(verdict.ok)
}

/// Undoes every fault: the network whole, every member running and thawed, clocks true,
/// Redis up and fast.
async fn heal(t: &Targets) {
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

/// The names alive at the end, per the run's own operations.
fn live_names(history: &SharedHistory) -> Vec<String> {
    let h = history.lock().unwrap_or_else(|e| e.into_inner());
    let mut live: BTreeMap<&str, bool> = BTreeMap::new();
    for op in &h.ops {
        match op.kind {
            OpKind::Delete => live.insert(&op.schedule, false),
            OpKind::Create { .. } => live.insert(&op.schedule, true),
            _ => None,
        };
    }
    live.into_iter()
        .filter(|(_, alive)| *alive)
        .map(|(name, _)| name.to_string())
        .collect()
}

async fn pause_all(api: &Api, history: &SharedHistory) {
    for name in live_names(history) {
        let paused = api
            .call(Duration::from_secs(60), |mut c| {
                let name = name.clone();
                async move {
                    c.schedules
                        .pause_schedule(belfry::api::pb::ScheduleName { name })
                        .await
                }
            })
            .await;
        if let Err(err) = paused {
            incident(history, format!("final pause of {name}: {err}"));
        }
    }
}

/// Waits for the outbox to drain and for deliveries to pass the cutoff.
async fn drain(
    t: &Targets,
    consumer: &Consumer,
    worker: Option<&crate::celery::Worker>,
    cutoff: chrono::DateTime<Utc>,
) {
    let limit = Duration::from_secs(180);
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let frontier = consumer.arrivals().iter().map(|a| a.scheduled_at).max();
        match t.api.status(Duration::from_secs(10)).await {
            Ok(status) => {
                let passed = frontier.is_some_and(|f| f >= cutoff);
                if status.outbox_depth == 0 && passed && worker.is_none_or(|w| w.idle()) {
                    return;
                }
                last = format!(
                    "outbox depth {}, newest delivery {:?}",
                    status.outbox_depth, frontier
                );
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    incident(
        &t.history,
        format!("HANG: the outbox did not drain within {limit:?} of healing ({last})"),
    );
}

/// Final schedule views (live schedules) and preview cross-checks of every spec used.
async fn final_views(
    api: &Api,
    history: &SharedHistory,
) -> (BTreeMap<String, Final>, Vec<PreviewCheck>) {
    let ops = history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ops
        .clone();
    let specs: Vec<(String, crate::expect::SpecDef)> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Create { spec, .. } | OpKind::Edit { spec } => {
                Some((op.schedule.clone(), spec.clone()))
            }
            _ => None,
        })
        .collect();
    let mut finals = BTreeMap::new();
    for name in &live_names(history) {
        let deadline = Duration::from_secs(30);
        let Ok(schedule) = api.get(name, deadline).await else {
            incident(history, format!("final read of {name} failed"));
            continue;
        };
        let runs = api.runs(name, deadline).await.unwrap_or_default();
        finals.insert(
            name.clone(),
            Final {
                incarnation: schedule.incarnation.clone(),
                skipped: schedule.skipped_count,
                runs: runs
                    .iter()
                    .filter_map(|r| {
                        let at = r.scheduled_at.as_ref()?;
                        let outcome = match belfry::api::pb::RunOutcome::try_from(r.outcome) {
                            Ok(belfry::api::pb::RunOutcome::Sent) => "sent",
                            Ok(belfry::api::pb::RunOutcome::AlreadySent) => "already_sent",
                            Ok(belfry::api::pb::RunOutcome::Skipped) => "skipped",
                            Ok(belfry::api::pb::RunOutcome::Pending) => "pending",
                            _ => "unknown",
                        };
                        Some((
                            chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32)?,
                            outcome.to_string(),
                            r.manual,
                        ))
                    })
                    .collect(),
            },
        );
    }
    let mut previews = Vec::new();
    for (name, spec) in specs {
        let after = match &spec {
            crate::expect::SpecDef::Every { anchor, .. } => *anchor - TimeDelta::seconds(1),
            crate::expect::SpecDef::Cron { start_at, .. } => *start_at - TimeDelta::seconds(1),
        };
        let ours: Vec<_> = spec
            .occurrences(after, after + TimeDelta::days(1))
            .into_iter()
            .take(30)
            .collect();
        match api
            .preview(
                spec.to_pb(),
                after,
                ours.len() as u32,
                Duration::from_secs(30),
            )
            .await
        {
            Ok(theirs) => previews.push(PreviewCheck {
                schedule: name,
                spec: spec.describe(),
                ours,
                theirs,
            }),
            Err(err) => incident(history, format!("preview of {name}: {err}")),
        }
    }
    (finals, previews)
}

fn write_arrivals(dir: &Path, arrivals: &[crate::consumer::Arrival]) {
    let lines: Vec<String> = arrivals
        .iter()
        .filter_map(|a| serde_json::to_string(a).ok())
        .collect();
    let _ = std::fs::write(dir.join("arrivals.jsonl"), lines.join("\n"));
}

/// One node's view of every schedule: (incarnation, revision, last run, fired, skipped,
/// delivered) by name.
type Replica = BTreeMap<String, (String, u64, Option<i64>, u64, u64, u64)>;

async fn replica(addr: &str) -> Result<Replica, String> {
    let mut client = crate::cluster::client_for(addr).ok_or("no client")?;
    let mut out = Replica::new();
    let mut token = String::new();
    loop {
        let page = client
            .schedules
            .list_schedules(belfry::api::pb::ListSchedulesRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        for s in page.schedules {
            let name = s
                .definition
                .as_ref()
                .map(|d| d.name.clone())
                .unwrap_or_default();
            out.insert(
                name,
                (
                    s.incarnation,
                    s.revision,
                    s.last_run
                        .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000)),
                    s.fired_count,
                    s.skipped_count,
                    s.delivered_count,
                ),
            );
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Every member, read after a read barrier, must hold the same schedules and run counts:
/// the cluster is quiet (everything paused, the outbox drained), so any difference means the
/// replicas' logs diverged.
async fn replicas_agree(t: &Targets) {
    let members: Vec<(u64, String)> = {
        let c = t.cluster.lock().await;
        c.members()
            .into_iter()
            .filter_map(|id| c.addr(id).map(|a| (id, a)))
            .collect()
    };
    let mut views: Vec<(u64, Replica)> = Vec::new();
    for (id, addr) in members {
        let mut last = String::new();
        let mut got = None;
        for _ in 0..20 {
            match replica(&addr).await {
                Ok(view) => {
                    got = Some(view);
                    break;
                }
                Err(err) => last = err,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match got {
            Some(view) => views.push((id, view)),
            None => incident(
                &t.history,
                format!("cannot read node {id}'s schedules: {last}"),
            ),
        }
    }
    let Some((first_id, first)) = views.first() else {
        return;
    };
    for (id, view) in &views[1..] {
        if view != first {
            let names: Vec<&String> = first
                .keys()
                .chain(view.keys())
                .filter(|n| first.get(*n) != view.get(*n))
                .collect();
            incident(
                &t.history,
                format!(
                    "DIVERGENCE: node {id} and node {first_id} disagree on {} schedule(s), e.g. {:?}: {:?} vs {:?}",
                    names.len(),
                    names.first(),
                    names.first().and_then(|n| view.get(*n)),
                    names.first().and_then(|n| first.get(*n)),
                ),
            );
        }
    }
}
