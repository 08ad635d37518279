//! Group commit for API writes on the leader: writes that arrive while earlier ones are being
//! committed are gathered into one `Batch` entry, so a thousand concurrent creates cost a few
//! Raft entries (and fsyncs) instead of a thousand. Each write still gets its own result:
//! `Batch` applies its commands in order, independently, exactly as separate entries would.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::write_error;
use crate::api::error::ApiError;
use crate::raft::Raft;
use crate::state::{Command, CommandResult};

/// The most writes in one entry.
const MAX_GROUP: usize = 512;
/// Entries in flight at once; while all are busy, new writes queue up for the next group.
const IN_FLIGHT: usize = 4;

/// The log index of the entry and the command's own result.
pub type Committed = Result<(u64, CommandResult), ApiError>;

pub struct PendingWrite {
    pub command: Command,
    pub reply: oneshot::Sender<Committed>,
}

/// Starts the committer; writes are sent through the returned channel.
pub fn start(raft: Raft) -> mpsc::Sender<PendingWrite> {
    let (tx, rx) = mpsc::channel(MAX_GROUP * IN_FLIGHT);
    tokio::spawn(run(raft, rx));
    tx
}

async fn run(raft: Raft, mut queue: mpsc::Receiver<PendingWrite>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit_group(&raft, group).await;
            drop(slot);
        });
    }
}

async fn commit_group(raft: &Raft, mut group: Vec<PendingWrite>) {
    if group.len() == 1 {
        if let Some(write) = group.pop() {
            let outcome = raft
                .client_write(write.command)
                .await
                .map(|r| (r.log_id.index, r.data))
                .map_err(write_error);
            let _ = write.reply.send(outcome);
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<oneshot::Sender<Committed>>) =
        group.into_iter().map(|w| (w.command, w.reply)).unzip();
    match raft.client_write(Command::Batch(commands)).await {
        Ok(response) => {
            let index = response.log_id.index;
            let results = match response.data {
                CommandResult::Batch(results) => results,
                other => vec![other],
            };
            let mut results = results.into_iter();
            for reply in replies {
                let outcome = results
                    .next()
                    .map(|result| (index, result))
                    .ok_or_else(|| ApiError::Internal("a grouped write lost its result".into()));
                let _ = reply.send(outcome);
            }
        }
        Err(err) => {
            let err = write_error(err);
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
