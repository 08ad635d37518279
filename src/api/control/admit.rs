//! Admission of writes on the leader, whichever way they arrived (a local API call, a call a
//! follower forwarded, the schedules file): every definition is validated here, where the
//! write is applied, and nothing is proposed that would not read back as itself.
//!
//! Invariant: no command that fails validation or the round trip reaches the log. Must not
//! change the command.

use crate::api::error::ApiError;
use crate::state::validate::{validate_def, validate_existing_name};
use crate::state::Command;

/// Refuses `command` with a field-named error if any part of it is invalid, or if it would
/// not decode back to itself from the log and from a peer message.
pub(super) fn admit(command: &Command) -> Result<(), ApiError> {
    validate(command)?;
    crate::raft::check_round_trip(command)
        .map_err(|e| ApiError::invalid("request", format!("refused before reaching the log: {e}")))
}

/// `admit`, on a blocking thread for a bulk command: a thousand definitions take
/// milliseconds to validate and encode, which must not hold up the runtime's threads (Raft's
/// heartbeats run there). Returns the command when it is admitted.
pub(super) async fn admit_off_runtime(command: Command) -> Result<Command, ApiError> {
    if command.weight() <= 1 {
        return admit(&command).map(|()| command);
    }
    tokio::task::spawn_blocking(move || admit(&command).map(|()| command))
        .await
        .map_err(|e| ApiError::Internal(format!("checking a write: {e}")))?
}

fn validate(command: &Command) -> Result<(), ApiError> {
    match command {
        Command::Put { def, at, .. } => validate_def(def, *at).map(|_| ()).map_err(Into::into),
        // Names of schedules that already exist: any stored name must stay deletable and
        // pausable, so only the size is checked (the command finds nothing otherwise).
        Command::Delete { name, .. } | Command::SetEnabled { name, .. } => {
            validate_existing_name(name).map_err(Into::into)
        }
        Command::Batch(commands) => commands.iter().try_for_each(validate),
        // Made by this node from committed state (manual runs, dispatch), not from input.
        Command::Fire { .. }
        | Command::Ack { .. }
        | Command::Outcomes { .. }
        | Command::BackfillStep { .. } => Ok(()),
        // Checked where it is built (`api::control::backfill`), from the stored schedule.
        Command::StartBackfill { name, .. }
        | Command::SkipOccurrences { name, .. }
        | Command::PauseUntil { name, .. }
        | Command::ResumeIfDue { name, .. } => validate_existing_name(name).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ScheduleDef;
    use serde_json::Value;

    /// A create of a valid definition, changed by `change`.
    fn put_with(change: impl FnOnce(&mut ScheduleDef)) -> Command {
        let mut def: ScheduleDef = serde_json::from_value(serde_json::json!({
            "name": "nightly",
            "task": "reports.build",
            "spec": {"every": "1m"},
        }))
        .unwrap();
        change(&mut def);
        Command::Put {
            def,
            expected_revision: Some(0),
            incarnation: uuid::Uuid::nil(),
            at: chrono::Utc::now(),
        }
    }

    fn put(args: Vec<Value>) -> Command {
        put_with(|def| def.args = args)
    }

    fn nested(depth: usize) -> Value {
        (0..depth).fold(Value::from(1), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn a_valid_put_is_admitted() {
        assert_eq!(admit(&put(vec![Value::from("x"), nested(10)])), Ok(()));
    }

    #[test]
    fn a_put_nested_beyond_the_limit_is_refused_by_field_even_inside_a_batch() {
        let deep = Command::Batch(vec![put(vec![nested(40)])]);
        match admit(&deep) {
            Err(ApiError::InvalidArgument { field, .. }) => assert_eq!(field, "args"),
            other => panic!("admitted: {other:?}"),
        }
    }

    #[test]
    fn an_invalid_name_arriving_by_any_path_is_refused() {
        let bad = put_with(|def| def.name = "bad name with spaces \u{2603}".into());
        match admit(&bad) {
            Err(ApiError::InvalidArgument { field, .. }) => assert_eq!(field, "name"),
            other => panic!("admitted: {other:?}"),
        }
    }

    #[test]
    fn the_readme_options_example_survives_every_encoding() {
        // `options = { queue = "reports", priority = 3, expires = 3600 }`, as the schedules
        // file, `schedule apply` and the API all produce it: it once reached the log and then
        // could be read back by no node (a number in an untagged enum under
        // arbitrary_precision).
        for options in [
            serde_json::json!({"queue": "reports", "priority": 3, "expires": 3600}),
            serde_json::json!({"expires": 0.5}),
            serde_json::json!({"expires": "2030-01-01T00:00:00Z"}),
        ] {
            let options: crate::celery::TaskOptions = serde_json::from_value(options).unwrap();
            assert_eq!(admit(&put_with(|def| def.options = options.into())), Ok(()));
        }
    }

    #[test]
    fn a_command_nested_too_deep_for_the_decoders_fails_the_round_trip() {
        // Past validation's limit, so only the round trip stands between it and the log.
        assert!(matches!(
            crate::raft::check_round_trip(&put(vec![nested(120)])),
            Err(crate::raft::RoundTripError::Decode(_) | crate::raft::RoundTripError::Stored(_))
        ));
        assert!(crate::raft::check_round_trip(&put(vec![nested(31)])).is_ok());
    }
}
