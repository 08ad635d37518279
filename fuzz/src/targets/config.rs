//! The `belfry server` configuration: a TOML file plus flag values, resolved as at start-up
//! (nothing is started). Input: leading lines `--flag=value`, then the file's text.

use std::path::PathBuf;

use belfry::config::{check_addr, node_id_from_hostname, parse_peers, NodeConfig, ServerArgs};

use super::{text, Target, Violation};

pub struct Config {
    /// Holds the file under test; one per target instance, so parallel runs never share it.
    dir: tempfile::TempDir,
}

/// Files a configuration may name: fixed paths, so saved inputs that name them reproduce.
fn fixtures() -> PathBuf {
    let dir = std::env::temp_dir().join("belfry-fuzz-config");
    let _ = std::fs::create_dir_all(&dir);
    for (name, body) in [
        ("tokens", "# admin\nsecret-one\n\n  secret-two  \n"),
        ("empty", ""),
        ("password", "hunter2\n"),
        (
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n",
        ),
    ] {
        let path = dir.join(name);
        if !path.exists() {
            let _ = std::fs::write(path, body);
        }
    }
    dir
}

impl Config {
    pub fn new() -> Config {
        fixtures();
        Config {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// Flag lines applied to `args`; returns the rest of the input (the file).
fn apply_flags<'a>(args: &mut ServerArgs, input: &'a str) -> &'a str {
    let mut rest = input;
    while let Some(line) = rest.strip_prefix("--") {
        let (line, after) = line.split_once('\n').unwrap_or((line, ""));
        rest = after;
        let (flag, value) = line.split_once('=').unwrap_or((line, ""));
        let value = value.to_string();
        match flag {
            "node-id" => args.node_id = value.parse().ok(),
            "listen" => args.listen = Some(value),
            "advertise" => args.advertise = Some(value),
            "peers" => args.peers = Some(value),
            "cluster-name" => args.cluster_name = Some(value),
            "redis-url" => args.redis_url = Some(value),
            "redis-password" => args.redis_password = Some(value),
            "heartbeat-ms" => args.heartbeat_ms = value.parse().ok(),
            "election-timeout-ms" => args.election_timeout_ms = Some(value),
            "log-format" => args.log_format = Some(value),
            "join" => args.join = Some(value),
            "metrics-listen" => args.metrics_listen = Some(value),
            "admin-token" => args.admin_token = Some(value),
            "readonly-token" => args.readonly_token = Some(value),
            "secure" => {
                args.insecure_no_auth = false;
                args.insecure_no_tls = false;
            }
            "no-data-dir" => args.data_dir = None,
            _ => {}
        }
    }
    rest
}

impl Target for Config {
    fn name(&self) -> &'static str {
        "config"
    }

    fn about(&self) -> &'static str {
        "the server configuration: TOML file and flags, resolved without starting anything"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let fx = fixtures();
        let fx = fx.display();
        [
            "node_id = 1\nlisten = \"127.0.0.1:7401\"\ndata_dir = \"/var/lib/belfry\"\n[peers]\n1 = \"a:7400\"\n2 = \"b:7400\"\n[redis]\nurl = \"redis://r:6379/2\"\n[raft]\nheartbeat_ms = 50\n".to_string(),
            "--node-id=2\n--peers=1=a:7400,2=b:7400,3=c:7400\n--election-timeout-ms=500-900\ncluster_name = \"prod\"\nlog_format = \"json\"\nmetrics_listen = \"off\"\njoin = [\"a:7400\"]\n".to_string(),
            format!("--secure\n--admin-token=t\nnode_id = 1\n[security]\nadmin_token_file = \"{fx}/tokens\"\nreadonly_token_file = \"{fx}/empty\"\ninsecure_no_tls = true\n"),
            format!("--secure\nnode_id = 3\n[security]\nadmin_token_file = \"{fx}/tokens\"\ntls_cert = \"{fx}/cert.pem\"\ntls_key = \"{fx}/cert.pem\"\ntls_client_ca = \"{fx}/cert.pem\"\n"),
            format!("node_id = 1\n[redis]\ndb = 3\npassword_file = \"{fx}/password\"\nkey_prefix = \"x:\"\nmarker_ttl_secs = 0\ntls_ca_file = \"{fx}/cert.pem\"\nkombu_global_keyprefix = \"k\"\n[raft]\nelection_timeout_min_ms = 150\nelection_timeout_max_ms = 300\nsnapshot_every_logs = 0\nkeep_logs_after_snapshot = 10\n"),
            "--node-id=1\n--listen=[::1]:7400\n--advertise=node-1.belfry:7400\n--heartbeat-ms=18446744073709551615\n".to_string(),
            "--no-data-dir\nnode_id = 1\ndata_dir = \"/d\"\nschedules = \"/etc/belfry/schedules.toml\"\n".to_string(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
    }

    fn dictionary(&self) -> &'static [&'static str] {
        &[
            "node_id = ",
            "listen = ",
            "advertise = ",
            "data_dir = ",
            "[peers]\n",
            "cluster_name = ",
            "schedules = ",
            "log_format = ",
            "join = ",
            "metrics_listen = ",
            "[redis]\n",
            "url = ",
            "db = ",
            "password = ",
            "password_file = ",
            "key_prefix = ",
            "marker_ttl_secs = ",
            "tls_ca_file = ",
            "kombu_global_keyprefix = ",
            "[raft]\n",
            "heartbeat_ms = ",
            "election_timeout_min_ms = ",
            "election_timeout_max_ms = ",
            "snapshot_every_logs = ",
            "keep_logs_after_snapshot = ",
            "[security]\n",
            "admin_token_file = ",
            "readonly_token_file = ",
            "insecure_no_auth = ",
            "tls_cert = ",
            "tls_key = ",
            "tls_client_ca = ",
            "insecure_no_tls = ",
            "--node-id=",
            "--listen=",
            "--peers=",
            "--election-timeout-ms=",
            "--heartbeat-ms=",
            "--join=",
            "--secure\n",
            "--admin-token=",
            "--metrics-listen=",
            "--log-format=",
            "\"off\"",
            "\"json\"",
            "\"text\"",
            ":7400",
            ":0",
            ":65536",
            "[::1]",
            "1=a:1",
            ",",
            "=",
            "-",
            "\"/nonexistent/x\"",
            "true",
            "false",
            "\n",
        ]
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let input = text(input);
        let path = self.dir.path().join("belfry.toml");
        let mut args = ServerArgs {
            config: Some(path.clone()),
            data_dir: Some("/nonexistent/belfry".into()),
            insecure_no_auth: true,
            insecure_no_tls: true,
            ..Default::default()
        };
        let file = apply_flags(&mut args, &input);
        for value in [&args.peers, &args.listen, &args.join]
            .into_iter()
            .flatten()
        {
            let _ = parse_peers(value);
            let _ = check_addr("listen", value);
            let _ = node_id_from_hostname(value);
        }
        std::fs::write(&path, file)
            .map_err(|e| Violation::new(format!("writing the file under test: {e}")))?;
        if let Ok(config) = NodeConfig::resolve(&args) {
            config.cluster_id();
        }
        Ok(())
    }
}
