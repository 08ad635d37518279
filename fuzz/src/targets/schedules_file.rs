//! The schedules TOML file: parse and validate; every accepted definition must pass
//! `check_accepted`, and reconciling the file into a state must apply without a refusal.

use belfry::schedules_file::{file_selector, parse, parse_with_source};
use belfry::state::diff::diff;
use belfry::state::{Command, CommandResult};
use uuid::Uuid;

use super::{check_accepted, now, sample, text, Target, Violation};

pub struct SchedulesFile;

const CORPUS: &[&str] = &[
    r#"
[[schedule]]
name = "heartbeat"
task = "tasks.heartbeat"
every = "1s"

[[schedule]]
name = "nightly-report"
task = "reports.build"
cron = "30 2 * * *"
tz = "America/New_York"
args = [1, "two", 12345678901234567890123]
kwargs = { region = "eu", dry_run = false }
options = { queue = "reports", priority = 3, expires = 3600 }
catchup = { policy = "latest", window = "6h" }
labels = { team = "data" }
"#,
    r#"
[[schedule]]
name = "a"
task = "t"
crontab = "*/15 9-17 * * mon-fri"
tz = "Europe/Paris"
start_at = "2025-01-01T00:00:00Z"
end_at = "2026-01-01T00:00:00Z"
enabled = false
description = "weekday quarter hours"
options = { routing_key = "q", expires = "2030-01-01T00:00:00Z", headers = { x = [1, { y = 2.5 }] }, time_limit = 30.5, soft_time_limit = 20, ignore_result = true }
catchup = { policy = "none" }
"#,
    r#"
[[schedule]]
name = "once:x/y"
task = "t.once"
once = 2030-01-01T00:00:00Z
"#,
    r#"
[[schedule]]
name = "b"
task = "t"
once = "2030-01-01T00:00:00+05:30"
kwargs.nested.deep = [[1], [2, [3]]]

[[schedule]]
name = "c"
task = "t"
every = "1h30m"
anchor = "2025-03-09T02:30:00Z"
catchup = { policy = "all", window = "30m" }
args = [inf, nan, -0.0, 1e308, 0x7f, 1_000, 1979-05-27T07:32:00Z, 07:32:00, 1979-05-27]
"#,
    "schedule = []\n",
    "",
];

impl Target for SchedulesFile {
    fn name(&self) -> &'static str {
        "schedules_file"
    }

    fn about(&self) -> &'static str {
        "the [[schedule]] TOML file: parse, validate, reconcile into a state"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        CORPUS.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn dictionary(&self) -> &'static [&'static str] {
        &[
            "[[schedule]]\n",
            "[schedule]\n",
            "\nname = \"n\"",
            "\ntask = \"t\"",
            "\nevery = ",
            "\ncron = ",
            "\ncrontab = ",
            "\nonce = ",
            "\ntz = ",
            "\nstart_at = ",
            "\nend_at = ",
            "\nanchor = ",
            "\nargs = ",
            "\nkwargs = ",
            "\noptions = ",
            "\ncatchup = ",
            "\nenabled = ",
            "\nlabels = ",
            "\ndescription = ",
            "queue = ",
            "routing_key = ",
            "priority = ",
            "expires = ",
            "headers = ",
            "time_limit = ",
            "soft_time_limit = ",
            "ignore_result = ",
            "policy = ",
            "window = ",
            "\"latest\"",
            "\"none\"",
            "\"all\"",
            "\"1h\"",
            "\"0s\"",
            "\"100000w\"",
            "\"\"\"",
            "'''",
            "[",
            "]",
            "{",
            "}",
            "[[",
            "]]",
            "=",
            ".",
            ",",
            "true",
            "false",
            "inf",
            "nan",
            "-inf",
            "0x",
            "0o",
            "0b",
            "1_000",
            "1979-05-27T07:32:00Z",
            "1979-05-27T00:32:00.999999-07:00",
            "07:32:00",
            "1979-05-27",
            "\"*/5 * * * *\"",
            "\"0 0 30 2 *\"",
            "\"Pacific/Apia\"",
            "\"belfry.io/source\"",
            "\\u0000",
            "\\U0010FFFF",
            "#",
            "\r\n",
            "a.b.c = 1",
        ]
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let input = text(input);
        let defs = match parse("fuzz.toml", &input, now()) {
            Ok(defs) => defs,
            Err(_) => {
                let _ = parse_with_source("fuzz.toml", &input, now(), "apply");
                return Ok(());
            }
        };
        for def in &defs {
            check_accepted(def)?;
        }
        let commands = diff(sample(), &defs, Some(&file_selector()), now(), |i| {
            Uuid::from_u128(i as u128 + 1)
        })
        .commands;
        let mut state = sample().clone();
        for command in Command::batches(commands) {
            let CommandResult::Batch(results) = state.apply(&command) else {
                return Err(Violation::new(
                    "a batch did not give one result per command",
                ));
            };
            if let Some(refused) = results
                .iter()
                .find(|r| matches!(r, CommandResult::Rejected(_)))
            {
                return Err(Violation::new(format!(
                    "reconciling an accepted file was refused: {refused:?}"
                )));
            }
        }
        Ok(())
    }
}
