//! `belfry cluster …`: status, membership and leadership through the API of any node.
//!
//! Invariant: every subcommand is one or more API calls, shown as a table or JSON, and a
//! failure becomes an exit code through `remote`. It must not reach Raft or storage itself.

use clap::{Args, Subcommand};
use serde_json::json;

use super::remote::{Connection, Failure, Output};
use super::render::{print_json, status_json, status_table};
use crate::api::pb;

#[derive(Args, Debug)]
pub(super) struct ClusterArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum ClusterCommand {
    /// Leader, term, members with their roles and lag, outbox depth.
    Status,
    /// Add a node: it joins as a learner and becomes a voter once caught up.
    AddNode {
        node_id: u64,
        /// host:port the other nodes reach it at.
        address: String,
        /// Keep it a learner (it replicates but does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the membership (before deleting its machine or pod).
    RemoveNode { node_id: u64 },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The voter to hand over to (default: the most caught-up one).
        #[arg(long)]
        to: Option<u64>,
        /// Only if the node at --endpoint is the leader (a preStop hook): otherwise do nothing.
        #[arg(long)]
        if_local_leader: bool,
    },
}

pub(super) async fn run(args: ClusterArgs) -> Result<(), Failure> {
    let mut client = args.connection.client()?;
    let output = args.connection.output;
    let api = &mut client.cluster;
    let status = match args.command {
        ClusterCommand::Status => api.get_status(pb::GetStatusRequest {}).await?,
        ClusterCommand::AddNode {
            node_id,
            address,
            learner,
        } => {
            api.add_node(pb::AddNodeRequest {
                node_id,
                address,
                learner_only: learner,
            })
            .await?
        }
        ClusterCommand::RemoveNode { node_id } => {
            api.remove_node(pb::RemoveNodeRequest { node_id }).await?
        }
        ClusterCommand::TransferLeader {
            to,
            if_local_leader,
        } => {
            let only_if_leader = if if_local_leader {
                api.get_status(pb::GetStatusRequest {})
                    .await?
                    .into_inner()
                    .node_id
            } else {
                0
            };
            let r = api
                .transfer_leader(pb::TransferLeaderRequest {
                    to: to.unwrap_or(0),
                    only_if_leader,
                })
                .await?
                .into_inner();
            match output {
                Output::Json => print_json(&json!({
                    "transferred": r.transferred,
                    "previous_leader": r.previous_leader,
                    "new_leader": r.new_leader,
                })),
                Output::Table if r.transferred => println!(
                    "leadership handed over from node {} to node {}",
                    r.previous_leader, r.new_leader
                ),
                Output::Table => println!("node {only_if_leader} does not lead: nothing to do"),
            }
            return Ok(());
        }
    };
    let status = status.into_inner();
    match output {
        Output::Json => print_json(&status_json(&status)),
        Output::Table => status_table(&status),
    }
    Ok(())
}
