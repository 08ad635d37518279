//! The web console against a real three-node cluster of `belfry server` processes, each with
//! `--console-listen`: login with good and bad tokens, roles (a read-only session sees no
//! action and is refused them with 403), CSRF, the security headers and cookie attributes,
//! hostile values escaped, actions through a follower's console landing (a trigger reaching
//! the test's own Redis), list search/filters/orders/pages, a schedule page with runs, and the
//! create/edit form with its validation.

mod support;

use std::time::Duration;

use belfry::api::pb;
use support::http::{query_value, Browser, Reply};
use support::procs::{Clients, Consumer, ProcCluster, ADMIN_TOKEN, READONLY_TOKEN};
use support::{wait_for, RedisServer};

const QUEUE: &str = "celery";
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
const HOSTILE_TASK: &str = "<img/src=x/onerror=alert(1)>";
const HOSTILE_LABEL: &str = "\"><script>alert(2)</script>";
const ACTION_TEXTS: [&str; 7] = [
    ">Pause<",
    ">Resume<",
    ">Trigger now<",
    ">Delete<",
    ">Backfill<",
    ">New schedule<",
    ">Edit<",
];

fn cluster_with_console(redis: &RedisServer) -> (ProcCluster, usize) {
    let mut options = support::procs::options(3, &redis.url(0), "", "");
    options.console = true;
    let mut cluster = ProcCluster::start(options).expect("start a test cluster");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    (cluster, leader)
}

fn console_of(cluster: &ProcCluster, i: usize) -> Browser {
    let addr = cluster.nodes[i]
        .console_addr
        .clone()
        .expect("a console port");
    // The console starts with the node's background tasks: wait until it answers.
    wait_for("the console to answer", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).ok()
    });
    Browser::new(&addr)
}

fn logged_in(cluster: &ProcCluster, i: usize, token: &str) -> Browser {
    let mut browser = console_of(cluster, i);
    let reply = browser.login(token);
    assert_eq!(reply.status, 303, "{}", reply.body);
    browser
}

fn rows(page: &Reply) -> Vec<String> {
    let marker = "<tr><td><a href=\"/schedule?name=";
    page.body
        .match_indices(marker)
        .map(|(at, _)| {
            let rest = &page.body[at + marker.len()..];
            let text = &rest[rest.find('>').expect("a link") + 1..];
            text[..text.find('<').expect("the link's end")].to_string()
        })
        .collect()
}

