//! Connections that send nothing cannot take a node down or out of its cluster. A follower of
//! a real three-node cluster, started with a small open-files limit, receives far more idle
//! TCP connections than it may open files: it keeps serving API calls on new connections,
//! keeps replicating, closes the idle connections itself, and says that it refused some.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use belfry::api::client::{ApiClient, ClientConfig};
use belfry::api::pb;
use support::procs::ADMIN_TOKEN;
use support::{block, wait_for, RedisServer};

/// The flooded node's open-files limit: a container's usual 1024, scaled down so the test needs
/// few sockets of its own.
const FILES_LIMIT: u64 = 256;
/// Idle connections opened: well past that limit.
const IDLE: usize = 600;

/// A client of `addr` that gives up quickly, on a connection of its own.
fn quick_client(addr: &str) -> ApiClient {
    ApiClient::new(&ClientConfig {
        endpoint: addr.to_string(),
        token: Some(ADMIN_TOKEN.into()),
        tls_ca: None,
        timeout: Some(Duration::from_secs(2)),
    })
    .expect("api client")
}

/// Whether the other end has closed `stream` (end of stream or reset), reading past whatever
/// it sent before closing (an HTTP/2 server opens with its SETTINGS frame).
fn closed(mut stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) => return err.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_exhaust_a_node_nor_take_it_out_of_the_cluster() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(
        3,
        &redis.url(0),
        "",
        "[connections]\nhandshake_timeout_ms = 2000\n",
    );
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let target = (leader + 1) % 3;
    cluster.kill(target);
    cluster.nodes[target].files_limit = Some(FILES_LIMIT);
    cluster.spawn(target).expect("start a node");
    let addr = cluster.nodes[target].addr.clone();
    wait_for(
        "the restarted node to answer",
        Duration::from_secs(30),
        || {
            block(
                quick_client(&addr)
                    .cluster
                    .get_status(pb::GetStatusRequest {}),
            )
            .filter(|s| s.leader_id != 0)
        },
    );

    let socket: SocketAddr = addr.parse().expect("socket address");
    let idle: Vec<TcpStream> = (0..IDLE)
        .filter_map(|_| TcpStream::connect_timeout(&socket, Duration::from_secs(2)).ok())
        .collect();
    assert!(idle.len() > FILES_LIMIT as usize, "opened {}", idle.len());

    // It serves API calls on new connections while the idle ones are held open.
    wait_for(
        "an API call to the flooded node",
        Duration::from_secs(30),
        || {
            block(
                quick_client(&addr)
                    .cluster
                    .get_status(pb::GetStatusRequest {}),
            )
        },
    );

    // It stays in the cluster: a schedule written through the leader is read through it (a
    // read that waits for the node to apply the leader's latest entries).
    let now_leading = cluster.leader().unwrap_or(leader);
    let leader_addr = cluster.nodes[now_leading].addr.clone();
    quick_client(&leader_addr)
        .schedules
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(pb::ScheduleSpec {
                name: "after-the-flood".into(),
                task: "belfry_test.record".into(),
                spec: Some(pb::Spec {
                    every: "1h".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create through the leader");
    wait_for(
        "the flooded node to serve the new schedule",
        Duration::from_secs(30),
        || {
            block(
                quick_client(&addr)
                    .schedules
                    .get_schedule(pb::GetScheduleRequest {
                        name: "after-the-flood".into(),
                    }),
            )
        },
    );

    // It closed the idle connections itself.
    for stream in &idle {
        stream.set_nonblocking(true).expect("non-blocking");
    }
    wait_for(
        "the node to close the idle connections",
        Duration::from_secs(30),
        || idle.iter().all(closed).then_some(()),
    );
    let log = std::fs::read_to_string(&cluster.nodes[target].log).unwrap_or_default();
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(cluster.is_running(target), "{log}");
}
