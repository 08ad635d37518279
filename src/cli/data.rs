//! `belfry data …`: offline work on a stopped node's data directory (today: making a restored
//! log another node's, `adopt`).
//!
//! Invariant: the log is checked as a node's open checks it before its owner changes, and never
//! while the node runs: redb's file lock refuses a second opener, and that refusal is reported
//! as such. It must not touch a running node's storage nor anything but the log's identity.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::raft::log_store::{self, LogIdentity};
use crate::raft::NodeId;

#[derive(Args, Debug)]
pub(super) struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Make the Raft log in a data directory this node's: after restoring another node's
    /// backup into it (every node holds the same log, but a node opens only its own). The node
    /// must be stopped.
    Adopt {
        /// The data directory (holding raft-log.redb).
        #[arg(long, env = "BELFRY_DATA_DIR")]
        data_dir: PathBuf,
        /// The id of the node that will run on it.
        #[arg(long, env = "BELFRY_NODE_ID")]
        node_id: NodeId,
        /// The cluster's name, as the node is configured.
        #[arg(long, env = "BELFRY_CLUSTER_NAME", default_value = "belfry")]
        cluster_name: String,
    },
}

/// Runs a `belfry data` subcommand.
pub(super) fn run(args: DataArgs) -> ExitCode {
    match args.command {
        DataCommand::Adopt {
            data_dir,
            node_id,
            cluster_name,
        } => adopt(data_dir, node_id, cluster_name),
    }
}

fn adopt(data_dir: PathBuf, node_id: NodeId, cluster: String) -> ExitCode {
    let path = data_dir.join(crate::node::LOG_FILE);
    let identity = LogIdentity { cluster, node_id };
    match log_store::adopt(&path, &identity) {
        Ok(before) => {
            let was = match before {
                Some(before) => format!("node {} of cluster {:?}", before.node_id, before.cluster),
                None => "not recorded (a format-1 log)".into(),
            };
            println!(
                "{}: now node {} of cluster {:?}; it was {was}",
                path.display(),
                identity.node_id,
                identity.cluster
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
