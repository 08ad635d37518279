//! A spec as people and files write it, as the state keeps it (one per schedule), and its
//! serialized form.
//!
//! Invariant: the encoding is that of a flat object with the optional fields `every`, `anchor`,
//! `cron`, `crontab`, `once`, `tz`, `start_at`, `end_at`, `solar`, `latitude`, `longitude`, in
//! that order and left out when absent, however the fields are kept in memory. It must not
//! judge a spec (that is `Spec::parse`).

use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{parse_bounded_instant, SpecError};

/// A spec as people and files write it: exactly one of `every`, `cron`, `crontab`, `once`,
/// `solar` (with `latitude` and `longitude`), plus an optional zone and bounds. Instants are
/// RFC 3339 strings. Boxed strings, not `String`s: the state keeps one per schedule, and eight
/// spare capacities add up. Fields added later are left out when absent, so a spec without them
/// encodes as it always did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecInput {
    pub every: Option<Box<str>>,
    pub anchor: Option<Box<str>>,
    pub cron: Option<Box<str>>,
    pub crontab: Option<Box<str>>,
    pub once: Option<Box<str>>,
    pub tz: Option<Box<str>>,
    pub start_at: Option<Box<str>>,
    pub end_at: Option<Box<str>>,
    /// `solar`, `latitude` and `longitude`, which few specs have: encoded as three fields of the
    /// spec, kept in one allocation made only when one of them is given.
    pub solar: SolarFields,
}

/// The fields of a solar spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SolarInput {
    /// A Celery solar event name (`sunrise`, `dusk_civil`, …), the spec's `solar`.
    pub event: Option<Box<str>>,
    /// Degrees north, with `solar` only.
    pub latitude: Option<f64>,
    /// Degrees east, with `solar` only.
    pub longitude: Option<f64>,
}

/// A spec's `SolarInput` as the state keeps it: nothing at all when none of its fields is given
/// (almost every spec), since a million schedules would otherwise carry 48 empty bytes each.
/// Reads as a `SolarInput`.
#[derive(Clone, Debug, Default)]
pub struct SolarFields(Option<Box<SolarInput>>);

static NO_SOLAR: SolarInput = SolarInput {
    event: None,
    latitude: None,
    longitude: None,
};

