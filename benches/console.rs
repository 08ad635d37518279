//! Web console page timings against a real one-node cluster holding N schedules:
//!
//! `cargo bench --bench console -- N [REPEATS]` loads N schedules through `ApplySchedules` (bulk,
//! 10,000 per call; daily crons over 100 tasks and 20 teams, one in 50 paused), then times
//! `GET /schedules` (first page, plain; a search matching 1 % of the tasks; a label filter; a
//! state filter; by next run; by task) and a schedule's page, REPEATS times each (default 50,
//! after one warm-up), printing p50/p99/max in milliseconds. Requests are made one at a time
//! over fresh connections, as a browser's page loads would be.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use belfry::api::pb;
use support::http::Browser;
use support::procs::{Clients, ADMIN_TOKEN, READONLY_TOKEN};
use support::RedisServer;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn spec(i: usize) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: format!("bench/{i:07}"),
        task: format!("app.tasks.t{}", i % 100),
        spec: Some(pb::Spec {
            cron: "0 3 * * *".into(),
            ..Default::default()
        }),
        enabled: Some(i % 50 != 7),
        labels: [("team".to_string(), format!("t{}", i % 20))].into(),
        args_json: "[1, 2]".into(),
        ..Default::default()
    }
}

fn load(n: usize, api: &mut belfry::api::client::ApiClient, runtime: &tokio::runtime::Runtime) {
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let end = (done + 10_000).min(n);
        runtime
            .block_on(api.schedules.apply_schedules(pb::ApplySchedulesRequest {
                schedules: (done..end).map(spec).collect(),
                prune: false,
                prune_selector: Default::default(),
            }))
            .expect("apply a chunk");
        done = end;
    }
    println!(
        "loaded {n} schedules in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn time(browser: &mut Browser, what: &str, path: &str, repeats: usize) {
    let warm = browser.get(path);
    assert_eq!(warm.status, 200, "{path}: {}", warm.body);
    let mut ms: Vec<f64> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            let reply = browser.get(path);
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(reply.status, 200);
            elapsed
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{what:<34} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} bytes)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        warm.body.len()
    );
}

fn run(n: usize, repeats: usize) {
    let redis = RedisServer::start().expect("start redis-server");
    let mut options = support::procs::options(1, &redis.url(0), "", "");
    options.console = true;
    let mut cluster = support::procs::ProcCluster::start(options).expect("start a node");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The client's channel is made inside the runtime it will run on.
    let _entered = runtime.enter();
    let mut api = cluster.client(0, Some(ADMIN_TOKEN));
    load(n, &mut api, &runtime);
    let addr = cluster.nodes[0].console_addr.clone().expect("a console");
    let mut browser = Browser::new(&addr);
    support::wait_for("the console", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).ok()
    });
    assert_eq!(browser.login(READONLY_TOKEN).status, 303);
    let probe = format!("bench%2F{:07}", n / 2);
    for (what, path) in [
        ("schedules, first page", "/schedules".to_string()),
        (
            "search app.tasks.t42 (1%)",
            "/schedules?q=app.tasks.t42".into(),
        ),
        ("label team=t7 (5%)", "/schedules?q=team%3Dt7".into()),
        ("state=paused (2%)", "/schedules?state=paused".into()),
        ("sorted by next run", "/schedules?sort=next".into()),
        ("sorted by task", "/schedules?sort=task".into()),
        (
            "search, no match (full pass)",
            "/schedules?q=nothing-matches".into(),
        ),
        ("a schedule's page", format!("/schedule?name={probe}")),
    ] {
        time(&mut browser, what, &path, repeats);
    }
}

fn main() {
    let Some(args) = support::bench_args() else {
        return;
    };
    match args.first().and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => run(n, args.get(1).and_then(|r| r.parse().ok()).unwrap_or(50)),
        None => eprintln!("usage: cargo bench --bench console -- N [REPEATS]"),
    }
}
