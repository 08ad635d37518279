//! Pushes through Redis Sentinel against real `redis-server` and `redis-sentinel` processes:
//! the sink follows the master through a SIGKILL and a failover, and with `min_replicas` no
//! confirmed push is lost with the dead master.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belfry::dispatch::{Push, RedisSink, SinkConfig};
use belfry_kit::sentinel::{sigkill, SentinelOptions, SentinelTopology, MASTER_NAME};
use uuid::Uuid;

/// One topology at a time: each is six Redis processes, and two cores are shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _serial = SERIAL.lock().await;
    let topology = SentinelTopology::start(SentinelOptions::new(2)).expect("a sentinel topology");
    let mut config = SinkConfig::new(topology.url(0));
    config.master_name = Some(MASTER_NAME.into());
    config.min_replicas = min_replicas;
    config.replica_timeout = Duration::from_millis(1_000);
    config.timeout = Duration::from_secs(2);
    let sink = RedisSink::new(&config).expect("a sentinel sink");
    let done = Arc::new(AtomicUsize::new(0));
    let master = topology.master().expect("a master");
    let master_pid = topology.servers()[master]
        .redis
        .pid()
        .expect("the master runs");
    let killer = {
        let done = done.clone();
        std::thread::spawn(move || {
            while done.load(Ordering::SeqCst) < KILL_AFTER {
                std::thread::sleep(Duration::from_millis(1));
            }
            sigkill(master_pid).expect("SIGKILL the master");
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
    let new_master = topology.wait_for_new_master(master).expect("a failover");
    let mut conn = topology.servers()[new_master]
        .redis
        .conn(0)
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

/// A real cluster pushing through Sentinel with `min_replicas = 1`, a consumer and a real
/// Celery worker both following the master: the master is SIGKILLed during steady dispatch,
/// and every occurrence arrives exactly once, the worker running tasks on both sides of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_and_a_celery_worker_follow_the_master_through_a_failover() {
    use belfry_kit::schedules::{self, Schedule};
    use chrono::{DurationRound, TimeDelta, Utc};
    use std::collections::BTreeMap;
    use support::procs::check;
    use support::{wait_for, CeleryWorker};

    const QUEUE: &str = "followed";
    let _serial = SERIAL.lock().await;
    let mut topology =
        SentinelTopology::start(SentinelOptions::new(2)).expect("a sentinel topology");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(5);
    let names = ["sentinel-a", "sentinel-b", "sentinel-c"];
    let mut entries: Vec<Schedule> = names
        .iter()
        .map(|name| {
            Schedule::new(name, "belfry_test.record")
                .every("1s")
                .start_at(t0)
                .queue(QUEUE)
        })
        .collect();
    entries.push(
        Schedule::new("sentinel-worker", "belfry_test.record")
            .every("1s")
            .start_at(t0),
    );
    let config = format!("[redis]\nmaster_name = \"{MASTER_NAME}\"\nmin_replicas = 1\n");
    let cluster = support::procs::start(3, &topology.url(0), &schedules::file(&entries), &config);
    let consumer = belfry_kit::Consumer::following(topology.master_locator(0), QUEUE);
    let mut worker = CeleryWorker::start_with(
        &topology.url(0),
        &topology.url(1),
        &["celery"],
        &[("BELFRY_TEST_MASTER_NAME", MASTER_NAME)],
    );
    wait_for("steady dispatch", Duration::from_secs(60), || {
        (consumer.arrivals().len() >= 3 * names.len()).then_some(())
    });
    let killed_at = Utc::now();
    topology
        .kill_master_and_wait_for_failover()
        .expect("a failover");
    let to = Utc::now() + TimeDelta::seconds(4);
    wait_for("the window to pass", Duration::from_secs(60), || {
        (Utc::now() > to + TimeDelta::seconds(1)).then_some(())
    });
    let expected: BTreeMap<String, Vec<chrono::DateTime<Utc>>> = names
        .iter()
        .map(|name| {
            let instants = (0..)
                .map(|k| t0 + TimeDelta::seconds(k))
                .take_while(|t| *t <= to)
                .collect();
            (name.to_string(), instants)
        })
        .collect();
    let report = wait_for("every occurrence", Duration::from_secs(60), || {
        let report = check(&consumer.arrivals(), &expected, t0, to);
        report.missing.is_empty().then_some(report)
    });
    report.assert_exactly_once(&format!(
        "master killed at {killed_at}\n{}",
        cluster.log_text()
    ));
    // The dispatch pause a Redis failover costs: the latest delivery across it.
    eprintln!(
        "Redis master failover: {} occurrences once each, max lateness {} ms",
        report.delivered,
        report.max_lateness.num_milliseconds()
    );

    // The worker ran the fourth schedule's tasks before and after the failover, each once.
    let backend = topology.master().expect("a master");
    let mut results = topology.servers()[backend]
        .redis
        .conn(1)
        .expect("connect to the new master");
    let after = killed_at + TimeDelta::seconds(3);
    let ran = wait_for(
        "the worker to run after the failover",
        Duration::from_secs(60),
        || {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("celery-task-meta-*")
                .query(&mut results)
                .ok()?;
            let instants: Vec<String> = keys
                .iter()
                .filter_map(|k| redis::cmd("GET").arg(k).query::<String>(&mut results).ok())
                .filter_map(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
                .filter_map(|v| {
                    v["result"]["belfry_scheduled_at"]
                        .as_str()
                        .map(String::from)
                })
                .collect();
            let late = instants
                .iter()
                .filter_map(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .any(|at| at.to_utc() > after);
            late.then_some(instants)
        },
    );
    let mut distinct = ran.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ran.len(), "a task ran twice: {ran:?}");
    worker.stop();
}

/// Sentinels that require a password: a sink without it, or with a wrong one, fails at once
/// with an error naming the setting (not a hang, not a bare NOAUTH); with it, pushes reach the
/// master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinels_password_is_sent_and_a_wrong_one_is_named() {
    let _serial = SERIAL.lock().await;
    let topology = SentinelTopology::start(SentinelOptions {
        sentinel_password: Some("sentinel-secret-1".into()),
        ..SentinelOptions::new(1)
    })
    .expect("a sentinel topology with a password");
    let sink_with = |password: Option<&str>| {
        let mut config = SinkConfig::new(topology.url(0));
        config.master_name = Some(MASTER_NAME.into());
        config.sentinel_password = password.map(str::to_string);
        config.timeout = Duration::from_secs(2);
        RedisSink::new(&config).expect("a sentinel sink")
    };
    for (password, expected) in [
        (None, "requires a password: set [redis] sentinel_password"),
        (
            Some("not-the-password"),
            "refused the password in [redis] sentinel_password",
        ),
    ] {
        let sink = sink_with(password);
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(20), sink.push_batch(&batch(0)))
            .await
            .expect("a refused password is an error, not a hang")
            .expect_err("the sentinels refuse the call");
        assert!(err.to_string().contains(expected), "{password:?}: {err}");
        eprintln!("sentinel password {password:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{password:?}: the error took {:?}",
            started.elapsed()
        );
    }
    let sink = sink_with(Some("sentinel-secret-1"));
    let outcomes = sink.push_batch(&batch(0)).await.expect("pushed");
    assert_eq!(outcomes.len(), PER_BATCH);
    let master = topology.master().expect("a master");
    let queued: usize = redis::cmd("LLEN")
        .arg("celery")
        .query(&mut topology.servers()[master].redis.conn(0).expect("connect"))
        .expect("LLEN");
    assert_eq!(queued, PER_BATCH);
}

/// A node configured with `sentinel_password_file`: with the wrong password in the file its
/// log says which setting the sentinels refused and nothing is pushed; restarted with the right
/// one, it dispatches to the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_the_sentinels_password_from_its_file() {
    use belfry_kit::schedules::{self, Schedule};
    use chrono::{DurationRound, TimeDelta, Utc};

    const QUEUE: &str = "with-password";
    let _serial = SERIAL.lock().await;
    let topology = SentinelTopology::start(SentinelOptions {
        sentinel_password: Some("sentinel-secret-2".into()),
        ..SentinelOptions::new(1)
    })
    .expect("a sentinel topology with a password");
    let secrets = tempfile::tempdir().expect("a directory for the password");
    let password_file = secrets.path().join("sentinel-password");
    std::fs::write(&password_file, "not-the-password\n").expect("write the password file");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(3);
    let entries = [Schedule::new("with-password", "belfry_test.record")
        .every("1s")
        .start_at(t0)
        .queue(QUEUE)];
    let config = format!(
        "[redis]\nmaster_name = \"{MASTER_NAME}\"\nsentinel_password_file = \"{}\"\n",
        password_file.display()
    );
    let mut cluster =
        support::procs::start(1, &topology.url(0), &schedules::file(&entries), &config);
    let consumer = belfry_kit::Consumer::following(topology.master_locator(0), QUEUE);
    support::wait_for(
        "the node to report the refused password",
        Duration::from_secs(60),
        || {
            cluster
                .log_text()
                .contains("refused the password in [redis] sentinel_password")
                .then_some(())
        },
    );
    assert!(
        consumer.arrivals().is_empty(),
        "pushed with a refused password"
    );

    std::fs::write(&password_file, "sentinel-secret-2\n").expect("write the password file");
    cluster.kill(0);
    cluster.spawn(0).expect("restart the node");
    let arrivals = support::wait_for("dispatch to the master", Duration::from_secs(60), || {
        let arrivals = consumer.arrivals();
        (arrivals.len() >= 3).then_some(arrivals)
    });
    let mut ids: Vec<&str> = arrivals.iter().map(|a| a.task_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), arrivals.len(), "an occurrence arrived twice");
}