fn spec(name: &str, task: &str, every: &str, enabled: bool, team: &str) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: name.into(),
        task: task.into(),
        spec: Some(pb::Spec {
            every: every.into(),
            ..Default::default()
        }),
        enabled: Some(enabled),
        labels: [("team".to_string(), team.to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_roles_csrf_headers_and_escaping() {
    let redis = RedisServer::start().expect("start redis-server");
    let (cluster, leader) = cluster_with_console(&redis);
    let follower = (leader + 1) % 3;
    let mut api = cluster.client(leader, Some(ADMIN_TOKEN)).schedules;
    let mut hostile = spec("hostile/one", HOSTILE_TASK, "1h", true, HOSTILE_LABEL);
    hostile.kwargs_json = r#"{"x": "</script><b onmouseover=alert(3)>"}"#.into();
    api.create_schedule(pb::CreateScheduleRequest {
        schedule: Some(hostile),
    })
    .await
    .expect("create the hostile schedule");

    // The login page, its headers and its pre-session cookie.
    let mut browser = console_of(&cluster, follower);
    let form = browser.get("/login");
    assert_eq!(form.status, 200);
    assert_eq!(form.header("content-security-policy"), Some(CSP));
    assert_eq!(form.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(form.header("referrer-policy"), Some("same-origin"));
    assert!(form.body.contains("<label for=token>API token</label>"));
    assert!(form
        .body
        .contains("<input id=token name=token type=password"));
    assert!(!form.body.contains("<script>") && !form.body.contains("style="));
    // Unauthenticated pages send to the login.
    assert_eq!(browser.get("/schedules").status, 303);
    // No CSRF token: refused.
    let no_csrf = browser.post_form("/login", &[("token", ADMIN_TOKEN)]);
    assert_eq!(no_csrf.status, 403);
    // A bad token: the form again, 401.
    let bad = browser.post_form("/login", &[("csrf", &form.csrf()), ("token", "nope")]);
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("Unknown token"));
    // A good one: a session cookie with its attributes (no TLS: not Secure).
    let good = browser.post_form("/login", &[("csrf", &form.csrf()), ("token", ADMIN_TOKEN)]);
    assert_eq!(good.status, 303);
    assert_eq!(good.header("location"), Some("/"));
    let cookie = good
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("belfry_session="))
        .expect("a session cookie")
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(!cookie.contains(ADMIN_TOKEN), "{cookie}");

    // Hostile values are escaped on the list and on the schedule page.
    let list = browser.get(&format!(
        "/schedules?q={}",
        query_value("team=\"><script>alert(2)</script>")
    ));
    assert_eq!(list.status, 200);
    assert_eq!(rows(&list), vec!["hostile/one"]);
    let page = browser.get("/schedule?name=hostile%2Fone");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    for shown in [&list, &page] {
        assert!(!shown.body.contains("<script>alert"), "raw script");
        assert!(!shown.body.contains("<img/src"), "raw img");
        assert!(shown.body.contains("&lt;img/src=x/onerror=alert(1)&gt;"));
        assert!(shown
            .body
            .contains("&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
    }
    assert!(!page.body.contains("<b onmouseover"));
    assert!(page.body.contains("<span id=role>admin</span>"));
    for text in [
        ">Pause<",
        ">Trigger now<",
        ">Delete<",
        ">Backfill<",
        ">Edit<",
    ] {
        assert!(page.body.contains(text), "admin sees {text}");
    }

    // An admin's action without the CSRF token: refused, nothing changes.
    let refused = browser.post_form("/schedule/pause", &[("name", "hostile/one")]);
    assert_eq!(refused.status, 403);

    // A read-only session sees no action and is refused them.
    let mut reader = logged_in(&cluster, follower, READONLY_TOKEN);
    let page = reader.get("/schedule?name=hostile%2Fone");
    assert!(page.body.contains("<span id=role>read-only</span>"));
    for text in ACTION_TEXTS {
        assert!(!page.body.contains(text), "read-only sees {text}");
    }
    assert!(!reader.get("/schedules").body.contains(">New schedule<"));
    let csrf = page.csrf();
    for path in ["/schedule/pause", "/schedule/trigger", "/schedule/delete"] {
        let reply = reader.post_form(path, &[("csrf", &csrf), ("name", "hostile/one")]);
        assert_eq!(reply.status, 403, "{path}");
    }
    assert_eq!(reader.get("/schedules/new").status, 403);
    let stored = api
        .get_schedule(pb::GetScheduleRequest {
            name: "hostile/one".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(stored.definition.expect("a definition").enabled, Some(true));
    assert_eq!(stored.revision, 1);

    // Logging out ends the session.
    let out = reader.post_form("/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert_eq!(reader.get("/schedules").status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_search_filters_orders_and_pages() {
    let redis = RedisServer::start().expect("start redis-server");
    let (cluster, leader) = cluster_with_console(&redis);
    let follower = (leader + 2) % 3;
    let mut api = cluster.client(leader, Some(ADMIN_TOKEN)).schedules;
    let specs = (0..120)
        .map(|i| {
            let task = if i % 2 == 0 { "t.beta" } else { "t.alpha" };
            let team = if i % 4 == 0 { "b" } else { "a" };
            spec(
                &format!("s-{i:03}"),
                task,
                &format!("{}h", 1 + i),
                i % 10 != 0,
                team,
            )
        })
        .collect();
    api.apply_schedules(pb::ApplySchedulesRequest {
        schedules: specs,
        prune: false,
        prune_selector: Default::default(),
    })
    .await
    .expect("apply");
    let mut browser = logged_in(&cluster, follower, READONLY_TOKEN);

    let first = browser.get("/schedules");
    assert_eq!(first.status, 200);
    let names = rows(&first);
    assert_eq!(names.len(), 50);
    assert_eq!(names[0], "s-000");
    assert_eq!(names[49], "s-049");
    assert!(first.body.contains(">Next page<") && !first.body.contains(">Previous page<"));
    let third = browser.get("/schedules?page=3");
    assert_eq!(
        rows(&third),
        (100..120).map(|i| format!("s-{i:03}")).collect::<Vec<_>>()
    );
    assert!(third.body.contains(">Previous page<") && !third.body.contains(">Next page<"));

    // Labels, words, state and kind filters, and the two other orders.
    let team_b = browser.get(&format!("/schedules?q={}", query_value("team=b")));
    assert_eq!(rows(&team_b).len(), 30);
    let words = browser.get("/schedules?q=S-11");
    assert_eq!(rows(&words).len(), 10);
    let alpha_words = browser.get(&format!("/schedules?q={}", query_value("alpha s-00")));
    assert_eq!(
        rows(&alpha_words),
        vec!["s-001", "s-003", "s-005", "s-007", "s-009"]
    );
    let paused = browser.get("/schedules?state=paused");
    assert_eq!(rows(&paused).len(), 12);
    assert!(rows(&paused).iter().all(|n| n.ends_with('0')));
    let active = browser.get("/schedules?state=active&page=3");
    assert_eq!(rows(&active).len(), 108 - 100);
    assert!(rows(&browser.get("/schedules?kind=cron")).is_empty());
    assert_eq!(rows(&browser.get("/schedules?kind=every")).len(), 50);
    let by_task = browser.get("/schedules?sort=task");
    let by_task = rows(&by_task);
    assert_eq!(by_task[0], "s-001");
    assert!(by_task
        .iter()
        .all(|n| n[2..].parse::<u32>().unwrap() % 2 == 1));
    let by_task_page2 = rows(&browser.get("/schedules?sort=task&page=2"));
    assert_eq!(by_task_page2[9], "s-119");
    assert_eq!(by_task_page2[10], "s-000");
    // By next run: the schedule due soonest first (every 1h, created together), paused last.
    let by_next = rows(&browser.get("/schedules?sort=next&state=active"));
    assert_eq!(by_next[0], "s-001");
    assert_eq!(browser.get("/schedules?sort=sideways").status, 400);
    assert_eq!(browser.get("/schedules?page=0").status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_through_a_follower_land() {
    let redis = RedisServer::start().expect("start redis-server");
    let (cluster, leader) = cluster_with_console(&redis);
    let follower = (leader + 1) % 3;
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    let mut api = cluster.client(leader, Some(ADMIN_TOKEN)).schedules;
    let mut browser = logged_in(&cluster, follower, ADMIN_TOKEN);

    // Create through the form: an invalid spec is refused with the field named, a valid one
    // is saved.
    let form = browser.get("/schedules/new");
    assert_eq!(form.status, 200);
    for label in [
        "Name",
        "Task",
        "Kind",
        "Spec",
        "Timezone",
        "Args (JSON)",
        "Kwargs (JSON)",
        "Queue",
        "Labels",
    ] {
        assert!(form.body.contains(&format!(">{label}</label>")), "{label}");
    }
    let csrf = form.csrf();
    let fields = |spec: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "reports/daily".to_string()),
            ("task", "app.tasks.report".to_string()),
            ("kind", "cron".to_string()),
            ("spec", spec.to_string()),
            ("timezone", "Europe/Paris".to_string()),
            ("args", "[1, 2]".to_string()),
            ("kwargs", "{\"k\": true}".to_string()),
            ("queue", String::new()),
            ("labels", "team=data, env=test".to_string()),
        ]
    };
    let bad = fields("0 99 * * *");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = browser.post_form("/schedules/new", &bad);
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("role=alert>spec: hour field"),
        "{}",
        refused.body
    );
    // Live validation answers the same, with a preview for a valid spec.
    let live = browser.post_json(
        "/api/validate",
        r#"{"name":"x","task":"t.t","kind":"cron","spec":"0 9 * * 1-5","timezone":"Europe/Paris"}"#,
        &csrf,
    );
    assert_eq!(live.status, 200);
    assert!(
        live.body.contains("\"ok\":true") && live.body.contains("Europe/Paris"),
        "{}",
        live.body
    );
    let live_bad = browser.post_json(
        "/api/validate",
        r#"{"name":"x","task":"t.t","kind":"every","spec":"soon"}"#,
        &csrf,
    );
    assert!(
        live_bad.body.contains("\"field\":\"spec\""),
        "{}",
        live_bad.body
    );
    assert_eq!(
        browser.post_json("/api/validate", "{}", "wrong").status,
        403
    );
    let good = fields("0 9 * * 1-5");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = browser.post_form("/schedules/new", &good);
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.header("location"),
        Some("/schedule?name=reports%2Fdaily")
    );
    let page = browser.get("/schedule?name=reports%2Fdaily");
    assert!(page
        .body
        .contains("At 09:00, Monday through Friday, in Europe/Paris"));
    assert!(page.body.contains("<table id=upcoming>"));
    assert_eq!(page.body.matches(" Europe/Paris</td>").count(), 10);
    let csrf = page.csrf();

    // Pause and resume through the follower: the state changes cluster-wide.
    let name = [("csrf", csrf.as_str()), ("name", "reports/daily")];
    assert_eq!(browser.post_form("/schedule/pause", &name).status, 303);
    let page = browser.get("/schedule?name=reports%2Fdaily");
    assert!(page.body.contains(">paused</strong>"));
    assert!(page.body.contains(">Resume<"));
    let stored = api
        .get_schedule(pb::GetScheduleRequest {
            name: "reports/daily".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        stored.definition.as_ref().and_then(|d| d.enabled),
        Some(false)
    );
    assert_eq!(browser.post_form("/schedule/resume", &name).status, 303);
    assert!(browser
        .get("/schedule?name=reports%2Fdaily")
        .body
        .contains(">active</strong>"));

    // Trigger now: the flash names the task id, and that message reaches Redis.
    assert_eq!(browser.post_form("/schedule/trigger", &name).status, 303);
    let page = browser.get("/schedule?name=reports%2Fdaily");
    let at = page
        .body
        .find("Triggered: task id ")
        .expect("the trigger's flash");
    let task_id = page.body[at + 19..at + 19 + 36].to_string();
    let arrival = wait_for(
        "the triggered message in Redis",
        Duration::from_secs(20),
        || {
            consumer
                .arrivals()
                .into_iter()
                .find(|a| a.task_id == task_id)
        },
    );
    assert!(arrival.manual);
    assert_eq!(arrival.schedule, "reports/daily");
    // The run shows on the schedule page, with its task id.
    wait_for("the run on the page", Duration::from_secs(20), || {
        let page = browser.get("/schedule?name=reports%2Fdaily");
        (page.body.contains(&task_id) && page.body.contains("<tr class=\"run sent\">"))
            .then_some(())
    });
    assert!(browser
        .get("/schedule?name=reports%2Fdaily")
        .body
        .contains("<svg id=timeline"));

    // Edit: the form holds the stored values; saving changes the spec only.
    let edit = browser.get("/schedule/edit?name=reports%2Fdaily");
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains("value=\"0 9 * * 1-5\""));
    let mut changed = fields("30 8 * * *");
    changed.push((
        "revision",
        edit.body
            .split("name=revision value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string(),
    ));
    let changed: Vec<(&str, &str)> = changed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(browser.post_form("/schedule/edit", &changed).status, 303);
    let stored = api
        .get_schedule(pb::GetScheduleRequest {
            name: "reports/daily".into(),
        })
        .await
        .expect("get")
        .into_inner();
    let def = stored.definition.expect("a definition");
    assert_eq!(def.spec.expect("a spec").cron, "30 8 * * *");
    assert_eq!(def.args_json, "[1,2]");

    // Delete after the confirmation, with the revision shown.
    let confirm = browser.get(&format!(
        "/schedule/delete?name=reports%2Fdaily&revision={}",
        stored.revision
    ));
    assert_eq!(confirm.status, 200);
    let csrf = confirm.csrf();
    let revision = stored.revision.to_string();
    let stale = browser.post_form(
        "/schedule/delete",
        &[
            ("csrf", &csrf),
            ("name", "reports/daily"),
            ("revision", "1"),
        ],
    );
    assert_eq!(stale.status, 303);
    assert!(browser
        .get("/schedule?name=reports%2Fdaily")
        .body
        .contains("role=alert"));
    let deleted = browser.post_form(
        "/schedule/delete",
        &[
            ("csrf", &csrf),
            ("name", "reports/daily"),
            ("revision", &revision),
        ],
    );
    assert_eq!(deleted.status, 303);
    assert_eq!(deleted.header("location"), Some("/schedules"));
    assert_eq!(browser.get("/schedule?name=reports%2Fdaily").status, 404);

    // The cluster page and its JSON, from the follower.
    let page = browser.get("/cluster");
    assert!(page.body.contains("<table id=members>"));
    assert!(page
        .body
        .contains(&format!("Leader: node {}", cluster.nodes[leader].id)));
    assert!(
        page.body.contains("<svg id=chart-lateness") && page.body.contains("<svg id=chart-rate")
    );
    let status = browser.get("/cluster/status.json");
    assert_eq!(status.status, 200);
    let json: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(json["leader"], cluster.nodes[leader].id);
    assert_eq!(json["node_id"], cluster.nodes[follower].id);
    assert_eq!(json["members"].as_array().map(Vec::len), Some(3));
}

/// A CA and a certificate it signs for 127.0.0.1: (CA, certificate, key) in PEM.
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("node key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("node params");
    let cert = params.signed_by(&key, &issuer).expect("node cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// One HTTPS request trusting `ca_pem`; the raw reply.
async fn https(ca_pem: &str, addr: &str, request: String) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("the CA"))
        .expect("a root");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    let mut tls = connector.connect(name, tcp).await.expect("a TLS handshake");
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_console_uses_the_api_certificate_and_secure_cookies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = pki();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write pem");
        path.display().to_string()
    };
    let config = format!(
        "[security]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
        write("node.pem", &cert),
        write("node.key", &key),
        write("ca.pem", &ca)
    );
    let redis = RedisServer::start().expect("start redis-server");
    let mut options = support::procs::options(1, &redis.url(0), "", &config);
    options.console = true;
    let mut cluster = ProcCluster::start(options).expect("start a node");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let addr = cluster.nodes[0].console_addr.clone().expect("a console");
    wait_for("the console to answer", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).ok()
    });
    let head = format!("Host: {addr}\r\nConnection: close\r\n");
    let form = https(&ca, &addr, format!("GET /login HTTP/1.1\r\n{head}\r\n")).await;
    assert!(form.starts_with("HTTP/1.1 200"), "{form}");
    assert!(form.contains(&format!("content-security-policy: {CSP}")));
    let pre_line = form
        .lines()
        .find(|l| l.starts_with("set-cookie: belfry_presession="))
        .expect("a pre-session cookie");
    assert!(pre_line.contains("; Secure"), "{pre_line}");
    let pre = pre_line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let at = form.find("name=csrf value=\"").expect("a CSRF field") + 17;
    let csrf = &form[at..at + 64];
    let body = format!("csrf={csrf}&token={ADMIN_TOKEN}");
    let login = https(
        &ca,
        &addr,
        format!(
            "POST /login HTTP/1.1\r\n{head}Cookie: {pre}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    let session = login
        .lines()
        .find(|l| l.starts_with("set-cookie: belfry_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(session.contains(attribute), "{session}");
    }
}
