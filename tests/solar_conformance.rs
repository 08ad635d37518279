//! Solar events against Celery's own `celery.schedules.solar` (which uses `ephem`):
//! `scripts/solar_fixture.py` ran Celery 5.7 to write `tests/fixtures/solar/celery.json`, and
//! every case's next event must agree with it within `TOLERANCE_SECS`. A second test runs
//! Celery again now, through the test virtualenv, against `belfry preview`'s output, so a
//! Celery or ephem upgrade that moves an instant is noticed.

mod support;

use std::process::Command;

use belfry::schedule::{parse_instant, SolarInput, Spec, SpecInput};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most an event may differ from Celery's.
const TOLERANCE_SECS: f64 = 60.0;

#[derive(Deserialize)]
struct Fixture {
    celery: String,
    cases: Vec<Case>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Case {
    event: String,
    lat: f64,
    lon: f64,
    after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    celery: Option<String>,
}

fn fixture() -> Fixture {
    serde_json::from_str(&support::read_repo_file("tests/fixtures/solar/celery.json"))
        .expect("the solar fixture parses")
}

fn instant(text: &str) -> DateTime<Utc> {
    parse_instant("instant", text).expect("an RFC 3339 instant")
}

fn belfry_next(case: &Case) -> DateTime<Utc> {
    let input = SpecInput {
        solar: SolarInput {
            event: Some(case.event.as_str().into()),
            latitude: Some(case.lat),
            longitude: Some(case.lon),
        }
        .into(),
        ..Default::default()
    };
    let after = instant(&case.after);
    let spec = Spec::parse(&input, after).unwrap_or_else(|e| panic!("{case:?}: {e}"));
    spec.next_after(after)
        .unwrap_or_else(|| panic!("{case:?}: no next event"))
}

/// Seconds between belfry's and Celery's answer for every case; panics listing the cases
/// beyond the tolerance, and names the worst.
fn compare(cases: &[Case], belfry: impl Fn(&Case) -> DateTime<Utc>) -> (f64, String) {
    let mut worst = (0.0f64, String::new());
    let mut failures = Vec::new();
    let mut all = Vec::new();
    for case in cases {
        let celery = instant(case.celery.as_deref().expect("Celery's answer"));
        let ours = belfry(case);
        let diff = (ours - celery).num_milliseconds() as f64 / 1000.0;
        let shown = format!(
            "{} at ({}, {}) after {}: belfry {} Celery {} ({diff:+.1} s)",
            case.event, case.lat, case.lon, case.after, ours, celery
        );
        all.push(diff.abs());
        if diff.abs() > worst.0 {
            worst = (diff.abs(), shown.clone());
        }
        if diff.abs() > TOLERANCE_SECS {
            failures.push(shown);
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ from Celery by more than {TOLERANCE_SECS} s:\n{}",
        failures.len(),
        failures.join("\n")
    );
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    println!(
        "differences: median {:.1} s, 95th percentile {:.1} s",
        at(0.5),
        at(0.95)
    );
    worst
}

#[test]
fn every_fixture_case_agrees_with_celery() {
    let fixture = fixture();
    assert!(fixture.cases.len() >= 200, "{} cases", fixture.cases.len());
    for event in [
        "dawn_astronomical",
        "dawn_nautical",
        "dawn_civil",
        "sunrise",
        "solar_noon",
        "sunset",
        "dusk_civil",
        "dusk_nautical",
        "dusk_astronomical",
    ] {
        assert!(fixture.cases.iter().any(|c| c.event == event), "{event}");
    }
    let (worst, case) = compare(&fixture.cases, belfry_next);
    println!(
        "{} cases against Celery {}: worst difference {worst:.1} s: {case}",
        fixture.cases.len(),
        fixture.celery
    );
    let temperate: Vec<Case> = fixture
        .cases
        .iter()
        .filter(|c| c.lat.abs() <= 66.0)
        .cloned()
        .collect();
    let (worst, case) = compare(&temperate, belfry_next);
    println!(
        "{} of them within 66° of the equator: worst difference {worst:.1} s: {case}",
        temperate.len()
    );
}

fn preview(case: &Case) -> DateTime<Utc> {
    let lat = case.lat.to_string();
    let lon = case.lon.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_belfry"))
        .args([
            "preview",
            "--solar",
            &case.event,
            "--lat",
            &lat,
            "--lon",
            &lon,
        ])
        .args(["--after", &case.after, "-n", "1"])
        .output()
        .expect("run belfry preview");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{case:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    instant(stdout.trim())
}

/// Celery run now (not the committed fixture) against `belfry preview`: the same cases, and
/// Celery's answers must still be the fixture's.
#[test]
fn celery_run_now_agrees_with_belfry_preview() {
    let fixture = fixture();
    let questions: Vec<Case> = fixture
        .cases
        .iter()
        .map(|c| Case {
            celery: None,
            ..c.clone()
        })
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&questions).expect("encode")).expect("write");
    let output = Command::new(support::test_python())
        .arg(support::repo_root().join("scripts/solar_fixture.py"))
        .arg("--cases")
        .arg(&path)
        .output()
        .expect("the virtualenv's Python runs Celery");
    assert!(
        output.status.success(),
        "Celery's solar schedule failed (is ephem installed?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answered: Vec<Case> = serde_json::from_slice(&output.stdout).expect("Celery's answers");
    assert_eq!(answered.len(), fixture.cases.len());
    let moved: Vec<String> = answered
        .iter()
        .zip(&fixture.cases)
        .filter(|(now, then)| now.celery != then.celery)
        .map(|(now, then)| format!("{now:?} (the fixture says {:?})", then.celery))
        .collect();
    assert!(
        moved.is_empty(),
        "Celery's answers moved since the fixture was written (regenerate it with \
         scripts/solar_fixture.py and check belfry still agrees):\n{}",
        moved.join("\n")
    );
    let (worst, case) = compare(&answered, preview);
    println!("belfry preview against Celery now: worst difference {worst:.1} s: {case}");
}
