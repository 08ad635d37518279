//! The time engine against an independent reference: `tests/reference/cron_reference.py`, a
//! brute-force minute walk over Python's `zoneinfo`, wrote `tests/fixtures/time_conformance.json`.
//! Every case's occurrences must match it exactly.

mod support;

use belfry::schedule::{parse_instant, Spec, SpecInput};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    expr: String,
    tz: String,
    after: String,
    n: usize,
    expected: Vec<String>,
}

fn fixture() -> Fixture {
    serde_json::from_str(&support::read_repo_file(
        "tests/fixtures/time_conformance.json",
    ))
    .expect("fixture parses")
}

#[test]
fn engine_matches_the_reference_on_every_case() {
    let fixture = fixture();
    assert!(
        fixture.cases.len() >= 30,
        "the fixture lost cases: {}",
        fixture.cases.len()
    );
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let mut input = SpecInput {
            tz: Some(case.tz.as_str().into()),
            ..Default::default()
        };
        match case.kind.as_str() {
            "cron" => input.cron = Some(case.expr.as_str().into()),
            "crontab" => input.crontab = Some(case.expr.as_str().into()),
            other => panic!("{}: unknown kind {other}", case.name),
        }
        let after = parse_instant("after", &case.after).unwrap();
        let spec = Spec::parse(&input, after).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got: Vec<String> = spec
            .upcoming(after, case.n)
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect();
        assert!(
            !case.expected.is_empty(),
            "{}: the reference found nothing",
            case.name
        );
        if got != case.expected {
            failures.push(format!(
                "{} ({} {:?} in {} after {}):\n  expected {:?}\n  got      {:?}",
                case.name, case.kind, case.expr, case.tz, case.after, case.expected, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ from the reference:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The committed fixture is exactly what the reference produces today (so nobody edits
/// expectations by hand, and a tz-data change that moves an instant is noticed).
#[test]
fn fixture_is_what_the_reference_generates() {
    let python = std::env::var("BELFRY_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(python)
        .arg(support::repo_root().join("tests/reference/cron_reference.py"))
        .arg("--check")
        .output()
        .expect("python3 runs the reference");
    assert!(
        output.status.success(),
        "the reference disagrees with the committed fixture:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
