//! `belfry server` refuses, at start and with a message naming the setting, what would leave
//! a node open or broken: peers without authentication, blank tokens and secrets, one address
//! listed for two members, a bad Redis URL and bad TLS files. Nothing is written to the data
//! directory first.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::free_port;
use support::procs::belfry_bin;

const SECRET: &str = "a-cluster-secret-long-enough";

/// One `belfry server` start in a directory of its own.
struct Start {
    dir: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// How a start ended: its exit code (`None`: still running when given up on, then killed) and
/// what it wrote to stderr.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    data_dir_created: bool,
}

impl Start {
    /// A node that would start: no TLS, no API tokens, the given peer setting.
    fn new() -> Start {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = format!("127.0.0.1:{}", free_port());
        let args = [
            "server",
            "--node-id",
            "1",
            "--listen",
            &addr,
            "--metrics-listen",
            "off",
            "--insecure-no-tls",
            "--insecure-no-auth",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        // In the environment, so that a test can override it with the flag.
        let redis = format!("redis://127.0.0.1:{}/0", free_port());
        Start {
            dir,
            args,
            envs: vec![("BELFRY_REDIS_URL".into(), redis)],
        }
    }

    fn arg(mut self, arg: impl Into<String>) -> Start {
        self.args.push(arg.into());
        self
    }

    fn env(mut self, key: &str, value: &str) -> Start {
        self.envs.push((key.into(), value.into()));
        self
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the node until it exits, or for `patience` (then kills it).
    fn run(self, patience: Duration) -> Outcome {
        self.run_until(patience, None)
    }

    /// Runs the node until it exits, until its stderr holds `marker` or for `patience` (in
    /// either case it is then killed).
    fn run_until(self, patience: Duration, marker: Option<&str>) -> Outcome {
        let stderr_path = self.dir.path().join("stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(belfry_bin())
            .args(&self.args)
            .arg("--data-dir")
            .arg(self.data_dir())
            // Nothing from the test's own environment may decide the outcome.
            .env_remove("BELFRY_CLUSTER_SECRET")
            .env_remove("BELFRY_ADMIN_TOKEN")
            .env_remove("BELFRY_CLUSTER_SECRET_FILE")
            .env_remove("BELFRY_INSECURE_NO_PEER_AUTH")
            .env_remove("BELFRY_CONFIG")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start belfry server");
        let mut waited = Duration::ZERO;
        let code = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status.code();
            }
            let marked = marker.is_some_and(|m| {
                std::fs::read_to_string(&stderr_path).is_ok_and(|s| s.contains(m))
            });
            if marked || waited >= patience {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
            waited += Duration::from_millis(20);
        };
        Outcome {
            code,
            stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            data_dir_created: self.data_dir().exists(),
        }
    }
}

/// Asserts that the start was refused at once, naming `setting` (and `also`), before anything
/// was written to the data directory.
fn assert_refused(outcome: &Outcome, setting: &str, also: &[&str]) {
    assert!(
        outcome.code.is_some_and(|c| c != 0),
        "expected a refusal naming {setting}, but the node {}; stderr:\n{}",
        match outcome.code {
            Some(code) => format!("exited with {code}"),
            None => "kept running".to_string(),
        },
        outcome.stderr
    );
    for needle in std::iter::once(&setting).chain(also) {
        assert!(
            outcome.stderr.contains(needle),
            "the refusal does not mention {needle:?}:\n{}",
            outcome.stderr
        );
    }
    assert!(
        !outcome.data_dir_created,
        "the data directory was created before the refusal:\n{}",
        outcome.stderr
    );
}

/// How long a node that should refuse is given before the test calls it running.
const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn a_node_with_neither_tls_nor_a_cluster_secret_refuses_to_start() {
    let outcome = Start::new().run(PATIENCE);
    assert_refused(&outcome, "cluster_secret", &["--insecure-no-peer-auth"]);

    // The explicit flag starts it, with a warning.
    let outcome = Start::new()
        .arg("--insecure-no-peer-auth")
        .run_until(Duration::from_secs(30), Some("belfry node started"));
    assert!(outcome.code.is_none(), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("belfry node started"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("peer authentication is OFF"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn blank_tokens_and_secrets_are_refused_at_start() {
    for blank in ["", "   "] {
        let start = Start::new().env("BELFRY_CLUSTER_SECRET", SECRET);
        // Authentication on, with a token that is set but blank.
        let start = Start {
            args: start
                .args
                .into_iter()
                .filter(|a| a != "--insecure-no-auth")
                .collect(),
            ..start
        }
        .env("BELFRY_ADMIN_TOKEN", blank);
        assert_refused(&start.run(PATIENCE), "admin_token", &["empty"]);

        let start = Start::new()
            .env("BELFRY_CLUSTER_SECRET", blank)
            .arg("--insecure-no-peer-auth");
        assert_refused(&start.run(PATIENCE), "cluster_secret", &["empty"]);
    }
    let start = Start::new();
    let file = start.file("cluster-secret", "\n  \n");
    let outcome = start
        .arg("--cluster-secret-file")
        .arg(file.display().to_string())
        .run(PATIENCE);
    assert_refused(
        &outcome,
        "cluster_secret_file",
        &[&file.display().to_string()],
    );
}

#[test]
fn one_address_for_two_members_is_refused() {
    let port = free_port();
    let outcome = Start::new()
        .env("BELFRY_CLUSTER_SECRET", SECRET)
        .arg("--peers")
        .arg(format!("1=127.0.0.1:{port},2=127.0.0.1:{port}"))
        .run(PATIENCE);
    assert_refused(&outcome, "peers", &[&format!("127.0.0.1:{port}")]);
}

#[test]
fn a_bad_redis_url_is_refused_before_the_cluster_initializes() {
    let outcome = Start::new()
        .env("BELFRY_CLUSTER_SECRET", SECRET)
        .arg("--redis-url")
        .arg("http://127.0.0.1:6379/0")
        .run(PATIENCE);
    assert_refused(&outcome, "redis_url", &[]);
    assert!(
        !outcome.stderr.contains("initialized"),
        "{}",
        outcome.stderr
    );
}

/// A certificate and its key, self-signed, as PEM.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// A node with TLS from the given files (no `--insecure-no-tls`).
fn with_tls(start: Start, cert: &Path, key: &Path, ca: &Path) -> Start {
    let args = start
        .args
        .into_iter()
        .filter(|a| a != "--insecure-no-tls")
        .collect();
    Start { args, ..start }
        .arg("--tls-cert")
        .arg(cert.display().to_string())
        .arg("--tls-key")
        .arg(key.display().to_string())
        .arg("--tls-client-ca")
        .arg(ca.display().to_string())
}

#[test]
fn bad_tls_files_are_named_at_start() {
    let (cert_pem, key_pem) = self_signed();
    let (_, other_key_pem) = self_signed();
    let cases: [(&str, &str, &str, &str, &str); 4] = [
        // (cert, key, ca, the setting named, the file named)
        (
            "not a certificate\n",
            &key_pem,
            &cert_pem,
            "tls_cert",
            "cert",
        ),
        (&cert_pem, "not a key\n", &cert_pem, "tls_key", "key"),
        (&cert_pem, &key_pem, "", "tls_client_ca", "ca"),
        // Well-formed, but the key is not the certificate's.
        (&cert_pem, &other_key_pem, &cert_pem, "tls", ""),
    ];
    for (cert, key, ca, setting, named) in cases {
        let start = Start::new();
        let files = [
            start.file("cert", cert),
            start.file("key", key),
            start.file("ca", ca),
        ];
        let shown = match named {
            "cert" => files[0].display().to_string(),
            "key" => files[1].display().to_string(),
            "ca" => files[2].display().to_string(),
            _ => String::new(),
        };
        let outcome = with_tls(start, &files[0], &files[1], &files[2]).run(PATIENCE);
        assert_refused(&outcome, setting, &[&shown]);
        eprintln!("{setting}: {}", outcome.stderr.trim());
        assert!(
            !outcome.stderr.contains("error: tls: transport error\n"),
            "{}",
            outcome.stderr
        );
    }
}
