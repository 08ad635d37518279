//! The create-and-edit form's fields as typed, and the one place they become a `ScheduleSpec`
//! (`Fields::to_spec`) or come from one (`Fields::from_def`); errors name the form's field.
//!
//! Invariant: every error says which field of the form it is about, mapped from the API's own
//! field names in one place (`FieldError::from_api`). It must not validate a definition (that
//! is the API's) nor render anything.

use crate::api::pb;
use crate::api::ApiError;

/// The form's fields, as typed.
#[derive(Default)]
pub(crate) struct Fields {
    pub(super) name: String,
    pub(super) task: String,
    pub(super) kind: String,
    pub(super) spec: String,
    pub(super) timezone: String,
    pub(super) latitude: String,
    pub(super) longitude: String,
    pub(super) args: String,
    pub(super) kwargs: String,
    pub(super) queue: String,
    pub(super) labels: String,
    pub(super) revision: String,
}

/// An error for one field of the form: shown as "field: reason".
pub(crate) struct FieldError {
    pub(super) field: &'static str,
    pub(super) reason: String,
}

impl FieldError {
    pub(super) fn new(field: &'static str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field,
            reason: reason.into(),
        }
    }

    pub(super) fn text(&self) -> String {
        format!("{}: {}", self.field, self.reason)
    }

    /// The form field an API error names.
    pub(super) fn from_api(err: &ApiError) -> FieldError {
        let ApiError::InvalidArgument { field, reason } = err else {
            return FieldError::new("form", err.to_string());
        };
        let to = match field.as_str() {
            "name" | "schedule" => "name",
            "task" => "task",
            "args" | "args_json" => "args",
            "kwargs" | "kwargs_json" => "kwargs",
            "tz" | "timezone" | "spec.timezone" => "timezone",
            "latitude" | "spec.latitude" => "latitude",
            "longitude" | "spec.longitude" => "longitude",
            f if f.starts_with("labels") => "labels",
            f if f.starts_with("options.queue") => "queue",
            _ => "spec",
        };
        FieldError::new(to, reason.clone())
    }
}

impl Fields {
    pub(super) fn get(&self, field: &str) -> &str {
        match field {
            "name" => &self.name,
            "task" => &self.task,
            "kind" => &self.kind,
            "spec" => &self.spec,
            "timezone" => &self.timezone,
            "latitude" => &self.latitude,
            "longitude" => &self.longitude,
            "args" => &self.args,
            "kwargs" => &self.kwargs,
            "queue" => &self.queue,
            "labels" => &self.labels,
            _ => &self.revision,
        }
    }

    pub(super) fn from_pairs(get: impl Fn(&str) -> String) -> Fields {
        Fields {
            name: get("name"),
            task: get("task"),
            kind: get("kind"),
            spec: get("spec"),
            timezone: get("timezone"),
            latitude: get("latitude"),
            longitude: get("longitude"),
            args: get("args"),
            kwargs: get("kwargs"),
            queue: get("queue"),
            labels: get("labels"),
            revision: get("revision"),
        }
    }

    /// The fields of a stored definition.
    pub(super) fn from_def(def: &pb::ScheduleSpec, revision: u64) -> Fields {
        let spec = def.spec.clone().unwrap_or_default();
        let (kind, text) = if !spec.every.is_empty() {
            ("every", spec.every.clone())
        } else if !spec.once.is_empty() {
            ("once", spec.once.clone())
        } else if !spec.solar.is_empty() {
            ("solar", spec.solar.clone())
        } else if !spec.crontab.is_empty() {
            ("cron", spec.crontab.clone())
        } else {
            ("cron", spec.cron.clone())
        };
        let mut labels: Vec<_> = def.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        Fields {
            name: def.name.clone(),
            task: def.task.clone(),
            kind: kind.into(),
            spec: text,
            timezone: spec.timezone.clone(),
            latitude: spec.latitude.map(|v| v.to_string()).unwrap_or_default(),
            longitude: spec.longitude.map(|v| v.to_string()).unwrap_or_default(),
            args: def.args_json.clone(),
            kwargs: def.kwargs_json.clone(),
            queue: def
                .options
                .as_ref()
                .and_then(|o| o.queue.clone())
                .unwrap_or_default(),
            labels: labels.join(", "),
            revision: revision.to_string(),
        }
    }

    /// The definition the form describes, over `base` (the stored one, when editing).
    pub(super) fn to_spec(&self, base: pb::ScheduleSpec) -> Result<pb::ScheduleSpec, FieldError> {
        let mut def = base;
        def.name = self.name.trim().to_string();
        def.task = self.task.trim().to_string();
        let old = def.spec.take().unwrap_or_default();
        let mut spec = pb::Spec {
            anchor: old.anchor.clone(),
            start_at: old.start_at.clone(),
            end_at: old.end_at.clone(),
            timezone: self.timezone.trim().to_string(),
            ..Default::default()
        };
        let text = self.spec.trim().to_string();
        if text.is_empty() {
            return Err(FieldError::new("spec", "required"));
        }
        match self.kind.as_str() {
            "cron" if !old.crontab.is_empty() => spec.crontab = text,
            "cron" => spec.cron = text,
            "every" => spec.every = text,
            "once" => spec.once = text,
            "solar" => {
                spec.solar = text;
                spec.latitude = Some(degrees("latitude", &self.latitude)?);
                spec.longitude = Some(degrees("longitude", &self.longitude)?);
            }
            other => {
                return Err(FieldError::new(
                    "kind",
                    format!("{other:?} is not cron, every, once or solar"),
                ))
            }
        }
        def.spec = Some(spec);
        def.args_json = self.args.trim().to_string();
        def.kwargs_json = self.kwargs.trim().to_string();
        let queue = self.queue.trim();
        let mut options = def.options.take().unwrap_or_default();
        options.queue = (!queue.is_empty()).then(|| queue.to_string());
        def.options = Some(options);
        def.labels = labels(&self.labels)?;
        Ok(def)
    }
}

fn degrees(field: &'static str, text: &str) -> Result<f64, FieldError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| FieldError::new(field, "must be a number of degrees"))
}

/// `k=v, k=v`.
fn labels(text: &str) -> Result<std::collections::HashMap<String, String>, FieldError> {
    let mut labels = std::collections::HashMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| FieldError::new("labels", format!("{item:?} is not key=value")))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(labels)
}
