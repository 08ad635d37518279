//! Pushes through Redis Sentinel against real `redis-server` and `redis-sentinel` processes:
//! the sink follows the master through a SIGKILL and a failover, and with `min_replicas` no
//! confirmed push is lost with the dead master.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belfry::dispatch::{Push, RedisSink, SinkConfig};
use support::sentinel::{kill_server_on, SentinelTopology, MASTER_NAME};
use uuid::Uuid;

const BATCHES: usize = 60;
const PER_BATCH: usize = 50;
const KILL_AFTER: usize = 15;

fn batch(b: usize) -> Vec<Push> {
    (0..PER_BATCH)
        .map(|i| {
            let n = (b * PER_BATCH + i) as u128;
            Push {
                task_id: Uuid::from_u128(n + 1),
                list_key: "celery".into(),
                payload: format!("message-{n}"),
            }
        })
        .collect()
}

/// What a run saw: for each batch, when its push was confirmed.
struct Run {
    confirmed_at: Vec<Instant>,
    killed_at: Instant,
    messages: Vec<String>,
}

/// Pushes `BATCHES` batches one after another, each retried until it is confirmed, while a
/// thread SIGKILLs the master once `KILL_AFTER` are; then reads the queue on the new master.
async fn push_through_a_failover(min_replicas: u32) -> Run {
    let topology = SentinelTopology::start(2);
    let mut config = SinkConfig::new(topology.url(0));
    config.master_name = Some(MASTER_NAME.into());
    config.min_replicas = min_replicas;
    config.replica_timeout = Duration::from_millis(1_000);
    config.timeout = Duration::from_secs(2);
    let sink = RedisSink::new(&config).expect("a sentinel sink");
    let done = Arc::new(AtomicUsize::new(0));
    let master_port = topology.master_port().expect("a master");
    let killer = {
        let done = done.clone();
        std::thread::spawn(move || {
            while done.load(Ordering::SeqCst) < KILL_AFTER {
                std::thread::sleep(Duration::from_millis(1));
            }
            kill_server_on(master_port);
            Instant::now()
        })
    };
    let mut confirmed_at = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for b in 0..BATCHES {
        let pushes = batch(b);
        loop {
            match sink.push_batch(&pushes).await {
                Ok(outcomes) => {
                    assert_eq!(outcomes.len(), PER_BATCH);
                    break;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "batch {b} never went through: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        confirmed_at.push(Instant::now());
        done.store(b + 1, Ordering::SeqCst);
    }
    let killed_at = killer.join().expect("the killer thread");
    let new_master = topology.master_port().expect("a new master");
    assert_ne!(new_master, master_port, "the sentinels promoted a replica");
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{new_master}/0"))
        .and_then(|c| c.get_connection())
        .expect("connect to the new master");
    let messages: Vec<String> = redis::cmd("LRANGE")
        .arg("celery")
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("read the queue");
    Run {
        confirmed_at,
        killed_at,
        messages,
    }
}

fn count(messages: &[String], n: usize) -> usize {
    let wanted = format!("message-{n}");
    messages.iter().filter(|m| **m == wanted).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_replicas_every_confirmed_push_survives_a_master_failover() {
    let run = push_through_a_failover(1).await;
    for n in 0..BATCHES * PER_BATCH {
        assert_eq!(
            count(&run.messages, n),
            1,
            "message {n}: with min_replicas every push arrives exactly once on the new master"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_min_replicas_only_the_last_moment_before_the_kill_can_be_lost() {
    let run = push_through_a_failover(0).await;
    let mut lost = 0;
    for n in 0..BATCHES * PER_BATCH {
        let seen = count(&run.messages, n);
        assert!(seen <= 1, "message {n} arrived {seen} times");
        if seen == 0 {
            lost += 1;
            // Redis streams each write to its replicas as it happens: only what the master
            // took just before it died can be missing from the replica it promoted.
            let confirmed = run.confirmed_at[n / PER_BATCH];
            assert!(
                confirmed + Duration::from_secs(1) >= run.killed_at,
                "message {n}, confirmed {:?} before the kill, was lost",
                run.killed_at.saturating_duration_since(confirmed)
            );
        }
    }
    eprintln!(
        "lost without min_replicas: {lost} of {}",
        BATCHES * PER_BATCH
    );
}
