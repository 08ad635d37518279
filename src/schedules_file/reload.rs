//! Keeping the replicated state in line with the schedules file: on the leader, when it takes
//! office and on SIGHUP. Reading, parsing and diffing happen on a thread of their own; the
//! changes go through `api::control` like any bulk write (admission, group commit, entries of
//! bounded size).
//!
//! Invariant: only a leader writes, and only the file's own schedules are deleted. Must not
//! commit through Raft directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use openraft::ServerState;
use tokio::signal::unix::Signal;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{load, FileError, SOURCE_FILE, SOURCE_LABEL};
use crate::api::Control;
use crate::raft::StateHandle;
use crate::state::diff::{diff, Changes};
use crate::state::Command;

/// Reconciles the file whenever this node becomes leader and on SIGHUP. A follower given a
/// SIGHUP only checks the file, so a mistake shows in its log at once.
pub async fn keep_reconciled(control: Arc<Control>, path: PathBuf, mut hangup: Signal) {
    let mut metrics = control.raft_metrics();
    let mut reconciled_term = None;
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if leading && reconciled_term != Some(term) {
            // Wait until this term's leadership is established before writing.
            if control.confirm_leadership().await {
                reconcile_once(&control, &path).await;
                reconciled_term = Some(term);
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = hangup.recv() => {
                info!(path = %path.display(), "SIGHUP: reloading the schedules file");
                if control.claims_leadership() {
                    reconcile_once(&control, &path).await;
                } else if let Err(err) = load(&path, Utc::now()) {
                    error!(%err, "the schedules file is invalid");
                }
            }
        }
    }
}

/// Without a schedules file a SIGHUP has nothing to reload; it must not end the process.
pub async fn ignore_hangups(mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        info!("SIGHUP: no schedules file is configured; nothing to reload");
    }
}

async fn reconcile_once(control: &Control, path: &Path) {
    let now = Utc::now();
    let (declared, changes) = match plan_changes(control.state(), path, now).await {
        Ok(planned) => planned,
        Err(err) => {
            error!(%err, "the schedules file is invalid; running schedules are left as they are");
            return;
        }
    };
    let total = changes.commands.len();
    match control.commit_in_batches(changes.commands).await {
        Ok((_, refused)) => {
            for rejection in refused {
                warn!(%rejection, "a schedules file change was refused; it is tried again on the next reload");
            }
        }
        Err(err) => {
            warn!(%err, "stopped reconciling the schedules file");
            return;
        }
    }
    crate::heap::release_freed_now().await;
    info!(path = %path.display(), declared, changes = total, "schedules file reconciled");
}

/// The schedules the file's own changes may delete: those it created.
pub fn file_selector() -> BTreeMap<String, String> {
    [(SOURCE_LABEL.to_string(), SOURCE_FILE.to_string())].into()
}

/// Reads the file and works out the changes that bring the state in line with it, on a
/// thread of its own. Why its own: glibc gives each new thread its own heap arena, so the
/// parse's garbage (the TOML document, the declared definitions, the commands) is allocated
/// and freed there, not interleaved with the schedule records the state keeps; a large file
/// otherwise left the state's heap full of small holes that could not be given back.
async fn plan_changes(
    state: StateHandle,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<(usize, Changes), FileError> {
    let shown = path.display().to_string();
    let path = path.to_path_buf();
    let (reply, planned) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("schedules-file".into())
        .spawn(move || {
            let planned = load(&path, now).map(|declared| {
                let applied = state.blocking_read();
                let mut changes = diff(
                    &applied.data,
                    &declared,
                    Some(&file_selector()),
                    now,
                    |_| Uuid::new_v4(),
                );
                drop(applied);
                // Never propose what no node could read back (it would stop every Raft core).
                changes.commands.retain(readable);
                (declared.len(), changes)
            });
            let _ = reply.send(planned);
        });
    if let Err(source) = spawned {
        return Err(FileError::Read {
            path: shown,
            source,
        });
    }
    planned.await.unwrap_or_else(|_| {
        Err(FileError::Read {
            path: shown,
            source: std::io::Error::other("the thread reading it stopped"),
        })
    })
}

fn readable(command: &Command) -> bool {
    match crate::raft::check_round_trip(command) {
        Ok(()) => true,
        Err(err) => {
            error!(%err, "a schedules file change was refused");
            false
        }
    }
}
