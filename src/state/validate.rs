//! Validation of a schedule definition before it is proposed: every problem is reported with
//! the field it concerns. Limits keep any one request from exhausting memory.

use chrono::{DateTime, Utc};

use super::command::ScheduleDef;
use crate::schedule::Spec;

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_TASK_LEN: usize = 256;
/// Serialized args plus kwargs.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_LEN: usize = 128;
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// A rejected definition: the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DefError {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> DefError {
    DefError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Names: 1-200 characters of letters, digits and `. _ - : /`.
pub fn validate_name(name: &str) -> Result<(), DefError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("must be 1-{MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    {
        return Err(invalid(
            "name",
            format!("{name:?} may only hold letters, digits and . _ - : /"),
        ));
    }
    Ok(())
}

/// Checks every field of `def`; `now` anchors intervals without an explicit anchor.
pub fn validate_def(def: &ScheduleDef, now: DateTime<Utc>) -> Result<Spec, DefError> {
    validate_name(&def.name)?;
    if def.task.is_empty()
        || def.task.len() > MAX_TASK_LEN
        || def.task.chars().any(char::is_whitespace)
    {
        return Err(invalid(
            "task",
            format!("must be a Celery task name of 1-{MAX_TASK_LEN} characters without spaces"),
        ));
    }
    let spec = Spec::parse(&def.spec, now).map_err(|e| invalid(e.field, e.reason))?;
    let args_len = serde_json::to_vec(&def.args).map_or(usize::MAX, |v| v.len())
        + serde_json::to_vec(&def.kwargs).map_or(usize::MAX, |v| v.len());
    if args_len > MAX_ARGS_BYTES {
        return Err(invalid(
            "args",
            format!("args and kwargs take {args_len} bytes; the limit is {MAX_ARGS_BYTES}"),
        ));
    }
    def.options
        .validate()
        .map_err(|e| invalid(e.field, e.reason))?;
    if def.labels.len() > MAX_LABELS {
        return Err(invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in &def.labels {
        if key.is_empty() || key.len() > MAX_LABEL_LEN || value.len() > MAX_LABEL_LEN {
            return Err(invalid(
                format!("labels.{key}"),
                format!("keys must be 1-{MAX_LABEL_LEN} and values 0-{MAX_LABEL_LEN} characters"),
            ));
        }
    }
    if def.description.len() > MAX_DESCRIPTION_LEN {
        return Err(invalid(
            "description",
            format!("is longer than {MAX_DESCRIPTION_LEN} bytes"),
        ));
    }
    if def.catchup.window_secs == 0 {
        return Err(invalid("catchup.window", "must be positive"));
    }
    Ok(spec)
}
