//! Backfill against a real three-node cluster and Redis: a range of past occurrences arrives
//! once each, marked as a backfill, through a leader SIGKILL midway; the same backfill again
//! sends nothing new; a dry run counts without sending; the CLI shows the result.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use belfry::api::pb;
use belfry_kit::schedules::{self, Schedule};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::procs::{belfry_bin, Clients, Consumer, ADMIN_TOKEN};
use support::{block, wait_for, RedisServer};

const QUEUE: &str = "backfilled";

type Api = pb::schedules_client::SchedulesClient<belfry::api::client::Intercepted>;

fn backfill(
    api: &mut Api,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    dry_run: bool,
) -> pb::BackfillResponse {
    block(api.backfill_schedule(pb::BackfillRequest {
        name: "minutely".into(),
        from: from.to_rfc3339(),
        to: to.to_rfc3339(),
        dry_run,
        rate_per_second: 10,
        apply_overlap: false,
    }))
    .expect("backfill")
}

fn progress(api: &mut Api) -> Option<pb::BackfillProgress> {
    block(api.get_schedule(pb::GetScheduleRequest {
        name: "minutely".into(),
    }))?
    .backfill
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_survives_a_failover_and_repeats_as_a_no_op() {
    let redis = RedisServer::start().expect("start redis-server");
    let entries = [Schedule::new("minutely", "tasks.report")
        .cron("* * * * *")
        .queue(QUEUE)];
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules::file(&entries), "");
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let mut api = cluster
        .client((leader + 1) % 3, Some(ADMIN_TOKEN))
        .schedules;
    wait_for("the schedule", Duration::from_secs(30), || {
        block(api.get_schedule(pb::GetScheduleRequest {
            name: "minutely".into(),
        }))
    });

    // The hour before the schedule existed: 60 minutes.
    let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let (from, to) = (
        minute - TimeDelta::minutes(61),
        minute - TimeDelta::minutes(2),
    );
    let expected: Vec<DateTime<Utc>> = (0..60).map(|k| from + TimeDelta::minutes(k)).collect();
    let dry = backfill(&mut api, from, to, true);
    assert_eq!((dry.total, dry.started), (60, false));
    let listed: Vec<i64> = dry.occurrences.iter().map(|t| t.seconds).collect();
    let wanted: Vec<i64> = expected.iter().map(|t| t.timestamp()).collect();
    assert_eq!(listed, wanted);
    assert!(progress(&mut api).is_none(), "a dry run starts nothing");

    let started = backfill(&mut api, from, to, false);
    assert_eq!((started.total, started.started), (60, true));
    // Kill the leader once a third has arrived; the next one carries on from the cursor.
    let backfilled = |consumer: &Consumer| {
        consumer
            .arrivals()
            .into_iter()
            .filter(|a| a.backfill)
            .collect::<Vec<_>>()
    };
    wait_for("a third of the backfill", Duration::from_secs(60), || {
        (backfilled(&consumer).len() >= 20).then_some(())
    });
    cluster.kill(leader);
    let new_leader = cluster
        .wait_for_new_leader(leader, Duration::from_secs(30))
        .expect("a new leader");
    let mut api = cluster.client(new_leader, Some(ADMIN_TOKEN)).schedules;
    let done = wait_for("the backfill to finish", Duration::from_secs(90), || {
        progress(&mut api).filter(|p| p.finished_at.is_some())
    });
    assert_eq!((done.total, done.done), (60, 60), "{done:?}");
    let arrived = wait_for("every occurrence", Duration::from_secs(30), || {
        let arrived = backfilled(&consumer);
        (arrived.len() >= 60).then_some(arrived)
    });
    let mut by_instant: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for a in &arrived {
        *by_instant.entry(a.scheduled_at).or_default() += 1;
    }
    assert_eq!(by_instant.keys().copied().collect::<Vec<_>>(), expected);
    assert!(by_instant.values().all(|n| *n == 1), "{by_instant:?}");

    // The same backfill again: every occurrence is known already; nothing new is sent.
    let again = backfill(&mut api, from, to, false);
    assert_eq!(again.total, 60);
    let second = wait_for(
        "the second backfill to finish",
        Duration::from_secs(60),
        || {
            progress(&mut api)
                .filter(|p| p.finished_at.is_some() && p.started_at != done.started_at)
        },
    );
    assert_eq!(second.done, 60);
    // Pushed again only where the history no longer holds the run; Redis's markers stop those.
    wait_for("the outbox to drain", Duration::from_secs(30), || {
        let status = block(
            cluster
                .client(new_leader, Some(ADMIN_TOKEN))
                .cluster
                .get_status(pb::GetStatusRequest {}),
        )?;
        (status.outbox_depth == 0).then_some(())
    });
    assert_eq!(
        backfilled(&consumer).len(),
        60,
        "a repeated backfill sent nothing new"
    );

    // The CLI: a dry run through the binary, and a refusal naming the field.
    let endpoint = cluster.nodes[new_leader].addr.clone();
    let cli = |args: &[&str]| {
        Command::new(belfry_bin())
            .args(args)
            .env("BELFRY_ENDPOINT", &endpoint)
            .env("BELFRY_TOKEN", ADMIN_TOKEN)
            .env_remove("BELFRY_OUTPUT")
            .output()
            .expect("run belfry")
    };
    let (f, t) = (from.to_rfc3339(), to.to_rfc3339());
    let out = cli(&[
        "schedule",
        "backfill",
        "minutely",
        "--from",
        &f,
        "--to",
        &t,
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("60 occurrences (dry run: nothing sent)"),
        "{text}"
    );
    let future = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let out = cli(&[
        "schedule", "backfill", "minutely", "--from", &f, "--to", &future,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("to"), "{err}");
}
