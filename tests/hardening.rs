//! Requests that once stopped a real three-node cluster, sent again: each must be refused with
//! a field-named error (or, where valid, accepted and read back by every node), and after every
//! one all nodes stay healthy and a one-second heartbeat keeps reaching Redis.

mod support;

use std::time::Duration;

use belfry::api::client::Intercepted;
use belfry::api::pb;
use belfry::api::pb::schedules_client::SchedulesClient;
use support::metrics::http_get;
use support::procs::{Clients, Consumer, ProcCluster, Signal, ADMIN_TOKEN};
use support::{wait_for, RedisServer};
use tonic::Code;
use tonic_types::StatusExt;

const HEARTBEAT_QUEUE: &str = "hardening-heartbeat";

fn heartbeat_file() -> String {
    format!(
        "[[schedule]]\nname = \"heartbeat\"\ntask = \"hardening.beat\"\nevery = \"1s\"\n\
         options = {{ queue = \"{HEARTBEAT_QUEUE}\" }}\n"
    )
}

fn field_of(status: &tonic::Status) -> String {
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

fn definition(name: &str) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: name.into(),
        task: "hardening.probe".into(),
        spec: Some(pb::Spec {
            every: "1h".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn nested_json(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every node answers `/healthz` and `/readyz` with 200, and the heartbeat reaches Redis
/// after `since`: the cluster is whole and dispatching.
fn assert_healthy_and_dispatching(
    cluster: &ProcCluster,
    consumer: &Consumer,
    since: chrono::DateTime<chrono::Utc>,
    after: &str,
) {
    for node in &cluster.nodes {
        wait_for(
            &format!("node {} healthy and ready after {after}", node.id),
            Duration::from_secs(30),
            || {
                let healthy = http_get(&node.metrics_addr, "/healthz")?.0 == 200;
                let ready = http_get(&node.metrics_addr, "/readyz")?.0 == 200;
                (healthy && ready).then_some(())
            },
        );
    }
    wait_for(
        &format!("a heartbeat after {after}"),
        Duration::from_secs(30),
        || {
            consumer
                .arrivals()
                .iter()
                .any(|a| a.schedule == "heartbeat" && a.arrived_at > since)
                .then_some(())
        },
    );
}

async fn refused(
    client: &mut SchedulesClient<Intercepted>,
    def: pb::ScheduleSpec,
) -> tonic::Status {
    client
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(def),
        })
        .await
        .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_stops_the_cluster() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), &heartbeat_file(), "");
    let consumer = Consumer::start(&redis.url(0), HEARTBEAT_QUEUE);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = (leader + 1) % 3;
    assert_healthy_and_dispatching(&cluster, &consumer, chrono::Utc::now(), "start");
    let mut via_leader = cluster.client(leader, Some(ADMIN_TOKEN)).schedules;
    let mut via_follower = cluster.client(follower, Some(ADMIN_TOKEN)).schedules;

    // The README's options example, through a follower: stored and read back by every node.
    let since = chrono::Utc::now();
    let mut readme = definition("readme-options");
    readme.options = Some(pb::TaskOptions {
        queue: Some("reports".into()),
        priority: Some(3),
        expires_after_seconds: Some(3600.0),
        ..Default::default()
    });
    via_follower
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(readme),
        })
        .await
        .expect("the README's options are accepted");
    for i in 0..3 {
        let stored = cluster
            .client(i, Some(ADMIN_TOKEN))
            .schedules
            .get_schedule(pb::GetScheduleRequest {
                name: "readme-options".into(),
            })
            .await
            .expect("every node reads it");
        let options = stored.into_inner().definition.unwrap().options.unwrap();
        assert_eq!(options.expires_after_seconds, Some(3600.0));
    }
    assert_healthy_and_dispatching(&cluster, &consumer, since, "numeric expires");

    // The same options from the schedules file, reloaded with SIGHUP.
    let since = chrono::Utc::now();
    let file = format!(
        "{}\n[[schedule]]\nname = \"readme-file\"\ntask = \"reports.build\"\nevery = \"1h\"\n\
         options = {{ queue = \"reports\", priority = 3, expires = 3600 }}\n",
        heartbeat_file()
    );
    std::fs::write(&cluster.schedules, file).expect("rewrite the schedules file");
    cluster.signal(leader, Signal::Hup);
    wait_for("the file's schedule", Duration::from_secs(20), || {
        support::block(via_follower.get_schedule(pb::GetScheduleRequest {
            name: "readme-file".into(),
        }))
    });
    assert_healthy_and_dispatching(&cluster, &consumer, since, "numeric expires in the file");

    // Arguments nested past the limit, through the leader and through a follower.
    let since = chrono::Utc::now();
    for (client, via) in [(&mut via_leader, "leader"), (&mut via_follower, "follower")] {
        let mut deep = definition("deep-args");
        deep.args_json = nested_json(121);
        let status = refused(client, deep).await;
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "via the {via}: {status:?}"
        );
        assert_eq!(field_of(&status), "args", "via the {via}");
    }
    assert_healthy_and_dispatching(&cluster, &consumer, since, "deep arguments");

    // A catch-up window no instant arithmetic can hold.
    let since = chrono::Utc::now();
    let mut huge = definition("huge-window");
    huge.catchup = Some(pb::CatchupPolicy {
        rule: pb::CatchupRule::All as i32,
        window_seconds: 10_000_000_000_000,
    });
    let status = refused(&mut via_follower, huge).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_of(&status), "catchup.window");
    assert_healthy_and_dispatching(&cluster, &consumer, since, "a huge catch-up window");

    // A leap second.
    let mut leap = definition("leap");
    leap.spec = Some(pb::Spec {
        once: "2030-01-01T00:00:60Z".into(),
        ..Default::default()
    });
    let status = refused(&mut via_leader, leap).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_of(&status), "spec.once");

    // A write sent straight to the peer protocol, past the API's own checks: the leader
    // validates it where it applies it.
    let since = chrono::Utc::now();
    let refusal = forward_unchecked_create(&cluster, leader, "bad name with spaces \u{2603}").await;
    assert!(
        matches!(&refusal, Err(belfry::api::ApiError::InvalidArgument { field, .. }) if field == "name"),
        "an invalid forwarded create answered {refusal:?}"
    );
    let listed = via_leader
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed
            .schedules
            .iter()
            .all(|s| !s.definition.as_ref().unwrap().name.contains(' ')),
        "the invalid name was stored"
    );
    assert_healthy_and_dispatching(&cluster, &consumer, since, "an unchecked forwarded write");

    // Bytes that are not the protobuf message the method takes: the caller's error.
    for (what, body) in [
        ("truncated", vec![0x0a, 0x64, 0x0a, 0x02]),
        ("invalid UTF-8", vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe]),
    ] {
        let status = raw_call(
            &cluster,
            follower,
            "/belfry.v1.Schedules/CreateSchedule",
            body,
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }

    // Every node restarts from its data directory and reads its whole log back.
    for i in 0..3 {
        cluster.kill(i);
        cluster.spawn(i).expect("start a node");
        let since = chrono::Utc::now();
        assert_healthy_and_dispatching(&cluster, &consumer, since, "a restart");
    }
}

