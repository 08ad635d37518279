//! `GET /cluster` and `GET /cluster/status.json`: members, roles, leader, term, indexes,
//! follower lag, readiness with its reason, recent leader changes, and the node's last hour of
//! dispatch rate and lateness as SVG charts.
//!
//! Invariant: always answers, leader or not: the leader's view (through the API's `GetStatus`)
//! when it answers within `STATUS_WAIT`, else this node's own Raft view. It must not change
//! anything.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use openraft::ServerState;
use serde_json::{json as js, Value};

use super::html::{Esc, Page};
use super::layout::{shell, Nav};
use super::svg::line_chart;
use super::web::{html, json, seconds, utc, Ctx};
use super::Console;
use crate::api::pb;
use crate::api::pb::cluster_server::Cluster;

/// How long the page waits for the leader's view.
const STATUS_WAIT: Duration = Duration::from_secs(2);

struct Member {
    id: u64,
    address: String,
    role: &'static str,
    lag: Option<u64>,
}

/// What both the page and the JSON show.
struct Status {
    node_id: u64,
    leader: Option<u64>,
    term: u64,
    commit_index: u64,
    applied_index: u64,
    members: Vec<Member>,
    /// `None` when ready.
    not_ready: Option<String>,
    /// Whether the members and lag are the leader's view.
    from_leader: bool,
}

async fn status(console: &Console, ctx: &Ctx) -> Status {
    let (node_id, local) = {
        let m = console.control.raft_metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                address: node.addr.clone(),
                role: if Some(*id) == m.current_leader {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                },
                lag: None,
            })
            .collect::<Vec<_>>();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let leading = m.state == ServerState::Leader;
        (
            m.id,
            (m.current_leader, m.current_term, applied, members, leading),
        )
    };
    let not_ready = crate::telemetry::not_ready_because(&console.readiness).await;
    let (leader, term, applied, members, _) = local;
    let request = ctx.request(pb::GetStatusRequest::default());
    match tokio::time::timeout(STATUS_WAIT, console.cluster_api.get_status(request)).await {
        Ok(Ok(reply)) => {
            let s = reply.into_inner();
            Status {
                node_id,
                leader: (s.leader_id != 0).then_some(s.leader_id),
                term: s.term,
                commit_index: s.commit_index,
                applied_index: applied,
                members: s
                    .members
                    .into_iter()
                    .map(|m| Member {
                        id: m.id,
                        address: m.address,
                        role: match pb::Role::try_from(m.role) {
                            Ok(pb::Role::Leader) => "leader",
                            Ok(pb::Role::Learner) => "learner",
                            _ => "follower",
                        },
                        lag: Some(m.lag),
                    })
                    .collect(),
                not_ready,
                from_leader: true,
            }
        }
        _ => Status {
            node_id,
            leader,
            term,
            commit_index: applied,
            applied_index: applied,
            members,
            not_ready,
            from_leader: false,
        },
    }
}

