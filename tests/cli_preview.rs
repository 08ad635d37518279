//! `belfry preview` as a user runs it: exactly the instants on stdout, one-line errors with exit
//! code 2 on bad input.

use std::process::Command;

fn preview(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_belfry"))
        .arg("preview")
        .args(args)
        .output()
        .expect("run belfry");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn prints_only_instants() {
    let (code, out, err) = preview(&[
        "--cron",
        "30 2 * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2025-03-08T12:00:00Z",
        "-n",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2025-03-09T07:00:00Z\n2025-03-10T06:30:00Z\n2025-03-11T06:30:00Z\n2025-03-12T06:30:00Z\n2025-03-13T06:30:00Z\n"
    );
    assert!(err.is_empty());
}

#[test]
fn crontab_every_and_defaults() {
    let (code, out, _) = preview(&[
        "--crontab",
        "0 9 * * mon-fri",
        "--tz",
        "Asia/Kolkata",
        "--after",
        "2025-06-06T00:00:00Z",
        "-n",
        "3",
    ]);
    assert_eq!(code, 0);
    // Friday 09:00 IST, then Monday and Tuesday (03:30Z).
    assert_eq!(
        out,
        "2025-06-06T03:30:00Z\n2025-06-09T03:30:00Z\n2025-06-10T03:30:00Z\n"
    );
    let (code, out, _) = preview(&[
        "--every",
        "15m",
        "--anchor",
        "2025-01-01T00:00:00Z",
        "--after",
        "2025-01-01T00:07:00Z",
        "-n",
        "4",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "2025-01-01T00:15:00Z\n2025-01-01T00:30:00Z\n2025-01-01T00:45:00Z\n2025-01-01T01:00:00Z\n"
    );
    // --after defaults to now and -n to 10.
    let (code, out, _) = preview(&["--cron", "* * * * *"]);
    assert_eq!((code, out.lines().count()), (0, 10));
}

#[test]
fn bad_input_is_one_line_on_stderr_with_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cron", "0 0 30 2 *"], "never match"),
        (&["--cron", "61 * * * *"], "minute"),
        (&["--cron", "0 0 * * * *"], "six-field"),
        (&["--cron", "* * * * *", "--tz", "Mars/Olympus"], "tz"),
        (&["--every", "0s"], "every"),
        (&["--every", "-5m"], "every"),
        (&["--cron", "* * * * *", "--after", "yesterday"], "after"),
        (
            &["--cron", "* * * * *", "--every", "1m"],
            "cannot be used with",
        ),
        (&[], "required"),
        (&["--cron", "* * * * *", "--frobnicate"], "frobnicate"),
        (
            &["--solar", "moonrise", "--lat", "1", "--lon", "2"],
            "dusk_astronomical",
        ),
        (&["--solar", "sunset", "--lon", "2"], "--lat"),
        (&["--solar", "sunset", "--lat", "91", "--lon", "2"], "--lat"),
        (
            &["--solar", "sunset", "--lat", "1", "--lon", "-181"],
            "--lon",
        ),
        (
            &[
                "--solar", "sunset", "--lat", "1", "--lon", "2", "--tz", "UTC",
            ],
            "--tz",
        ),
        (&["--every", "1m", "--lat", "1"], "--lat"),
    ];
    for (args, expected) in cases {
        let (code, out, err) = preview(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
    }
}

#[test]
fn stops_at_the_end_of_year_9999_and_refuses_what_the_api_refuses() {
    let (code, out, err) = preview(&["--every", "1s", "--anchor", "9999-12-31T23:59:58Z"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "9999-12-31T23:59:58Z\n9999-12-31T23:59:59Z\n");
    for args in [
        &["--once", "2030-01-01T00:00:60Z"][..],
        &["--every", "1s", "--anchor", "9999-12-31T23:59:59-01:00"][..],
    ] {
        let (code, out, err) = preview(args);
        assert_eq!(code, 2, "{args:?} printed {out}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn solar_events_print_like_the_other_kinds() {
    let (code, out, err) = preview(&[
        "--solar",
        "sunset",
        "--lat",
        "78",
        "--lon",
        "15.6",
        "--after",
        "2026-06-21T00:00:00Z",
        "-n",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // The midnight sun: no sunset until late August, then one a day.
    assert!(lines[0].starts_with("2026-08-2"), "{out}");
    for line in lines {
        assert_eq!(line.len(), "2026-08-25T00:00:00Z".len(), "{line}");
        assert!(line.ends_with('Z'), "{line}");
    }
    let (code, out, err) = preview(&[
        "--solar",
        "solar_noon",
        "--lat",
        "-33.87",
        "--lon",
        "151.21",
        "--after",
        "2026-12-07T00:00:00Z",
        "-n",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with("2026-12-07T01:"), "{out}");
}
