//! One run from start to verdict: set up the network, Redis, the cluster and the consumers;
//! create the workload; inject faults and operate on schedules for the duration; heal
//! everything; wait for the outbox to drain; read belfry's final view; check; report.
//!
//! Owns the order of phases and the waiting between them; must not hold fault or checking
//! logic of its own.
//!
//! The phases themselves live in submodules: `plan` (the choices fixed before anything
//! starts), `system` (starting and healing what is under test), `phases` (workload, faults,
//! settling, collecting) and `final_view` (belfry's own view after the run).

mod final_view;
mod phases;
mod plan;
mod system;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use chrono::Utc;

use crate::checker::{self, Final, PreviewCheck, Verdict};
use crate::history::{History, SharedHistory};
use crate::Args;
use final_view::{final_views, replicas_agree};
use phases::Evidence;
use plan::Plan;
use system::System;

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

/// Runs one whole run; `Ok(true)` when the check passed.
pub async fn run(args: Args) -> Result<bool, RunError> {
    let plan = Plan::new(&args)?;
    plan.announce(&args);
    let history: SharedHistory = Arc::new(StdMutex::new(History {
        seed: plan.seed,
        nodes: args.nodes,
        ..Default::default()
    }));
    let mut system = System::start(&args, &plan, &history).await?;
    phases::fixed_workload(&system).await?;
    phases::faults_and_operations(&system.targets, &plan.kinds, plan.seed, args.duration).await;
    let cutoff = phases::heal_and_settle(&system.targets, args.settle).await;
    let evidence = phases::collect_evidence(&mut system, cutoff).await;
    // belfry's own view, to hold against.
    let (finals, previews) = final_views(&system.targets.api, &history).await;
    replicas_agree(&system.targets).await;
    let verdict = check(&history, &evidence, &finals, &previews);
    let text = report(&args, &plan, &history, &verdict)?;
    phases::write_arrivals(&plan.out, &evidence.arrivals);
    println!("\n{text}");
    println!("report: {}", plan.out.join("report.json").display());
    println!("plot:   {}", plan.out.join("lateness.png").display());
    system.cluster.lock().await.kill_all();
    Ok(verdict.ok)
}

fn check(
    history: &SharedHistory,
    evidence: &Evidence,
    finals: &BTreeMap<String, Final>,
    previews: &[PreviewCheck],
) -> Verdict {
    let h = history.lock().unwrap_or_else(|e| e.into_inner());
    checker::check(&checker::Input {
        history: &h,
        arrivals: &evidence.arrivals,
        finals,
        previews,
        malformed: &evidence.malformed,
        cluster: checker::cluster_id("belfry"),
        receipts: &evidence.receipts,
        slow_finishes: &evidence.slow_finishes,
    })
}

/// Writes the summary, `report.json` and the plot; returns the summary text.
fn report(
    args: &Args,
    plan: &Plan,
    history: &SharedHistory,
    verdict: &Verdict,
) -> Result<String, RunError> {
    let out = &plan.out;
    let h = history.lock().unwrap_or_else(|e| e.into_inner());
    let text =
        crate::report::write(out, &h, verdict, &plan.command).map_err(|source| RunError::Out {
            path: out.display().to_string(),
            source,
        })?;
    if let Err(err) = crate::plot::draw(&out.join("lateness.png"), &args.font, &h, verdict) {
        eprintln!("belfry-chaos: plot: {err}");
    }
    Ok(text)
}