fn status_value(s: &Status, leader_changes: &[crate::telemetry::window::LeaderChange]) -> Value {
    js!({
        "node_id": s.node_id,
        "leader": s.leader,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "ready": s.not_ready.is_none(),
        "not_ready_because": s.not_ready,
        "from_leader": s.from_leader,
        "members": s.members.iter().map(|m| js!({
            "id": m.id, "address": m.address, "role": m.role, "lag": m.lag,
        })).collect::<Vec<_>>(),
        "leader_changes": leader_changes.iter().map(|c| js!({
            "at": utc(c.at), "term": c.term, "leader": c.leader,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /cluster/status.json`: always 200 for a logged-in visitor.
pub(crate) async fn status_json(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(_) => return json(StatusCode::UNAUTHORIZED, &js!({"error": "log in again"})),
    };
    let s = status(&console, &ctx).await;
    json(
        StatusCode::OK,
        &status_value(&s, &console.window.leader_changes()),
    )
}

/// `GET /cluster`.
pub(crate) async fn page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let s = status(&console, &ctx).await;
    let mut page = Page::new();
    let leader = s
        .leader
        .map_or("none".to_string(), |id| format!("node {id}"));
    let _ = write!(
        page,
        "<h1>Cluster</h1><p id=live-note class=hint aria-live=polite></p><dl class=facts>\
         <dt>This node</dt><dd>node {}</dd>\
         <dt>Leader</dt><dd id=leader>Leader: {}</dd>\
         <dt>Term</dt><dd id=term>Term: {}</dd>\
         <dt>Commit index</dt><dd id=commit-index>{}</dd>\
         <dt>Applied index</dt><dd id=applied-index>{}</dd>\
         <dt>Readiness</dt><dd id=readiness>{}</dd></dl>",
        s.node_id,
        Esc(&leader),
        s.term,
        s.commit_index,
        s.applied_index,
        Esc(match &s.not_ready {
            None => "ready".to_string(),
            Some(reason) => format!("not ready: {reason}"),
        }),
    );
    members(&mut page, &s);
    leader_changes(&mut page, &console);
    charts(&mut page, &console);
    let body = shell(
        &ctx,
        s.node_id,
        "Cluster",
        Nav::Cluster,
        console.take_flash(&ctx),
        &page.into_string(),
    );
    html(StatusCode::OK, Some(&ctx), body)
}

fn members(page: &mut Page, s: &Status) {
    page.raw(
        "<h2>Members</h2><div class=scroll><table id=members><thead><tr><th scope=col>Node</th>\
         <th scope=col>Address</th><th scope=col>Role</th><th scope=col>Lag (entries)</th></tr>\
         </thead><tbody>",
    );
    for m in &s.members {
        let _ = write!(
            page,
            "<tr data-node={}><td>node {}</td><td>{}</td><td class=role>{}</td><td>{}</td></tr>",
            m.id,
            m.id,
            Esc(&m.address),
            m.role,
            m.lag.map_or("-".to_string(), |l| l.to_string()),
        );
    }
    page.raw("</tbody></table></div>");
    if !s.from_leader {
        page.raw("<p class=hint>The leader did not answer: members and roles as this node sees them.</p>");
    }
}

fn leader_changes(page: &mut Page, console: &Console) {
    page.raw("<h2>Recent leader changes</h2><ul id=leader-changes>");
    let changes = console.window.leader_changes();
    if changes.is_empty() {
        page.raw("<li>None seen since this node started.</li>");
    }
    for c in changes {
        let _ = write!(
            page,
            "<li>{}: node {} leads term {}</li>",
            Esc(utc(c.at)),
            c.leader.map_or("?".into(), |l| l.to_string()),
            c.term
        );
    }
    page.raw("</ul>");
}

fn charts(page: &mut Page, console: &Console) {
    let now = Utc::now();
    let samples = console.window.samples();
    let ago = |at: chrono::DateTime<Utc>| (now - at).num_milliseconds() as f64 / 1000.0;
    let rate: Vec<(f64, f64)> = samples.iter().map(|s| (ago(s.at), s.rate)).collect();
    let lateness: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (ago(s.at), s.lateness_max))
        .collect();
    let worst = samples.iter().map(|s| s.lateness_max).fold(0.0, f64::max);
    let _ = write!(
        page,
        "<h2>Dispatch from this node, last hour</h2><p class=hint>Samples every 10 s; \
         lateness is the largest in each sample (worst in the hour: {}). Times in UTC.</p>\
         <figure><figcaption>Dispatch lateness (s)</figcaption>{}</figure>\
         <figure><figcaption>Dispatch rate (messages/s)</figcaption>{}</figure>",
        Esc(seconds(worst)),
        line_chart(
            "chart-lateness",
            "Dispatch lateness, seconds, last hour",
            "s",
            &lateness
        ),
        line_chart(
            "chart-rate",
            "Dispatch rate, messages per second, last hour",
            "msg/s",
            &rate
        ),
    );
}
