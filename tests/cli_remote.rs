//! `belfry schedule …` and `belfry cluster …` as a user runs them, against a real three-node
//! cluster: table and JSON output, one-line errors and the exit codes scripts branch on.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::procs::{belfry_bin, ADMIN_TOKEN, READONLY_TOKEN};
use support::{free_port, wait_for, RedisServer};

struct Cli {
    endpoint: String,
    token: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(belfry_bin())
            .args(args)
            .env("BELFRY_ENDPOINT", &self.endpoint)
            .env("BELFRY_TOKEN", &self.token)
            .env_remove("BELFRY_OUTPUT")
            .output()
            .expect("run belfry")
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "belfry {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// Runs a command that must fail: its exit code and its one stderr line.
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "belfry {args:?} succeeded");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
        (
            out.status.code().unwrap_or(-1),
            stderr.trim_end().to_string(),
        )
    }
}

const FILE_V1: &str = r#"
[[schedule]]
name = "cli-report"
task = "reports.build"
cron = "0 9 * * mon-fri"
tz = "Europe/Paris"

[[schedule]]
name = "cli-tick"
task = "tasks.tick"
every = "1h"
args = [1, "two"]
options = { queue = "cli" }
"#;

const FILE_V2: &str = r#"
[[schedule]]
name = "cli-tick"
task = "tasks.tick"
every = "1h"
args = [1, "two"]
options = { queue = "cli" }
"#;

#[test]
fn schedule_and_cluster_commands() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = (leader + 1) % 3;
    let cli = Cli {
        endpoint: cluster.nodes[follower].addr.clone(),
        token: ADMIN_TOKEN.into(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("schedules.toml");
    std::fs::write(&file, FILE_V1).expect("write file");
    let file = file.to_str().expect("path");

    assert_eq!(
        cli.ok(&["schedule", "apply", "-f", file]).trim(),
        "2 created, 0 updated, 0 unchanged, 0 deleted"
    );
    let listed = cli.json(&["schedule", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["cli-report", "cli-tick"]);
    assert_eq!(listed[1]["args"], serde_json::json!([1, "two"]));
    assert_eq!(listed[1]["labels"]["belfry.io/source"], "apply");
    let table = cli.ok(&["schedule", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("crontab 0 9 * * mon-fri (Europe/Paris)")
            || table.contains("cron 0 9 * * mon-fri (Europe/Paris)"),
        "{table}"
    );

    let details = cli.ok(&["schedule", "get", "cli-tick"]);
    assert!(details.contains("tasks.tick"), "{details}");
    let next = cli.ok(&["schedule", "next", "cli-report", "-n", "3"]);
    let instants: Vec<&str> = next.lines().collect();
    assert_eq!(instants.len(), 3, "{next}");
    // 09:00 in Paris is 07:00 or 08:00 UTC.
    assert!(
        instants
            .iter()
            .all(|i| i.contains("T07:00:00") || i.contains("T08:00:00")),
        "{next}"
    );

    let paused = cli.json(&["schedule", "pause", "cli-tick"]);
    assert_eq!(paused["enabled"], false);
    let resumed = cli.json(&["schedule", "resume", "cli-tick"]);
    assert_eq!(resumed["enabled"], true);
    let triggered = cli.json(&["schedule", "trigger", "cli-tick"]);
    let task_id = triggered["task_id"].as_str().expect("task id").to_string();
    wait_for(
        "the manual run in the history",
        Duration::from_secs(20),
        || {
            let runs = cli.json(&["schedule", "runs", "cli-tick"]);
            runs.as_array()?
                .iter()
                .any(|r| {
                    r["task_id"] == task_id.as_str()
                        && r["outcome"] == "sent"
                        && r["manual"] == true
                })
                .then_some(())
        },
    );
    // In the queue: the interval's first occurrence (at creation) and the manual run.
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg("cli")
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn(0).expect("connect to the test redis-server"))
        .expect("LRANGE");
    assert_eq!(queued.len(), 2);
    assert_eq!(
        queued.iter().filter(|m| m.contains(&task_id)).count(),
        1,
        "the triggered message is in the queue once"
    );

    std::fs::write(dir.path().join("schedules.toml"), FILE_V2).expect("rewrite file");
    assert_eq!(
        cli.ok(&["schedule", "apply", "-f", file, "--prune"]).trim(),
        "0 created, 0 updated, 1 unchanged, 1 deleted"
    );
    let (code, line) = cli.fails(&["schedule", "get", "cli-report"]);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("error: NOT_FOUND: "), "{line}");
    let (code, line) = cli.fails(&["schedule", "delete", "cli-tick", "--revision", "99"]);
    assert_eq!(code, 4, "{line}");
    cli.ok(&["schedule", "delete", "cli-tick"]);

    let status = cli.json(&["cluster", "status"]);
    assert_eq!(status["leader_id"], cluster.nodes[leader].id);
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    let table = cli.ok(&["cluster", "status"]);
    assert!(table.contains("leader"), "{table}");

    // A large file goes in chunks (a progress bar on a terminal); the counts add up.
    let large: String = (0..2_500)
        .map(|i| {
            format!("[[schedule]]\nname = \"bulk-{i}\"\ntask = \"t\"\ncron = \"H H * * *\"\n\n")
        })
        .collect();
    let large_file = dir.path().join("large.toml");
    std::fs::write(&large_file, large).expect("write");
    let large_file = large_file.to_str().expect("path");
    assert_eq!(
        cli.ok(&["schedule", "apply", "-f", large_file]).trim(),
        "2500 created, 0 updated, 0 unchanged, 0 deleted"
    );
    assert_eq!(
        cli.ok(&["schedule", "apply", "-f", large_file]).trim(),
        "0 created, 0 updated, 2500 unchanged, 0 deleted"
    );
    // Hash-spread crons took their minutes from their names: not all the same.
    let next: std::collections::BTreeSet<String> = (0..20)
        .map(|i| cli.json(&["schedule", "get", &format!("bulk-{i}")])["next_run"].to_string())
        .collect();
    assert!(next.len() > 10, "{next:?}");

    // A bad spec in the file: refused before anything is sent, naming the entry and field.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[schedule]]\nname = \"x\"\ntask = \"t\"\ncron = \"99 * * * *\"\n",
    )
    .expect("write");
    let bad = dir.path().join("bad.toml");
    let (code, line) = cli.fails(&["schedule", "apply", "-f", bad.to_str().expect("path")]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("\"x\"") && line.contains("minute"), "{line}");

    // Credentials and reachability.
    let reader = Cli {
        endpoint: cli.endpoint.clone(),
        token: READONLY_TOKEN.into(),
    };
    reader.ok(&["schedule", "list"]);
    let (code, line) = reader.fails(&["schedule", "trigger", "anything"]);
    assert_eq!(code, 6, "{line}");
    assert!(line.contains("PERMISSION_DENIED"), "{line}");
    let stranger = Cli {
        endpoint: cli.endpoint.clone(),
        token: "wrong".into(),
    };
    let (code, line) = stranger.fails(&["cluster", "status"]);
    assert_eq!(code, 6, "{line}");
    let nowhere = Cli {
        endpoint: format!("127.0.0.1:{}", free_port()),
        token: ADMIN_TOKEN.into(),
    };
    let (code, line) = nowhere.fails(&["cluster", "status", "--timeout", "2"]);
    assert_eq!(code, 5, "{line}");
}
