//! The idempotent push against a real `redis-server`: one delivery per task id, pipelined
//! batches, script reloads, outages, passwords, database numbers, key prefixes and TLS.

mod support;

use std::time::Duration;

use belfry::dispatch::{Push, PushOutcome, RedisSink, SinkConfig, SinkError};
use redis::Commands;
use support::RedisServer;
use uuid::Uuid;

fn push(n: u128, list: &str) -> Push {
    Push {
        task_id: Uuid::from_u128(n),
        list_key: list.to_string(),
        payload: format!("message-{n}"),
    }
}

fn sink(config: SinkConfig) -> RedisSink {
    RedisSink::new(&config).expect("valid sink config")
}

#[tokio::test]
async fn same_task_id_reaches_its_queue_once() {
    let server = RedisServer::start().expect("start redis-server");
    let sink = sink(SinkConfig::new(server.url(0)));
    let batch = vec![
        push(1, "celery"),
        push(2, "celery"),
        push(1, "celery"),
        push(3, "other"),
    ];
    let outcomes = sink.push_batch(&batch).await.unwrap();
    use PushOutcome::*;
    assert_eq!(outcomes, [Delivered, Delivered, AlreadySent, Delivered]);
    let again = sink.push_batch(&batch).await.unwrap();
    assert_eq!(again, [AlreadySent; 4]);

    let mut conn = server.conn(0).expect("connect to the test redis-server");
    // LPUSH at the head, BRPOP from the tail: the tail holds the first pushed.
    let celery: Vec<String> = conn.lrange("celery", 0, -1).unwrap();
    assert_eq!(celery, ["message-2", "message-1"]);
    let other: Vec<String> = conn.lrange("other", 0, -1).unwrap();
    assert_eq!(other, ["message-3"]);
    let ttl: i64 = conn.pttl(sink.marker_key(Uuid::from_u128(1))).unwrap();
    assert!(ttl > 0 && ttl <= 24 * 3600 * 1000, "marker ttl {ttl}");
}

#[tokio::test]
async fn a_large_batch_goes_out_in_order() {
    let server = RedisServer::start().expect("start redis-server");
    let sink = sink(SinkConfig::new(server.url(0)));
    let batch: Vec<Push> = (0..5_000).map(|n| push(n, "bulk")).collect();
    let outcomes = sink.push_batch(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == PushOutcome::Delivered));
    let mut conn = server.conn(0).expect("connect to the test redis-server");
    let oldest: Vec<String> = conn.lrange("bulk", -1, -1).unwrap();
    let newest: Vec<String> = conn.lrange("bulk", 0, 0).unwrap();
    assert_eq!(
        (oldest[0].as_str(), newest[0].as_str()),
        ("message-0", "message-4999")
    );
    assert_eq!(conn.llen::<_, usize>("bulk").unwrap(), 5_000);
}

#[tokio::test]
async fn script_is_reloaded_after_a_flush() {
    let server = RedisServer::start().expect("start redis-server");
    let sink = sink(SinkConfig::new(server.url(0)));
    sink.push_batch(&[push(1, "q")]).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server.conn(0).expect("connect to the test redis-server"))
        .unwrap();
    assert_eq!(
        sink.push_batch(&[push(2, "q")]).await.unwrap(),
        [PushOutcome::Delivered]
    );
    assert_eq!(
        server
            .conn(0)
            .expect("connect to the test redis-server")
            .llen::<_, usize>("q")
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn an_outage_is_reported_and_the_sink_recovers() {
    let mut server = RedisServer::start().expect("start redis-server");
    let mut config = SinkConfig::new(server.url(0));
    config.timeout = Duration::from_millis(500);
    let sink = sink(config);
    sink.push_batch(&[push(1, "q")]).await.unwrap();

    server.kill();
    let err = sink.push_batch(&[push(2, "q")]).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");

    // A fresh, empty server on the same port: the sink reconnects by itself.
    server.restart().expect("restart redis-server");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        match sink.push_batch(&[push(2, "q")]).await {
            Ok(outcome) => break outcome,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(matches!(e, SinkError::Unavailable(_)), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("sink did not recover: {e}"),
        }
    };
    assert_eq!(outcome, [PushOutcome::Delivered]);
    assert_eq!(
        server
            .conn(0)
            .expect("connect to the test redis-server")
            .lrange::<_, Vec<String>>("q", 0, -1)
            .unwrap(),
        ["message-2"]
    );
}

#[tokio::test]
async fn password_database_and_key_prefix_are_honoured() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]).expect("start redis-server");
    let mut config = SinkConfig::new(server.url(0));
    config.password = Some("s3cret".into());
    config.db = Some(3);
    config.key_prefix = "myapp:belfry:".into();
    let sink = sink(config);
    sink.push_batch(&[push(7, "q")]).await.unwrap();
    let mut conn = server
        .conn_with_password(3, Some("s3cret"))
        .expect("connect to the test redis-server");
    assert_eq!(conn.llen::<_, usize>("q").unwrap(), 1);
    let marker = format!("myapp:belfry:sent:{}", Uuid::from_u128(7));
    assert!(conn.exists::<_, bool>(&marker).unwrap());
    assert_eq!(
        server
            .conn_with_password(0, Some("s3cret"))
            .expect("connect to the test redis-server")
            .llen::<_, usize>("q")
            .unwrap(),
        0
    );

    let wrong = RedisSink::new(&SinkConfig::new(server.url(0))).unwrap();
    let err = wrong.push_batch(&[push(8, "q")]).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("auth"), "{err}");
}

#[tokio::test]
async fn a_bad_url_is_a_configuration_error() {
    for url in ["http://localhost", "redis://host:notaport", ""] {
        let err = RedisSink::new(&SinkConfig::new(url)).err().expect(url);
        assert!(matches!(err, SinkError::Config(_)), "{url}: {err:?}");
    }
}

/// `rediss://` against a TLS-only `redis-server` whose certificate a private CA signed.
#[tokio::test]
async fn tls_urls_connect_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::openssl_pki(dir.path());
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let port = support::free_port();
    let port_arg = port.to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &port_arg,
        "--tls-cert-file",
        &path(&pki.cert),
        "--tls-key-file",
        &path(&pki.key),
        "--tls-ca-cert-file",
        &path(&pki.ca),
        "--tls-auth-clients",
        "no",
    ])
    .expect("start redis-server");

    let mut config = SinkConfig::new(format!("rediss://localhost:{port}/0"));
    config.tls_ca_file = Some(pki.ca.clone());
    let sink = sink(config);
    let batch = [push(1, "tls")];
    let outcome = wait_for_async(|| sink.push_batch(&batch)).await;
    assert_eq!(outcome, [PushOutcome::Delivered]);
    // The plain port of the same server sees what went over TLS.
    assert_eq!(
        server
            .conn(0)
            .expect("connect to the test redis-server")
            .llen::<_, usize>("tls")
            .unwrap(),
        1
    );

    // Without the CA the server's certificate is not trusted.
    let untrusted =
        RedisSink::new(&SinkConfig::new(format!("rediss://localhost:{port}/0"))).unwrap();
    assert!(untrusted.push_batch(&[push(2, "tls")]).await.is_err());
}

async fn wait_for_async<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    mut attempt: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if std::time::Instant::now() > deadline => panic!("gave up: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
