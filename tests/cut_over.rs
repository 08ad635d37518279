//! Moving schedules from Celery beat to a real three-node cluster: `last_run_at` (through the
//! API, created on a follower and forwarded, and through the schedules file) starts a schedule
//! after the previous scheduler's last run, with what it missed since caught up by the policy
//! and the window; a solar schedule is planned at the instant the time engine computes.

mod support;

use std::time::Duration;

use belfry::api::pb;
use belfry::schedule::{SolarInput, Spec, SpecInput};
use chrono::{DateTime, SecondsFormat, Utc};
use support::procs::{belfry_bin, Clients, Consumer, ADMIN_TOKEN};
use support::{wait_for, RedisServer};

type Api = pb::schedules_client::SchedulesClient<belfry::api::client::Intercepted>;

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn instant(ts: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let ts = ts.as_ref().expect("a timestamp");
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).expect("in range")
}

fn hourly(
    name: &str,
    rule: pb::CatchupRule,
    window_hours: u64,
    last_run_at: &str,
) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: name.into(),
        task: "tasks.migrated".into(),
        spec: Some(pb::Spec {
            every: "1h".into(),
            ..Default::default()
        }),
        catchup: Some(pb::CatchupPolicy {
            rule: rule as i32,
            window_seconds: window_hours * 3600,
        }),
        last_run_at: last_run_at.into(),
        ..Default::default()
    }
}

