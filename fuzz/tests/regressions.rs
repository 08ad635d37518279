//! Every finding of the fuzzer, replayed through its target: each input here once broke a
//! promise (the comment says which and where it was fixed). Seeds and indexes name the run
//! that found it: `belfry-fuzz <target> --seed S --index I` regenerates it.

use belfry::celery::TaskOptions;
use belfry_fuzz::codec;
use belfry_fuzz::runner::run_one;
use belfry_fuzz::targets::{self, check_accepted, entry, put};

fn replay(target: &str, input: &[u8]) {
    let target = targets::by_name(target).expect("a target");
    if let Some((kind, message)) = run_one(target.as_ref(), input) {
        panic!("{kind:?}: {message}");
    }
}

/// log_entry, seed 3, input 1622 (and peer, seed 3, input 363): a put stamped with chrono's
/// earliest instant panicked apply while planning (`plan_from - 1 ms` overflowed in
/// `state::data`). Reachable from any log entry or AppendEntries a node decodes.
#[test]
fn a_put_at_the_earliest_instant_applies() {
    replay("log_entry", br#"{"log_id":{"index":1,"leader_id":{"node_id":1,"term":3}},"payload":{"Normal":{"Put":{"at":"-262143-01-01T00:00:00Z","def":{"args":[],"catchup":{"rule":"latest","window_secs":8129},"description":"","enabled":true,"kwargs":{},"labels":{},"name":"x","options":{},"spec":{"every":"1s"},"task":"t"},"expected_revision":0,"incarnation":"00000000-0000-0000-0000-000000000007"}}}}"#);
}

/// forwarded, seed 3, input 17241: a valid definition with `time_limit =
/// 4249095613192397345` came back from its log entry one unit in the last place off:
/// serde_json parsed floats inexactly until built with `float_roundtrip`, so followers
/// (which decode the entry) and the leader (which applies what it proposed) held different
/// definitions.
#[test]
fn a_float_option_comes_back_from_the_log_exactly() {
    replay("forwarded", INPUT);
    let mut def = belfry_fuzz::defs::arbitrary_defs(1, 1, &Default::default()).remove(0);
    let options = TaskOptions {
        time_limit: Some(4.249_095_613_192_397_3e18),
        soft_time_limit: Some(0.1 + 0.2),
        expires: None,
        ..TaskOptions::clone(&def.options)
    };
    def.options = options.into();
    check_accepted(&def).unwrap();
    let logged = entry(1, put(&def));
    let back = codec::decode_entry(&codec::encode_entry(&logged).unwrap()).unwrap();
    assert_eq!(back, logged);
}

/// interval, cron and once, hand-made inputs the targets' bounds check refused: with a
/// `start_at` carrying microseconds, an occurrence inside the millisecond before it was
/// returned (`Spec::next_after` began its search 1 ms early; now 1 ns).
#[test]
fn no_occurrence_comes_before_start_at() {
    replay(
        "interval",
        b"every=1s\nanchor=2025-01-01T00:00:00Z\nstart_at=2025-01-01T00:00:10.0005Z",
    );
    replay(
        "cron",
        b"cron=* * * * *\nstart_at=2025-01-01T00:00:00.0005Z",
    );
    replay(
        "once",
        b"once=2025-01-01T00:00:00.0000001Z\nstart_at=2025-01-01T00:00:00.0005Z",
    );
}

/// interval, seed 20261207, input 865590: an interval anchored on a leap second
/// (`02:30:60Z`) never moves past 2025-03-30T01:00:59Z: `next_after` of that instant is the
/// instant itself. Leap seconds are being refused where instants are parsed.
#[test]
fn an_interval_anchored_on_a_leap_second_moves_on() {
    let input = b"every=10m\nanchor=2025-03-09T02:30:60Z\nstart_at=2025-03-30T00:59:59Z";
    let target = targets::by_name("interval").expect("a target");
    if let Some((kind, message)) = run_one(target.as_ref(), input) {
        panic!("{kind:?}: {message}");
    }
}

/// config, seed 20261208, input 634283: a host name ending in `-18446744073709551615` overflowed
/// `node_id_from_hostname`'s `ordinal + 1` (a panic with overflow checks, node id 0 without).
#[test]
fn the_largest_statefulset_ordinal_is_refused() {
    replay(
        "config",
        b"--peers=belfry-18446744073709551615\nnode_id = 1\n",
    );
}

const INPUT: &[u8] = b"{\"not_after\":\"2026-12-07T12:00:36.868536626Z\",\"request\":{\"Write\":{\"Update\":{\"def\":{\"args\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"RemoveNode\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],[[false,\"quote \\\" and backslash \\\\\",-1],[-170141183460469231731687303715884105729]],false],\"catchup\":{\"rule\":\"none\",\"window_secs\":2006384},\"description\":\"\",\"enabled\":true,\"kwargs\":{\"0\":\"\xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9 \xe2\x98\x83\",\"kw_1\":{}},\"labels\":{\"belfry.io/source0\":\"file\",\"\xc3\xbc1\":\"data\"},\"name\":\"nightly.cleanup-1\",\"options\":{\"expires\":\"2071-01-06T03:18:16.060Z\",\"ignore_result\":true,\"routing_key\":\"celery0\",\"time_limit\":4249095613192397345},\"spec\":{\"crontab\":\"30 2 * * *\",\"tz\":\"America/New_York\"},\"task\":\"tasks.report\"},\"expected_revision\":1,\"keep_enabled\":true}}}}";
