//! Group commit for API writes on the leader: writes that arrive while earlier ones are being
//! committed are gathered into one `Batch` entry, so a thousand concurrent creates cost a few
//! Raft entries (and fsyncs) instead of a thousand.
//!
//! Invariant: each write gets its own command's result, exactly as a separate entry would
//! (`Batch` applies in order, independently); a group holds at most `MAX_COMMANDS_PER_ENTRY`
//! commands, with at most 4 entries in flight. It must not check or change a command (`admit`).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::write_error;
use crate::api::error::ApiError;
use crate::raft::Raft;
use crate::state::{Command, CommandResult, MAX_COMMANDS_PER_ENTRY};

/// Entries in flight at once; while all are busy, new writes queue up for the next group.
const IN_FLIGHT: usize = 4;

/// The log index of the entry and the command's own result.
pub(super) type Committed = Result<(u64, CommandResult), ApiError>;

pub(super) struct PendingWrite {
    pub command: Command,
    pub reply: oneshot::Sender<Committed>,
}

/// Starts the committer; writes are sent through the returned channel.
pub(super) fn start(raft: Raft) -> mpsc::Sender<PendingWrite> {
    let (tx, rx) = mpsc::channel(MAX_COMMANDS_PER_ENTRY * IN_FLIGHT);
    tokio::spawn(run(raft, rx));
    tx
}

async fn run(raft: Raft, mut queue: mpsc::Receiver<PendingWrite>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(group) = next_group(&mut queue, &mut carried).await else {
            return;
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            commit_group(&raft, group).await;
            drop(slot);
        });
    }
}

/// Waits for a write, then adds those already queued while the entry stays within
/// `MAX_COMMANDS_PER_ENTRY`; a write that would overflow it is carried to the next group.
/// `None` once the queue is closed and empty.
async fn next_group(
    queue: &mut mpsc::Receiver<PendingWrite>,
    carried: &mut Option<PendingWrite>,
) -> Option<Vec<PendingWrite>> {
    let first = match carried.take() {
        Some(write) => write,
        None => queue.recv().await?,
    };
    let mut commands = first.command.weight();
    let mut group = vec![first];
    while commands < MAX_COMMANDS_PER_ENTRY {
        let Ok(write) = queue.try_recv() else { break };
        let more = write.command.weight();
        if commands + more > MAX_COMMANDS_PER_ENTRY {
            *carried = Some(write);
            break;
        }
        commands += more;
        group.push(write);
    }
    Some(group)
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn write(commands: usize) -> PendingWrite {
        let delete = |i: usize| Command::Delete {
            name: format!("s{i}"),
            expected_revision: None,
            at: Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
        };
        let command = if commands == 1 {
            delete(0)
        } else {
            Command::Batch((0..commands).map(delete).collect())
        };
        PendingWrite {
            command,
            reply: oneshot::channel().0,
        }
    }

    async fn groups(writes: Vec<usize>) -> Vec<Vec<usize>> {
        let (tx, mut rx) = mpsc::channel(writes.len().max(1));
        for commands in writes {
            tx.send(write(commands)).await.unwrap();
        }
        drop(tx);
        let mut carried = None;
        let mut groups = Vec::new();
        while let Some(group) = next_group(&mut rx, &mut carried).await {
            groups.push(group.iter().map(|w| w.command.weight()).collect());
        }
        groups
    }

    #[tokio::test]
    async fn single_writes_share_entries_up_to_the_command_limit() {
        let groups = groups(vec![1; 2_500]).await;
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![1_000, 1_000, 500]);
    }

    #[tokio::test]
    async fn bulk_writes_are_not_merged_past_the_limit_and_keep_their_order() {
        let groups = groups(vec![600, 600, 1, 399, 1_000, 5]).await;
        assert_eq!(
            groups,
            vec![vec![600], vec![600, 1, 399], vec![1_000], vec![5]]
        );
    }
}
