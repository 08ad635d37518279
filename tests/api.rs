//! The gRPC API through a real three-node cluster of `belfry server` processes and a real
//! `redis-server`: every RPC, writes sent to followers, optimistic concurrency, validation
//! errors naming their field, tokens and roles, pause/resume with the catch-up policy, cluster
//! administration, health and reflection.

mod support;

use std::time::Duration;

use belfry::api::client::Intercepted;
use belfry::api::pb;
use belfry::api::pb::schedules_client::SchedulesClient;
use belfry_kit::Shared;
use support::procs::{Clients, Consumer, ProcCluster, ADMIN_TOKEN, READONLY_TOKEN};
use support::{block, wait_for, RedisServer};
use tonic::Code;
use tonic_types::StatusExt;

/// One cluster at a time: each runs three nodes on two shared cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const QUEUE: &str = "api-test";

fn spec(name: &str, every: &str) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: name.into(),
        task: "belfry_test.record".into(),
        spec: Some(pb::Spec {
            every: every.into(),
            ..Default::default()
        }),
        args_json: format!("[\"{name}\"]"),
        options: Some(pb::TaskOptions {
            queue: Some(QUEUE.into()),
            ..Default::default()
        }),
        labels: [("team".to_string(), "data".to_string())].into(),
        ..Default::default()
    }
}

/// A fresh three-node cluster holding one hourly schedule, `name`, and an admin client of its
/// leader (with the leader's index).
async fn cluster_with_one_schedule(
    name: &str,
) -> (
    RedisServer,
    ProcCluster,
    usize,
    SchedulesClient<Intercepted>,
) {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let client = cluster.client(leader, Some(ADMIN_TOKEN)).schedules;
    client
        .clone()
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(spec(name, "1h")),
        })
        .await
        .expect("create");
    (redis, cluster, leader, client)
}

fn followers(cluster: &mut ProcCluster, leader: usize) -> (usize, usize) {
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != leader).collect();
    (others[0], others[1])
}