/// Sentinels and servers that speak TLS with certificates from a private CA: the sink reaches
/// the sentinels and the master over TLS (`sentinel_tls`, `tls`, `tls_ca_file`), with
/// `min_replicas` confirmed over TLS replication, follows a failover, and without the CA
/// trusts neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_the_master_over_tls_with_a_private_ca() {
    let _serial = SERIAL.lock().await;
    let pki_dir = tempfile::tempdir().expect("a directory for certificates");
    let pki = support::openssl_pki(pki_dir.path());
    let mut topology = SentinelTopology::start(SentinelOptions {
        tls: Some(pki.clone()),
        ..SentinelOptions::new(1)
    })
    .expect("a sentinel topology with TLS");
    let sink_with = |ca: Option<&std::path::Path>| {
        let mut config = SinkConfig::new(topology.url(0));
        config.master_name = Some(MASTER_NAME.into());
        config.sentinel_tls = true;
        config.tls = true;
        config.tls_ca_file = ca.map(std::path::Path::to_path_buf);
        config.min_replicas = 1;
        config.replica_timeout = Duration::from_millis(1_000);
        config.timeout = Duration::from_secs(2);
        RedisSink::new(&config).expect("a sentinel sink")
    };
    let untrusted = sink_with(None);
    let err = untrusted
        .push_batch(&batch(0))
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(err.to_string().contains("no Redis master"), "{err}");

    let sink = sink_with(Some(&pki.ca));
    push_until_confirmed(&sink, 0).await;
    let (killed, _) = topology
        .kill_master_and_wait_for_failover()
        .expect("a failover");
    // The new master has no replica until the old one comes back as its replica.
    topology
        .restart_as_replica(killed)
        .expect("the old master back as a replica");
    push_until_confirmed(&sink, 1).await;
    let master = topology.master().expect("a master");
    let messages: Vec<String> = redis::cmd("LRANGE")
        .arg("celery")
        .arg(0)
        .arg(-1)
        .query(&mut topology.servers()[master].redis.conn(0).expect("connect"))
        .expect("LRANGE");
    for n in 0..2 * PER_BATCH {
        assert_eq!(
            count(&messages, n),
            1,
            "message {n} over TLS, through a failover"
        );
    }
}

/// Pushes batch `b` until a push of it is confirmed (within a minute).
async fn push_until_confirmed(sink: &RedisSink, b: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match sink.push_batch(&batch(b)).await {
            Ok(outcomes) => {
                assert_eq!(outcomes.len(), PER_BATCH);
                return;
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
}