async fn get(api: &mut Api, name: &str) -> pb::Schedule {
    api.get_schedule(pb::GetScheduleRequest { name: name.into() })
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_run_at_and_solar_on_a_real_cluster() {
    let redis = RedisServer::start().expect("start redis-server");
    let consumer = Consumer::start(&redis.url(0), "celery");
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    let file_last_run = now - chrono::Duration::minutes(150);
    let schedules_toml = format!(
        r#"
[[schedule]]
name = "file-migrated"
task = "tasks.migrated"
every = "1h"
last_run_at = "{}"
catchup = {{ policy = "latest", window = "3h" }}

[[schedule]]
name = "file-sunrise"
task = "tasks.lights"
solar = "sunrise"
latitude = 51.5
longitude = -0.12
"#,
        rfc3339(file_last_run)
    );
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules_toml, "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = (leader + 1) % 3;
    let mut api = cluster.client(follower, Some(ADMIN_TOKEN)).schedules;

    // Celery beat last ran these 3 h 30 min ago; the hourly occurrences since are 2 h 30,
    // 1 h 30 and 30 min ago.
    let last_run = now - chrono::Duration::minutes(210);
    let cases = [
        // Latest within a 3 h window: the newest missed is sent, the two before it skipped.
        ("migrated-latest", pb::CatchupRule::Latest, 3, last_run),
        // All within the default hour: the two older than an hour are outside the window.
        ("migrated-all", pb::CatchupRule::All, 1, last_run),
        // Last run 30 min ago: nothing is due until it is an hour old.
        (
            "up-to-date",
            pb::CatchupRule::All,
            1,
            now - chrono::Duration::minutes(30),
        ),
    ];
    for (name, rule, window, last) in cases {
        let created = api
            .create_schedule(pb::CreateScheduleRequest {
                schedule: Some(hourly(name, rule, window, &rfc3339(last))),
            })
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
            .into_inner();
        let definition = created.definition.expect("definition");
        assert_eq!(definition.last_run_at, rfc3339(last), "{name}");
    }
    let caught_up = last_run + chrono::Duration::hours(3);
    let sent = wait_for(
        "the catch-ups to reach Redis",
        Duration::from_secs(30),
        || {
            let arrivals = consumer.arrivals();
            let expected = ["migrated-latest", "migrated-all", "file-migrated"];
            expected
                .iter()
                .all(|n| arrivals.iter().any(|a| a.schedule == *n))
                .then_some(arrivals)
        },
    );
    for name in ["migrated-latest", "migrated-all"] {
        let runs: Vec<_> = sent.iter().filter(|a| a.schedule == name).collect();
        assert_eq!(runs.len(), 1, "{name}: {runs:?}");
        assert_eq!(runs[0].scheduled_at, caught_up, "{name}");
        let stored = get(&mut api, name).await;
        assert_eq!((stored.fired_count, stored.skipped_count), (1, 2), "{name}");
        assert_eq!(
            instant(&stored.next_run),
            caught_up + chrono::Duration::hours(1)
        );
    }
    let file_runs: Vec<_> = sent
        .iter()
        .filter(|a| a.schedule == "file-migrated")
        .collect();
    assert_eq!(file_runs.len(), 1, "{file_runs:?}");
    assert_eq!(
        file_runs[0].scheduled_at,
        file_last_run + chrono::Duration::hours(2)
    );
    // Nothing at or before a last run is ever sent.
    assert!(sent.iter().all(|a| a.schedule != "up-to-date"), "{sent:?}");
    let up_to_date = get(&mut api, "up-to-date").await;
    assert_eq!(up_to_date.fired_count, 0);
    assert_eq!(
        instant(&up_to_date.next_run),
        now + chrono::Duration::minutes(30)
    );

    // An update keeps the stored last_run_at and the plan.
    let mut changed = hourly("migrated-latest", pb::CatchupRule::Latest, 3, &rfc3339(now));
    changed.description = "changed".into();
    let updated = api
        .update_schedule(pb::UpdateScheduleRequest {
            schedule: Some(changed),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    let definition = updated.definition.expect("definition");
    assert_eq!(definition.last_run_at, rfc3339(last_run));
    assert_eq!(
        instant(&updated.next_run),
        caught_up + chrono::Duration::hours(1)
    );

    // A solar schedule through the API, and one from the file: planned where the engine says.
    let solar = pb::ScheduleSpec {
        name: "dusk".into(),
        task: "tasks.lights".into(),
        spec: Some(pb::Spec {
            solar: "dusk_civil".into(),
            latitude: Some(-33.87),
            longitude: Some(151.21),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = api
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(solar),
        })
        .await
        .expect("create a solar schedule")
        .into_inner();
    for (name, event, lat, lon, stored) in [
        ("dusk", "dusk_civil", -33.87, 151.21, created),
        (
            "file-sunrise",
            "sunrise",
            51.5,
            -0.12,
            get(&mut api, "file-sunrise").await,
        ),
    ] {
        let spec = stored.definition.and_then(|d| d.spec).expect("spec");
        assert_eq!(
            (spec.solar.as_str(), spec.latitude, spec.longitude),
            (event, Some(lat), Some(lon))
        );
        let engine = Spec::parse(
            &SpecInput {
                solar: SolarInput {
                    event: Some(event.into()),
                    latitude: Some(lat),
                    longitude: Some(lon),
                }
                .into(),
                ..Default::default()
            },
            now,
        )
        .expect("a solar spec");
        let created_at = instant(&stored.created_at);
        let expected = engine
            .next_after(created_at - chrono::Duration::milliseconds(1))
            .expect("an event within a day");
        assert_eq!(instant(&stored.next_run), expected, "{name}");
    }

    // The same through the CLI's `schedule create`.
    let cli = |args: &[&str]| {
        std::process::Command::new(belfry_bin())
            .args(["schedule", "create"])
            .args(args)
            .args(["--output", "json"])
            .env("BELFRY_ENDPOINT", &cluster.nodes[follower].addr)
            .env("BELFRY_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("run belfry")
    };
    let made = cli(&[
        "cli-dawn",
        "--task",
        "tasks.lights",
        "--solar",
        "dawn_civil",
        "--lat",
        "-12.05",
        "--lon",
        "-77.04",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&made.stdout).expect("JSON");
    assert_eq!(shown["spec"]["solar"], "dawn_civil");
    assert_eq!(shown["spec"]["latitude"], -12.05);
    let last = rfc3339(now - chrono::Duration::minutes(90));
    let made = cli(&[
        "cli-migrated",
        "--task",
        "tasks.migrated",
        "--every",
        "1h",
        "--catchup",
        "none",
        "--last-run-at",
        &last,
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&made.stdout).expect("JSON");
    assert_eq!(shown["last_run_at"], last.as_str());
    let refused = cli(&[
        "cli-bad", "--task", "t", "--solar", "noon", "--lat", "1", "--lon", "1",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("solar_noon"));
    // Catch-up `none`: the missed occurrence (30 min ago) is skipped, never sent.
    let skipped = wait_for(
        "the missed run to be recorded",
        Duration::from_secs(20),
        || {
            support::block(api.get_schedule(pb::GetScheduleRequest {
                name: "cli-migrated".into(),
            }))
            .filter(|stored| stored.skipped_count == 1)
        },
    );
    assert_eq!(skipped.fired_count, 0);

    // Refusals name the field.
    let mut bad = hourly("bad", pb::CatchupRule::All, 1, "2999-01-01T00:00:00Z");
    let err = api
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(bad.clone()),
        })
        .await
        .expect_err("a last run in the future");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("last_run_at"), "{}", err.message());
    bad.last_run_at = String::new();
    bad.spec = Some(pb::Spec {
        solar: "moonrise".into(),
        latitude: Some(1.0),
        longitude: Some(1.0),
        ..Default::default()
    });
    let err = api
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(bad),
        })
        .await
        .expect_err("an unknown event");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("sunrise"), "{}", err.message());
}