fn field_of(status: &tonic::Status) -> String {
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

/// The cluster the schedule RPC cases share, started by the first of them; each case uses
/// schedule names of its own. Its processes are stopped when the test binary exits.
static SHARED: Shared<(RedisServer, ProcCluster)> = Shared::new();

/// Admin clients of the shared cluster's two followers, and its Redis URL.
fn shared_followers() -> (
    SchedulesClient<Intercepted>,
    SchedulesClient<Intercepted>,
    String,
) {
    let mut shared = SHARED.get_or_init(|| {
        let redis = RedisServer::start().expect("start redis-server");
        let cluster = support::procs::start(3, &redis.url(0), "", "");
        (redis, cluster)
    });
    let (redis, cluster) = shared.as_mut().expect("the shared cluster runs");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let (f1, f2) = followers(cluster, leader);
    (
        cluster.client(f1, Some(ADMIN_TOKEN)).schedules,
        cluster.client(f2, Some(ADMIN_TOKEN)).schedules,
        redis.url(0),
    )
}

async fn create(client: &mut SchedulesClient<Intercepted>, name: &str) {
    client
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(spec(name, "1h")),
        })
        .await
        .expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_through_a_follower_is_read_at_once_on_another() {
    let _serial = SERIAL.lock().await;
    let (mut via_follower, mut via_other, _) = shared_followers();
    let created = via_follower
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(spec("create-a", "1h")),
        })
        .await
        .expect("create through a follower")
        .into_inner();
    assert_eq!(created.revision, 1);
    assert!(created.next_run.is_some());
    let read = via_other
        .get_schedule(pb::GetScheduleRequest {
            name: "create-a".into(),
        })
        .await
        .expect("linearizable read on another follower")
        .into_inner();
    assert_eq!(read.incarnation, created.incarnation);
    let again = via_other
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(spec("create-a", "1h")),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_check_the_expected_revision() {
    let _serial = SERIAL.lock().await;
    let (mut via_follower, _, _) = shared_followers();
    create(&mut via_follower, "revision-a").await;
    let mut changed = spec("revision-a", "30m");
    changed.description = "every half hour".into();
    let stale = via_follower
        .update_schedule(pb::UpdateScheduleRequest {
            schedule: Some(changed.clone()),
            expected_revision: Some(7),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    let updated = via_follower
        .update_schedule(pb::UpdateScheduleRequest {
            schedule: Some(changed),
            expected_revision: Some(1),
        })
        .await
        .expect("update at the current revision")
        .into_inner();
    assert_eq!(updated.revision, 2);
    assert_eq!(
        updated.definition.as_ref().unwrap().description,
        "every half hour"
    );
    let missing = via_follower
        .update_schedule(pb::UpdateScheduleRequest {
            schedule: Some(spec("nope", "1h")),
            expected_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_a_prefix_and_filters_by_label() {
    let _serial = SERIAL.lock().await;
    let (_, mut via_other, _) = shared_followers();
    for name in ["list-a", "list-b", "list-c", "list-d", "listing-other"] {
        create(&mut via_other, name).await;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = via_other
            .list_schedules(pb::ListSchedulesRequest {
                page_size: 2,
                page_token: token.clone(),
                name_prefix: "list-".into(),
                labels: Default::default(),
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.schedules.len() <= 2);
        names.extend(
            page.schedules
                .iter()
                .map(|s| s.definition.as_ref().unwrap().name.clone()),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["list-a", "list-b", "list-c", "list-d"]);
    let none = via_other
        .list_schedules(pb::ListSchedulesRequest {
            labels: [("team".to_string(), "ops".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("list by label")
        .into_inner();
    assert!(none.schedules.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_a_stored_schedule_and_a_spec_not_yet_stored() {
    let _serial = SERIAL.lock().await;
    let (mut via_follower, _, _) = shared_followers();
    via_follower
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(spec("preview-a", "30m")),
        })
        .await
        .expect("create");
    let stored = via_follower
        .preview_schedule(pb::PreviewScheduleRequest {
            target: Some(pb::preview_schedule_request::Target::Name(
                "preview-a".into(),
            )),
            count: 3,
            after: String::new(),
        })
        .await
        .expect("preview stored")
        .into_inner();
    assert_eq!(stored.occurrences.len(), 3);
    let gap = stored.occurrences[1].seconds - stored.occurrences[0].seconds;
    assert_eq!(gap, 1800);
    let adhoc = via_follower
        .preview_schedule(pb::PreviewScheduleRequest {
            target: Some(pb::preview_schedule_request::Target::Spec(pb::Spec {
                cron: "30 2 * * *".into(),
                timezone: "America/New_York".into(),
                ..Default::default()
            })),
            count: 2,
            after: "2025-03-08T12:00:00Z".into(),
        })
        .await
        .expect("preview a spec")
        .into_inner();
    // 02:30 does not exist on 2025-03-09 in New York: it fires at the jump, 07:00Z.
    assert_eq!(adhoc.occurrences[0].seconds, 1_741_503_600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_trigger_reaches_redis_once_and_is_in_the_history() {
    let _serial = SERIAL.lock().await;
    let (mut via_follower, mut via_other, redis_url) = shared_followers();
    let consumer = Consumer::start(&redis_url, QUEUE);
    create(&mut via_follower, "trigger-a").await;
    let triggered = via_follower
        .trigger_schedule(pb::ScheduleName {
            name: "trigger-a".into(),
        })
        .await
        .expect("trigger")
        .into_inner();
    wait_for(
        "the triggered run in Redis",
        Duration::from_secs(20),
        || {
            consumer
                .arrivals()
                .iter()
                .any(|a| a.task_id == triggered.task_id)
                .then_some(())
        },
    );
    let runs = wait_for("the run recorded as sent", Duration::from_secs(20), || {
        let runs = block(via_other.list_runs(pb::ListRunsRequest {
            name: "trigger-a".into(),
        }));
        runs.filter(|r| {
            r.runs.first().is_some_and(|run| {
                run.task_id == triggered.task_id && run.outcome == pb::RunOutcome::Sent as i32
            })
        })
    });
    assert!(runs.runs[0].manual);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_checks_the_expected_revision() {
    let _serial = SERIAL.lock().await;
    let (mut via_follower, mut via_other, _) = shared_followers();
    create(&mut via_other, "delete-a").await;
    let stale = via_other
        .delete_schedule(pb::DeleteScheduleRequest {
            name: "delete-a".into(),
            expected_revision: Some(9),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    via_other
        .delete_schedule(pb::DeleteScheduleRequest {
            name: "delete-a".into(),
            expected_revision: Some(1),
        })
        .await
        .expect("delete");
    let gone = via_follower
        .get_schedule(pb::GetScheduleRequest {
            name: "delete-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_upserts_a_set_and_prunes_only_what_its_selector_names() {
    let _serial = SERIAL.lock().await;
    let (mut via_follower, mut via_other, _) = shared_followers();
    create(&mut via_other, "apply-unselected").await;
    let applied_label = |mut s: pb::ScheduleSpec| {
        s.labels.insert("set".into(), "nightly".into());
        s
    };
    let first = via_follower
        .apply_schedules(pb::ApplySchedulesRequest {
            schedules: vec![
                applied_label(spec("nightly-1", "1h")),
                applied_label(spec("nightly-2", "1h")),
            ],
            prune: false,
            prune_selector: Default::default(),
        })
        .await
        .expect("apply")
        .into_inner();
    assert_eq!((first.created, first.updated, first.unchanged), (2, 0, 0));
    let second = via_other
        .apply_schedules(pb::ApplySchedulesRequest {
            schedules: vec![
                applied_label(spec("nightly-1", "1h")),
                applied_label(spec("nightly-3", "2h")),
            ],
            prune: true,
            prune_selector: [("set".to_string(), "nightly".to_string())].into(),
        })
        .await
        .expect("apply with prune")
        .into_inner();
    assert_eq!(
        (
            second.created,
            second.updated,
            second.unchanged,
            second.deleted
        ),
        (1, 0, 1, 1)
    );
    let still_there = via_other
        .get_schedule(pb::GetScheduleRequest {
            name: "apply-unselected".into(),
        })
        .await;
    assert!(still_there.is_ok(), "prune touched an unselected schedule");
}

/// Found by the chaos harness (an edit retried after a timeout was refused as stale): an update
/// that names no revision means "whatever is stored now" and must not fail because another
/// write to the schedule landed between the leader's read and its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_without_a_revision_survive_concurrent_writes_to_the_schedule() {
    let _serial = SERIAL.lock().await;
    let (_redis, _cluster, _, client) = cluster_with_one_schedule("contended").await;

    // Concurrent writers land in the same Raft entries, so most of them read a revision that
    // another one changes before their own write applies.
    const UPDATES: usize = 24;
    let mut calls = tokio::task::JoinSet::new();
    for k in 0..UPDATES {
        let mut updater = client.clone();
        calls.spawn(async move {
            let mut def = spec("contended", "1h");
            def.description = format!("edit {k}");
            updater
                .update_schedule(pb::UpdateScheduleRequest {
                    schedule: Some(def),
                    expected_revision: None,
                })
                .await
        });
        let mut toggler = client.clone();
        let pause = k % 2 == 0;
        calls.spawn(async move {
            let name = "contended".to_string();
            if pause {
                toggler.pause_schedule(pb::ScheduleName { name }).await
            } else {
                toggler.resume_schedule(pb::ScheduleName { name }).await
            }
        });
    }
    let mut refused = Vec::new();
    while let Some(result) = calls.join_next().await {
        if let Err(status) = result.expect("call task") {
            refused.push(status);
        }
    }
    assert!(refused.is_empty(), "writes refused: {refused:?}");
    let stored = client
        .clone()
        .get_schedule(pb::GetScheduleRequest {
            name: "contended".into(),
        })
        .await
        .expect("get")
        .into_inner();
    // Each update changes the description (one revision each); a pause or resume adds one
    // only when it changes the state.
    assert!(
        (1 + UPDATES as u64..=1 + 2 * UPDATES as u64).contains(&stored.revision),
        "revision {} after {UPDATES} updates",
        stored.revision
    );
    let description = stored.definition.map(|d| d.description).unwrap_or_default();
    assert!(
        description.starts_with("edit "),
        "the stored definition is one of the edits: {description:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_dispatch_and_resume_applies_the_catchup_policy() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let (f1, _) = followers(&mut cluster, leader);
    let mut api = cluster.client(f1, Some(ADMIN_TOKEN)).schedules;
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    let mut latest = spec("tick", "1s");
    latest.catchup = Some(pb::CatchupPolicy {
        rule: pb::CatchupRule::Latest as i32,
        window_seconds: 3600,
    });
    api.create_schedule(pb::CreateScheduleRequest {
        schedule: Some(latest),
    })
    .await
    .expect("create");
    wait_for("the first runs", Duration::from_secs(20), || {
        (consumer.arrivals().len() >= 2).then_some(())
    });
    let paused = api
        .pause_schedule(pb::ScheduleName {
            name: "tick".into(),
        })
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.definition.as_ref().unwrap().enabled, Some(false));
    assert!(paused.next_run.is_none());
    // Anything committed before the pause has been pushed within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = consumer.arrivals().len();
    let paused_at = chrono::Utc::now();
    // Several occurrences fall inside the pause.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        consumer.arrivals().len(),
        before,
        "a paused schedule dispatched"
    );
    let resumed_at = chrono::Utc::now();
    api.resume_schedule(pb::ScheduleName {
        name: "tick".into(),
    })
    .await
    .expect("resume");
    // Policy `latest`: of the occurrences missed while paused, only the newest is dispatched;
    // the others are recorded as skipped.
    let runs = wait_for("the skip recorded", Duration::from_secs(20), || {
        block(api.list_runs(pb::ListRunsRequest {
            name: "tick".into(),
        }))
        .filter(|r| {
            r.runs
                .iter()
                .any(|run| run.skip_reason == "superseded_by_latest")
        })
    });
    assert!(runs
        .runs
        .iter()
        .any(|r| r.outcome == pb::RunOutcome::Skipped as i32));
    wait_for("dispatch to resume", Duration::from_secs(20), || {
        (consumer.arrivals().len() >= before + 2).then_some(())
    });
    let missed: Vec<_> = consumer
        .arrivals()
        .into_iter()
        .skip(before)
        .filter(|a| a.scheduled_at > paused_at && a.scheduled_at < resumed_at)
        .collect();
    assert!(
        missed.len() <= 1,
        "policy latest dispatched {} missed occurrences: {missed:?}",
        missed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_missing_credentials_are_refused_clearly() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let mut admin = cluster.client(0, Some(ADMIN_TOKEN)).schedules;

    let invalid = |mut s: pb::ScheduleSpec, edit: fn(&mut pb::ScheduleSpec)| {
        edit(&mut s);
        pb::CreateScheduleRequest { schedule: Some(s) }
    };
    let cases: Vec<(&str, pb::CreateScheduleRequest)> = vec![
        (
            "cron",
            invalid(spec("bad-cron", "1h"), |s| {
                s.spec = Some(pb::Spec {
                    cron: "61 * * * *".into(),
                    ..Default::default()
                })
            }),
        ),
        (
            "tz",
            invalid(spec("bad-zone", "1h"), |s| {
                s.spec = Some(pb::Spec {
                    cron: "0 * * * *".into(),
                    timezone: "Mars/Olympus".into(),
                    ..Default::default()
                })
            }),
        ),
        (
            "args",
            invalid(spec("big-args", "1h"), |s| {
                s.args_json = format!("[\"{}\"]", "x".repeat(60_000));
                s.kwargs_json = format!("{{\"k\": \"{}\"}}", "y".repeat(10_000));
            }),
        ),
        ("name", invalid(spec("bad name!", "1h"), |_| {})),
        (
            "options.priority",
            invalid(spec("bad-priority", "1h"), |s| {
                s.options.as_mut().unwrap().priority = Some(12)
            }),
        ),
        (
            "control.overlap",
            invalid(spec("bad-overlap", "1h"), |s| {
                s.control = Some(pb::RunControl {
                    overlap: "sometimes".into(),
                    ..Default::default()
                })
            }),
        ),
        (
            "control.max_concurrent",
            invalid(spec("concurrent-without-limit", "1h"), |s| {
                s.control = Some(pb::RunControl {
                    max_concurrent: Some(2),
                    ..Default::default()
                })
            }),
        ),
        (
            "control.pause_after_failures",
            invalid(spec("pause-after-none", "1h"), |s| {
                s.control = Some(pb::RunControl {
                    pause_after_failures: Some(0),
                    ..Default::default()
                })
            }),
        ),
    ];
    for (field, request) in cases {
        let status = admin.create_schedule(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            field_of(&status).contains(field),
            "expected the field {field:?} to be named, got {:?} ({})",
            field_of(&status),
            status.message()
        );
    }
    let big_page = admin
        .list_schedules(pb::ListSchedulesRequest {
            page_size: 5_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&big_page), "page_size");
    // Run control that needs outcomes, on a cluster without a result backend.
    let mut controlled = spec("needs-outcomes", "1h");
    controlled.control = Some(pb::RunControl {
        overlap: "skip".into(),
        ..Default::default()
    });
    let status = admin
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(controlled),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("control.overlap")
            && status.message().contains("--result-backend"),
        "{status:?}"
    );

    // No token, an unknown token, a read-only token writing.
    let mut anonymous = cluster.client(1, None).schedules;
    let status = anonymous
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut wrong = cluster.client(1, Some("not-a-token")).schedules;
    let status = wrong
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut reader = cluster.client(2, Some(READONLY_TOKEN)).schedules;
    reader
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .expect("a read-only token reads");
    let status = reader
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(spec("from-reader", "1h")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut reader_cluster = cluster.client(2, Some(READONLY_TOKEN)).cluster;
    let status = reader_cluster
        .transfer_leader(pb::TransferLeaderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// A write forwarded by a follower can reach the leader long after it was sent (a partition
/// held its packets), after its caller gave up and moved on. Seen in a chaos run as a newer
/// edit silently undone: the leader must refuse to start such a write, and still run one that
/// arrives in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_that_arrives_after_its_deadline_is_not_started() {
    use belfry::api::control::{Forwarded, LeaderRequest, WriteOp};
    use belfry::api::ApiError;

    let _serial = SERIAL.lock().await;
    let (_redis, cluster, leader, client) = cluster_with_one_schedule("held-up").await;
    let def = belfry::api::schedule_def(&pb::ScheduleSpec {
        description: "edited".into(),
        ..spec("held-up", "2h")
    })
    .expect("a valid definition");
    let network = support::procs::peer_network();
    let (id, addr) = (cluster.nodes[leader].id, cluster.nodes[leader].addr.clone());
    let send = |not_after: chrono::DateTime<chrono::Utc>| {
        let forwarded = Forwarded {
            format: 1,
            request: LeaderRequest::Write(Box::new(WriteOp::Update {
                def: def.clone(),
                keep_enabled: true,
                expected_revision: None,
            })),
            not_after,
        };
        let payload = serde_json::to_vec(&forwarded).expect("encode");
        let network = network.clone();
        let addr = addr.clone();
        async move {
            let reply = network
                .forward(id, &addr, payload, Duration::from_secs(10))
                .await
                .expect("the leader answers");
            serde_json::from_slice::<Result<serde_json::Value, ApiError>>(&reply).expect("decode")
        }
    };
    let description = || async {
        client
            .clone()
            .get_schedule(pb::GetScheduleRequest {
                name: "held-up".into(),
            })
            .await
            .expect("get")
            .into_inner()
            .definition
            .map(|d| d.description)
            .unwrap_or_default()
    };

    let late = send(chrono::Utc::now() - chrono::TimeDelta::seconds(10)).await;
    assert!(
        matches!(late, Err(ApiError::DeadlineExceeded(_))),
        "late write answered {late:?}"
    );
    assert_eq!(
        description().await,
        "",
        "the late write changed the schedule"
    );

    let in_time = send(chrono::Utc::now() + chrono::TimeDelta::seconds(5)).await;
    assert!(in_time.is_ok(), "timely write answered {in_time:?}");
    assert_eq!(description().await, "edited");
}
