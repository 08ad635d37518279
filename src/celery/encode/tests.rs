//! The envelope checked field by field against `docs/celery-wire.md`.

use super::*;
use serde_json::json;

fn encoder() -> Encoder {
    Encoder {
        origin: "belfry@test".into(),
        layout: KombuLayout::default(),
    }
}

fn occurrence<'a>(args: &'a [Value], kwargs: &'a Map<String, Value>) -> Occurrence<'a> {
    Occurrence {
        task: "tasks.add",
        task_id: Uuid::parse_str("2f11305d-669a-498e-aed3-1f72c6eb2621").unwrap(),
        args,
        kwargs,
        schedule: "nightly",
        scheduled_at: DateTime::parse_from_rfc3339("2025-03-09T07:00:00Z")
            .unwrap()
            .to_utc(),
        trigger: Trigger::Schedule,
    }
}

fn decode(encoded: &Encoded) -> (Value, Value) {
    let envelope: Value = serde_json::from_str(&encoded.payload).unwrap();
    let body_b64 = envelope["body"].as_str().unwrap();
    assert_eq!(body_b64.len() % 4, 0, "base64 body must be padded");
    let body = base64::engine::general_purpose::STANDARD
        .decode(body_b64)
        .unwrap();
    (envelope, serde_json::from_slice(&body).unwrap())
}

#[test]
fn envelope_has_every_field_a_worker_needs() {
    let args = vec![json!(2), json!(3)];
    let kwargs = json!({"scale": 10}).as_object().unwrap().clone();
    let encoded = encoder()
        .encode(&occurrence(&args, &kwargs), &TaskOptions::default())
        .unwrap();
    assert_eq!(encoded.list_key, "celery");
    let (envelope, body) = decode(&encoded);
    assert_eq!(envelope["content-type"], "application/json");
    assert_eq!(envelope["content-encoding"], "utf-8");
    let headers = &envelope["headers"];
    assert_eq!(headers["task"], "tasks.add");
    assert_eq!(headers["id"], "2f11305d-669a-498e-aed3-1f72c6eb2621");
    assert_eq!(headers["root_id"], headers["id"]);
    assert_eq!(headers["lang"], "py");
    assert_eq!(headers["retries"], 0);
    assert_eq!(headers["timelimit"], json!([null, null]));
    assert_eq!(headers["argsrepr"], "[2, 3]");
    assert_eq!(headers["kwargsrepr"], "{'scale': 10}");
    assert_eq!(headers["origin"], "belfry@test");
    assert_eq!(headers["ignore_result"], false);
    assert_eq!(headers["stamps"], json!({}));
    assert!(
        headers["eta"].is_null() && headers["expires"].is_null() && headers["parent_id"].is_null()
    );
    assert_eq!(headers["belfry_schedule"], "nightly");
    assert_eq!(headers["belfry_scheduled_at"], "2025-03-09T07:00:00Z");
    assert!(headers.get("belfry_trigger").is_none());
    let properties = &envelope["properties"];
    assert_eq!(
        properties["delivery_info"],
        json!({"exchange": "", "routing_key": "celery"})
    );
    assert_eq!(properties["body_encoding"], "base64");
    assert_eq!(properties["priority"], 0);
    assert_eq!(properties["correlation_id"], headers["id"]);
    let tag = properties["delivery_tag"].as_str().unwrap();
    assert!(Uuid::parse_str(tag).is_ok() && tag != headers["id"]);
    assert_eq!(
        body,
        json!([[2, 3], {"scale": 10}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])
    );
}

#[test]
fn options_shape_queue_priority_expiry_limits_and_headers() {
    let args = vec![
        json!("é ✓ 😀"),
        json!(18446744073709551615u64),
        json!(-9223372036854775808i64),
    ];
    let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
    let kwargs = json!({"big": big, "ключ": [1, {"x": null}]})
        .as_object()
        .unwrap()
        .clone();
    let mut headers = Map::new();
    headers.insert("tenant".into(), json!("acme"));
    let options = TaskOptions {
        queue: Some("reports".into()),
        priority: Some(5),
        expires: Some(Expires::AfterSeconds(300.0)),
        headers,
        time_limit: Some(30.0),
        soft_time_limit: Some(20.5),
        ignore_result: Some(true),
        ..Default::default()
    };
    let mut occ = occurrence(&args, &kwargs);
    occ.trigger = Trigger::Manual;
    let encoded = encoder().encode(&occ, &options).unwrap();
    assert_eq!(encoded.list_key, "reports\x06\x163");
    let (envelope, body) = decode(&encoded);
    let headers = &envelope["headers"];
    assert_eq!(headers["expires"], "2025-03-09T07:05:00.000000+00:00");
    assert_eq!(headers["timelimit"], json!([30, 20.5]));
    assert_eq!(headers["ignore_result"], true);
    assert_eq!(headers["tenant"], "acme");
    assert_eq!(headers["belfry_trigger"], "manual");
    assert_eq!(envelope["properties"]["priority"], 5);
    assert_eq!(
        envelope["properties"]["delivery_info"]["routing_key"],
        "reports"
    );
    assert_eq!(body[0], Value::Array(args.clone()));
    assert_eq!(body[1]["big"].to_string(), "123456789012345678901234567890");
    assert_eq!(body[1]["ключ"], json!([1, {"x": null}]));
}

#[test]
fn absolute_expiry_is_written_as_given() {
    let at = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.5Z")
        .unwrap()
        .to_utc();
    let options = TaskOptions {
        expires: Some(Expires::At(at)),
        ..Default::default()
    };
    let encoded = encoder()
        .encode(&occurrence(&[], &Map::new()), &options)
        .unwrap();
    let (envelope, _) = decode(&encoded);
    assert_eq!(
        envelope["headers"]["expires"],
        "2030-01-02T03:04:05.500000+00:00"
    );
}

#[test]
fn kombu_priority_buckets_and_prefix() {
    let layout = KombuLayout::default();
    let keys: Vec<String> = (0..=9).map(|p| layout.list_key("q", p)).collect();
    assert_eq!(keys[0..3], ["q", "q", "q"]);
    assert_eq!(keys[3..6], ["q\x06\x163", "q\x06\x163", "q\x06\x163"]);
    assert_eq!(keys[6..9], ["q\x06\x166", "q\x06\x166", "q\x06\x166"]);
    assert_eq!(keys[9], "q\x06\x169");
    let prefixed = KombuLayout {
        global_keyprefix: "app:".into(),
        ..KombuLayout::default()
    };
    assert_eq!(prefixed.list_key("q", 9), "app:q\x06\x169");
}

#[test]
fn rendering_is_deterministic() {
    let args = vec![json!(1)];
    let kwargs = Map::new();
    let a = encoder()
        .encode(&occurrence(&args, &kwargs), &TaskOptions::default())
        .unwrap();
    let b = encoder()
        .encode(&occurrence(&args, &kwargs), &TaskOptions::default())
        .unwrap();
    assert_eq!(a, b);
}
