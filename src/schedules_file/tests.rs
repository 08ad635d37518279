//! The schedules file: parsing, refusal of bad files, and reconciling.

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .to_utc()
}

const GOOD: &str = r#"
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
"#;

#[test]
fn parses_every_field() {
    let defs = parse("s.toml", GOOD, now()).unwrap();
    assert_eq!(defs.len(), 2);
    let report = &defs[1];
    assert_eq!(report.spec.cron.as_deref(), Some("30 2 * * *"));
    assert_eq!(report.args[2].to_string(), "12345678901234567890123");
    assert_eq!(report.kwargs["region"], "eu");
    assert_eq!(report.options.queue.as_deref(), Some("reports"));
    assert_eq!(
        report.catchup,
        CatchupPolicy {
            rule: CatchupRule::Latest,
            window_secs: 6 * 3600
        }
    );
    assert_eq!(report.labels.get("team"), Some("data"));
    assert_eq!(report.labels.get(SOURCE_LABEL), Some("file"));
}

#[test]
fn a_bad_entry_refuses_the_file_and_names_it() {
    let cases = [
        ("[[schedule]]\nname = \"a\"\ntask = \"t\"\ncron = \"0 0 30 2 *\"\n", "\"a\": cron"),
        ("[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\ntz = \"Nowhere/City\"\n", "tz"),
        ("[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\nbogus = 1\n", "bogus"),
        ("[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\n[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\n", "declared twice"),
        ("[[schedule]]\nname = \"a b\"\ntask = \"t\"\nevery = \"1m\"\n", "name"),
        ("[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\noptions = { priority = 12 }\n", "options.priority"),
        ("[[schedule]]\nname = \"a\"\ntask = \"t\"\n", "exactly one of"),
        ("not toml at all [", "s.toml"),
    ];
    for (text, expected) in cases {
        let err = parse("s.toml", text, now()).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn the_diff_puts_changes_and_deletes_only_file_managed_schedules() {
    use crate::state::diff::diff;
    use crate::state::{Command, StateData};
    let reconcile = |state: &StateData, defs: &[ScheduleDef]| {
        diff(state, defs, Some(&file_selector()), now(), |i| {
            uuid::Uuid::from_u128(i as u128 + 1)
        })
        .commands
    };
    let mut state = StateData::default();
    let defs = parse("s.toml", GOOD, now()).unwrap();
    let commands = reconcile(&state, &defs);
    assert_eq!(commands.len(), 2);
    for command in &commands {
        state.apply(command);
    }
    // Unchanged: nothing to do.
    assert!(reconcile(&state, &defs).is_empty());
    // A schedule created through the API is not the file's to delete.
    let mut api_def = defs[0].clone();
    api_def.name = "from-api".into();
    api_def.labels = Default::default();
    state.apply(&Command::Put {
        def: api_def,
        expected_revision: None,
        incarnation: uuid::Uuid::nil(),
        at: now(),
    });
    // The file drops the heartbeat and changes the report.
    let mut changed = defs[1].clone();
    changed.spec.cron = Some("45 2 * * *".into());
    let commands = reconcile(&state, &[changed]);
    assert_eq!(commands.len(), 2);
    assert!(matches!(
        &commands[0],
        Command::Put {
            expected_revision: Some(1),
            ..
        }
    ));
    assert!(matches!(&commands[1], Command::Delete { name, .. } if name == "heartbeat"));
}

#[test]
fn solar_events_and_last_run_at() {
    let text = r#"
[[schedule]]
name = "lights-on"
task = "home.lights"
solar = "sunset"
latitude = 51.5
longitude = -0.12

[[schedule]]
name = "migrated"
task = "reports.build"
crontab = "0 * * * *"
last_run_at = "2024-12-31T23:00:00Z"

[[schedule]]
name = "equator"
task = "t"
solar = "solar_noon"
latitude = 0
longitude = 180
"#;
    let defs = parse("s.toml", text, now()).unwrap();
    assert_eq!(defs[0].spec.solar.event.as_deref(), Some("sunset"));
    assert_eq!(
        (defs[0].spec.solar.latitude, defs[0].spec.solar.longitude),
        (Some(51.5), Some(-0.12))
    );
    assert_eq!(
        defs[1].last_run_at,
        Some(
            DateTime::parse_from_rfc3339("2024-12-31T23:00:00Z")
                .unwrap()
                .to_utc()
        )
    );
    assert_eq!(defs[2].spec.solar.latitude, Some(0.0));
    for (entry, expected) in [
        (
            "solar = \"moonrise\"\nlatitude = 1\nlongitude = 1",
            "sunrise",
        ),
        ("solar = \"sunset\"\nlatitude = 1", "longitude"),
        (
            "solar = \"sunset\"\nlatitude = 100\nlongitude = 1",
            "latitude",
        ),
        ("every = \"1m\"\nlongitude = 1", "longitude"),
        ("every = \"1m\"\nlast_run_at = \"soon\"", "last_run_at"),
        (
            "every = \"1m\"\nlast_run_at = \"2030-01-01T00:00:00Z\"",
            "last_run_at",
        ),
    ] {
        let text = format!("[[schedule]]\nname = \"x\"\ntask = \"t\"\n{entry}\n");
        let err = parse("s.toml", &text, now()).unwrap_err().to_string();
        assert!(err.contains(expected), "{entry}: {err}");
    }
}