/// Sends a create for `name` to node `leader`'s peer service as a follower would forward it
/// (with the cluster's secret), without the API's validation in between.
async fn forward_unchecked_create(
    cluster: &ProcCluster,
    leader: usize,
    name: &str,
) -> Result<serde_json::Value, belfry::api::ApiError> {
    use belfry::api::control::{Forwarded, LeaderRequest, WriteOp};
    let mut def = belfry::api::schedule_def(&definition("placeholder")).expect("a definition");
    def.name = name.into();
    let forwarded = Forwarded::now(LeaderRequest::Write(Box::new(WriteOp::Create {
        def,
        incarnation: uuid::Uuid::new_v4(),
    })));
    let payload = serde_json::to_vec(&forwarded).expect("encode");
    let network = support::procs::peer_network();
    let node = &cluster.nodes[leader];
    let reply = network
        .forward(node.id, &node.addr, payload, Duration::from_secs(10))
        .await
        .expect("the leader answers");
    serde_json::from_slice(&reply).expect("a reply")
}

/// Calls `method` on node `i` with `body` as the request message, as it is: returns the status
/// the node answered with.
async fn raw_call(
    cluster: &ProcCluster,
    i: usize,
    method: &'static str,
    body: Vec<u8>,
) -> tonic::Status {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.nodes[i].addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
    );
    grpc.unary(
        request,
        tonic::codegen::http::uri::PathAndQuery::from_static(method),
        RawCodec,
    )
    .await
    .expect_err("refused")
}

/// Sends a request's bytes unchanged; answers are never read (the calls fail).
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, _: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        Ok(Some(()))
    }
}