impl SolarFields {
    /// The fields to change in place (allocated if they were absent).
    pub fn to_mut(&mut self) -> &mut SolarInput {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Deref for SolarFields {
    type Target = SolarInput;
    fn deref(&self) -> &SolarInput {
        self.0.as_deref().unwrap_or(&NO_SOLAR)
    }
}

impl From<SolarInput> for SolarFields {
    fn from(fields: SolarInput) -> Self {
        SolarFields((fields != NO_SOLAR).then(|| Box::new(fields)))
    }
}

/// By the fields, allocated or not.
impl PartialEq for SolarFields {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl SpecInput {
    /// The spec as written, on one line: its kind and text, and its zone
    /// (`cron 0 9 * * 1-5 (Europe/Paris)`), for the CLI's tables and the console's pages.
    pub fn written(&self) -> String {
        let kind = if let Some(every) = &self.every {
            format!("every {every}")
        } else if let Some(cron) = &self.cron {
            format!("cron {cron}")
        } else if let Some(crontab) = &self.crontab {
            format!("crontab {crontab}")
        } else if let Some(event) = &self.solar.event {
            let degrees = |v: Option<f64>| v.map_or("?".to_string(), |v| v.to_string());
            format!(
                "solar {event} ({}, {})",
                degrees(self.solar.latitude),
                degrees(self.solar.longitude)
            )
        } else {
            format!("once {}", self.once.as_deref().unwrap_or("?"))
        };
        match &self.tz {
            Some(tz) => format!("{kind} ({tz})"),
            None => kind,
        }
    }

    /// Checks that every instant the spec names is one the engine works with
    /// (`check_instant`: in range, not a leap second), naming the field. Applied to new and
    /// changed definitions; a stored one is never re-judged, so every node reads the log the
    /// same way whatever its version.
    pub fn check_instants(&self) -> Result<(), SpecError> {
        for (field, text) in [
            ("start_at", &self.start_at),
            ("end_at", &self.end_at),
            ("anchor", &self.anchor),
            ("once", &self.once),
        ] {
            if let Some(text) = text {
                parse_bounded_instant(field, text)?;
            }
        }
        Ok(())
    }
}

/// The encoded form of a spec, as written. Named as the spec itself, for what formats record
/// of a name.
#[derive(Serialize)]
#[serde(rename = "SpecInput")]
struct WireRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    every: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crontab: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    once: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tz: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    solar: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<f64>,
}

/// The encoded form of a spec, as read. Named as the spec itself, for the messages of decoding
/// errors (`expected struct SpecInput`).
#[derive(Deserialize)]
#[serde(rename = "SpecInput", expecting = "struct SpecInput")]
struct Wire {
    #[serde(default)]
    every: Option<Box<str>>,
    #[serde(default)]
    anchor: Option<Box<str>>,
    #[serde(default)]
    cron: Option<Box<str>>,
    #[serde(default)]
    crontab: Option<Box<str>>,
    #[serde(default)]
    once: Option<Box<str>>,
    #[serde(default)]
    tz: Option<Box<str>>,
    #[serde(default)]
    start_at: Option<Box<str>>,
    #[serde(default)]
    end_at: Option<Box<str>>,
    #[serde(default)]
    solar: Option<Box<str>>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl Serialize for SpecInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            every: self.every.as_deref(),
            anchor: self.anchor.as_deref(),
            cron: self.cron.as_deref(),
            crontab: self.crontab.as_deref(),
            once: self.once.as_deref(),
            tz: self.tz.as_deref(),
            start_at: self.start_at.as_deref(),
            end_at: self.end_at.as_deref(),
            solar: self.solar.event.as_deref(),
            latitude: self.solar.latitude,
            longitude: self.solar.longitude,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SpecInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        Ok(SpecInput {
            every: wire.every,
            anchor: wire.anchor,
            cron: wire.cron,
            crontab: wire.crontab,
            once: wire.once,
            tz: wire.tz,
            start_at: wire.start_at,
            end_at: wire.end_at,
            solar: SolarInput {
                event: wire.solar,
                latitude: wire.latitude,
                longitude: wire.longitude,
            }
            .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_spec_without_solar_fields_carries_one_empty_pointer_for_them() {
        assert_eq!(std::mem::size_of::<SolarFields>(), 8);
        assert_eq!(std::mem::size_of::<SpecInput>(), 8 * 16 + 8);
    }

    #[test]
    fn absent_solar_fields_allocate_nothing() {
        let input = SpecInput {
            cron: Some("* * * * *".into()),
            ..Default::default()
        };
        assert!(input.solar.0.is_none());
        let read: SpecInput = serde_json::from_str(r#"{"cron":"* * * * *"}"#).unwrap();
        assert!(read.solar.0.is_none());
        assert_eq!(read, input);
        let mut edited = input.clone();
        edited.solar.to_mut().latitude = None;
        assert_eq!(
            edited, input,
            "equal whether or not the fields are allocated"
        );
    }

    #[test]
    fn the_encoding_is_a_flat_object_in_field_order() {
        let input = SpecInput {
            every: Some("1h".into()),
            anchor: Some("2026-01-01T00:00:00Z".into()),
            cron: Some("c".into()),
            crontab: Some("ct".into()),
            once: Some("o".into()),
            tz: Some("Europe/Paris".into()),
            start_at: Some("s".into()),
            end_at: Some("e".into()),
            solar: SolarInput {
                event: Some("dusk_civil".into()),
                latitude: Some(51.5),
                longitude: Some(-0.12),
            }
            .into(),
        };
        let json = serde_json::to_string(&input).unwrap();
        assert_eq!(
            json,
            r#"{"every":"1h","anchor":"2026-01-01T00:00:00Z","cron":"c","crontab":"ct","once":"o","tz":"Europe/Paris","start_at":"s","end_at":"e","solar":"dusk_civil","latitude":51.5,"longitude":-0.12}"#
        );
        assert_eq!(serde_json::from_str::<SpecInput>(&json).unwrap(), input);
        assert_eq!(serde_json::to_string(&SpecInput::default()).unwrap(), "{}");
        // Each of the three alone, as validation sees them.
        let lone: SpecInput = serde_json::from_str(r#"{"every":"1m","latitude":1}"#).unwrap();
        assert_eq!(
            (lone.solar.event.as_deref(), lone.solar.latitude),
            (None, Some(1.0))
        );
        assert_eq!(
            serde_json::to_string(&lone).unwrap(),
            r#"{"every":"1m","latitude":1.0}"#
        );
        let err = serde_json::from_str::<SpecInput>("1").unwrap_err();
        assert!(
            err.to_string().contains("expected struct SpecInput"),
            "{err}"
        );
    }
}
