//! Solar events (Celery's `solar` schedule): dawn, sunrise, solar noon, sunset and dusk at a
//! latitude and longitude, as absolute instants.
//!
//! The sun's position follows Jean Meeus, *Astronomical Algorithms* (2nd ed., 1998): chapter 25
//! (the sun's apparent longitude and declination, "low accuracy", about 0.01°), chapter 22
//! (the main nutation terms) and chapter 12 (Greenwich sidereal time). An event is found the way
//! Celery's `ephem` finds it: the meridian transits and anti-transits of each day split time
//! into half-day segments in which the sun's altitude rises or falls, and a rising (setting) is
//! the instant in a segment where the altitude crosses the event's horizon upwards
//! (downwards), found by bisection. Horizons are Celery's: −18°, −12°, −6° (sun's centre) for
//! the twilights, −0°34′ for the upper limb at sunrise and sunset, as with `pressure = 0`
//! (no refraction model; the −34′ stands for it). The observer is at sea level; the sun's
//! parallax (8.8″) is applied. ΔT (TT − UT) is a constant 72 s: a minute's error moves the sun
//! by 0.0007°, under a second on any event.
//!
//! Invariant: every answer is a pure function of (event, latitude, longitude, day): a day's
//! event is computed from that day's canonical segment boundaries, never from the instant the
//! search started at, so searching from any instant before an event finds the same instant
//! (rounded to the second), and a schedule never fires one event twice. The arithmetic is
//! IEEE 754 `f64` with the `libm` crate's functions (a Rust port of musl's), not the
//! platform's C library, so every node computes the same bits on any platform. A search looks
//! at most `MAX_SEARCH_DAYS` ahead: where the event does not happen on a day (polar day or
//! night) there is no occurrence that day, and if it does not happen within that bound there is
//! no next occurrence. It must not know about zones, cron or the state.

use chrono::{DateTime, Utc};

use super::SpecError;

/// How far ahead a search looks for a day on which the event happens. Every event happens at
/// least once a year at every latitude (even at the poles the sun crosses each horizon once a
/// year), so a year and a few days always finds one.
pub(crate) const MAX_SEARCH_DAYS: i64 = 370;

/// The nine events of Celery's `solar` schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    DawnAstronomical,
    DawnNautical,
    DawnCivil,
    Sunrise,
    SolarNoon,
    Sunset,
    DuskCivil,
    DuskNautical,
    DuskAstronomical,
}

/// Which crossing an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crossing {
    Rising,
    Transit,
    Setting,
}

impl Event {
    /// Every event, in the order of a day.
    pub const ALL: [Event; 9] = [
        Event::DawnAstronomical,
        Event::DawnNautical,
        Event::DawnCivil,
        Event::Sunrise,
        Event::SolarNoon,
        Event::Sunset,
        Event::DuskCivil,
        Event::DuskNautical,
        Event::DuskAstronomical,
    ];

    /// Celery's name of the event.
    pub fn name(self) -> &'static str {
        match self {
            Event::DawnAstronomical => "dawn_astronomical",
            Event::DawnNautical => "dawn_nautical",
            Event::DawnCivil => "dawn_civil",
            Event::Sunrise => "sunrise",
            Event::SolarNoon => "solar_noon",
            Event::Sunset => "sunset",
            Event::DuskCivil => "dusk_civil",
            Event::DuskNautical => "dusk_nautical",
            Event::DuskAstronomical => "dusk_astronomical",
        }
    }

    /// Reads a Celery event name, refusing any other with the list of valid ones.
    pub fn parse(text: &str) -> Result<Event, SpecError> {
        let text = text.trim();
        Event::ALL
            .into_iter()
            .find(|e| e.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
                SpecError::new(
                    "solar",
                    format!(
                        "{text:?} is not a solar event; use one of {}",
                        names.join(", ")
                    ),
                )
            })
    }

    fn crossing(self) -> Crossing {
        match self {
            Event::DawnAstronomical | Event::DawnNautical | Event::DawnCivil | Event::Sunrise => {
                Crossing::Rising
            }
            Event::SolarNoon => Crossing::Transit,
            _ => Crossing::Setting,
        }
    }

    /// Celery's horizon for the event, in degrees.
    fn horizon_deg(self) -> f64 {
        match self {
            Event::DawnAstronomical | Event::DuskAstronomical => -18.0,
            Event::DawnNautical | Event::DuskNautical => -12.0,
            Event::DawnCivil | Event::DuskCivil => -6.0,
            Event::Sunrise | Event::Sunset => -34.0 / 60.0,
            Event::SolarNoon => 0.0,
        }
    }

    /// Sunrise and sunset are the upper limb's crossing; the twilights the centre's.
    fn upper_limb(self) -> bool {
        matches!(self, Event::Sunrise | Event::Sunset)
    }
}

/// A solar event at a place. Latitude and longitude are degrees (north and east positive),
/// finite and within ±90 and ±180 (checked by `Solar::new`), so equality is reflexive.
#[derive(Clone, Debug, PartialEq)]
pub struct Solar {
    pub event: Event,
    pub latitude: f64,
    pub longitude: f64,
}

impl Eq for Solar {}

impl Solar {
    /// Checks the coordinates, naming the field.
    pub fn new(event: Event, latitude: f64, longitude: f64) -> Result<Solar, SpecError> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(SpecError::new(
                "latitude",
                format!("{latitude} is not a latitude in degrees from -90 to 90"),
            ));
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(SpecError::new(
                "longitude",
                format!("{longitude} is not a longitude in degrees from -180 to 180"),
            ));
        }
        Ok(Solar {
            event,
            latitude,
            longitude,
        })
    }

    /// The first occurrence strictly after `after`, in whole seconds; `None` if the event does
    /// not happen within `MAX_SEARCH_DAYS` or the instant is out of the engine's range.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after_secs = after.timestamp();
        let after_days = days_since_j2000(after_secs);
        // Segment j runs from boundary j to j + 1: even boundaries are transits, odd ones
        // anti-transits. Start a day and a half before `after`.
        let shift = self.longitude / 360.0;
        let day = libm::floor(after_days + shift) as i64 - 1;
        let first = day.checked_mul(2)?;
        let mut start = self.boundary(first);
        for j in first..first.checked_add(2 * MAX_SEARCH_DAYS + 4)? {
            let end = self.boundary(j + 1);
            let found = match self.event.crossing() {
                Crossing::Transit => (j % 2 == 0).then_some(start),
                crossing => self.crossing_in(crossing, start, end),
            };
            if let Some(secs) = found.and_then(to_unix_secs) {
                if secs > after_secs {
                    return DateTime::from_timestamp(secs, 0);
                }
            }
            start = end;
        }
        None
    }

    /// Boundary `j` of the canonical segments: the transit of day `j / 2` (even `j`) or the
    /// anti-transit after it (odd `j`), in days since J2000.0 (UT).
    fn boundary(&self, j: i64) -> f64 {
        let target = if j.rem_euclid(2) == 0 { 0.0 } else { 180.0 };
        let mut d = j as f64 / 2.0 - self.longitude / 360.0;
        for _ in 0..6 {
            let sun = Sun::at(d);
            let hour_angle = wrap180(sun.gast + self.longitude - sun.ra - target);
            // The hour angle grows by 360° a solar day.
            d -= hour_angle / 360.0;
        }
        d
    }

    /// Where in `[start, end]` the altitude crosses the event's horizon in the crossing's
    /// direction, if it does.
    fn crossing_in(&self, crossing: Crossing, start: f64, end: f64) -> Option<f64> {
        let f = |d: f64| self.altitude_above_horizon(d);
        let (at_start, at_end) = (f(start), f(end));
        let found = match crossing {
            Crossing::Rising => at_start < 0.0 && at_end >= 0.0,
            _ => at_start >= 0.0 && at_end < 0.0,
        };
        if !found {
            return None;
        }
        let (mut lo, mut hi) = (start, end);
        // Half a day halved 32 times: about 10 µs.
        for _ in 0..32 {
            let mid = 0.5 * (lo + hi);
            if (f(mid) >= 0.0) == (crossing == Crossing::Rising) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(0.5 * (lo + hi))
    }

    /// The sun's topocentric altitude (centre or upper limb) minus the event's horizon, in
    /// degrees.
    fn altitude_above_horizon(&self, d: f64) -> f64 {
        let sun = Sun::at(d);
        let (phi, dec) = (self.latitude.to_radians(), sun.dec.to_radians());
        let hour_angle = (sun.gast + self.longitude - sun.ra).to_radians();
        let sin_alt = libm::sin(phi) * libm::sin(dec)
            + libm::cos(phi) * libm::cos(dec) * libm::cos(hour_angle);
        let alt = libm::asin(sin_alt.clamp(-1.0, 1.0));
        // Parallax: the observer sits on the surface, 8.794″ (at 1 AU) off the centre.
        let parallax = (8.794 / 3600.0 / sun.distance).to_radians() * libm::cos(alt);
        let mut alt_deg = (alt - parallax).to_degrees();
        if self.event.upper_limb() {
            alt_deg += 959.63 / 3600.0 / sun.distance;
        }
        alt_deg - self.event.horizon_deg()
    }
}

/// Unix seconds of J2000.0 in UT (2000-01-01T12:00:00).
const J2000_UNIX: i64 = 946_728_000;
/// TT − UT, seconds.
const DELTA_T_SECS: f64 = 72.0;

fn days_since_j2000(unix_secs: i64) -> f64 {
    (unix_secs - J2000_UNIX) as f64 / 86_400.0
}

/// Days since J2000.0 to the nearest Unix second (`None` if not finite or out of range).
fn to_unix_secs(days: f64) -> Option<i64> {
    let secs = libm::round(days * 86_400.0);
    if !secs.is_finite() || secs.abs() > 1e15 {
        return None;
    }
    (secs as i64).checked_add(J2000_UNIX)
}

/// `x` in (−180, 180].
fn wrap180(x: f64) -> f64 {
    let r = x - 360.0 * libm::floor(x / 360.0);
    if r > 180.0 {
        r - 360.0
    } else {
        r
    }
}

/// The sun's apparent place and the sidereal time at an instant.
struct Sun {
    /// Right ascension, degrees.
    ra: f64,
    /// Declination, degrees.
    dec: f64,
    /// Distance, astronomical units.
    distance: f64,
    /// Greenwich apparent sidereal time, degrees.
    gast: f64,
}

impl Sun {
    /// At `d` days since J2000.0 (UT). Meeus chapters 25, 22 and 12.
    fn at(d: f64) -> Sun {
        let t = (d + DELTA_T_SECS / 86400.0) / 36525.0;
        let l0 = 280.46646 + 36000.76983 * t + 0.0003032 * t * t;
        let m = (357.52911 + 35999.05029 * t - 0.0001537 * t * t).to_radians();
        let e = 0.016708634 - 0.000042037 * t - 0.0000001267 * t * t;
        let c = (1.914602 - 0.004817 * t - 0.000014 * t * t) * libm::sin(m)
            + (0.019993 - 0.000101 * t) * libm::sin(2.0 * m)
            + 0.000289 * libm::sin(3.0 * m);
        let true_longitude = l0 + c;
        let true_anomaly = m + c.to_radians();
        let distance = 1.000001018 * (1.0 - e * e) / (1.0 + e * libm::cos(true_anomaly));
        let omega = (125.04452 - 1934.136261 * t).to_radians();
        // Nutation in longitude (Meeus 22, main terms), degrees.
        let nutation = (-17.20 * libm::sin(omega) - 1.32 * libm::sin(2.0 * l0.to_radians())
            + 0.21 * libm::sin(2.0 * omega))
            / 3600.0;
        let aberration = -20.4898 / 3600.0 / distance;
        let lambda = (true_longitude + nutation + aberration).to_radians();
        let epsilon0 = 23.0 + 26.0 / 60.0 + 21.448 / 3600.0
            - (46.8150 * t + 0.00059 * t * t - 0.001813 * t * t * t) / 3600.0;
        let epsilon = (epsilon0 + 9.20 / 3600.0 * libm::cos(omega)).to_radians();
        let ra =
            libm::atan2(libm::cos(epsilon) * libm::sin(lambda), libm::cos(lambda)).to_degrees();
        let dec = libm::asin(libm::sin(epsilon) * libm::sin(lambda)).to_degrees();
        let tu = d / 36525.0;
        let gmst =
            280.46061837 + 360.98564736629 * d + 0.000387933 * tu * tu - tu * tu * tu / 38710000.0;
        let gast = gmst + nutation * libm::cos(epsilon);
        Sun {
            ra,
            dec,
            distance,
            gast,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn solar(event: Event, lat: f64, lon: f64) -> Solar {
        Solar::new(event, lat, lon).unwrap()
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for event in Event::ALL {
            assert_eq!(Event::parse(event.name()), Ok(event));
        }
        let err = Event::parse("moonrise").unwrap_err();
        assert_eq!(err.field, "solar");
        assert!(err.reason.contains("dusk_astronomical"), "{err}");
    }

    #[test]
    fn coordinates_are_bounded_and_finite() {
        for (lat, lon, field) in [
            (90.5, 0.0, "latitude"),
            (f64::NAN, 0.0, "latitude"),
            (0.0, -180.1, "longitude"),
            (0.0, f64::INFINITY, "longitude"),
        ] {
            assert_eq!(
                Solar::new(Event::Sunrise, lat, lon).unwrap_err().field,
                field
            );
        }
        assert!(Solar::new(Event::Sunrise, -90.0, 180.0).is_ok());
    }

    #[test]
    fn the_same_event_is_found_from_any_earlier_instant() {
        let noon = solar(Event::Sunset, 51.5, -0.12);
        let first = noon.next_after(at("2026-06-01T00:00:00Z")).unwrap();
        for probe in ["2026-05-31T21:00:00Z", "2026-06-01T12:00:00Z"] {
            assert_eq!(noon.next_after(at(probe)), Some(first));
        }
        let just_before = first - chrono::Duration::seconds(1);
        assert_eq!(noon.next_after(just_before), Some(first));
        let next = noon.next_after(first).unwrap();
        assert!(
            next - first > chrono::Duration::hours(23),
            "{first} then {next}"
        );
    }

    #[test]
    fn no_sunset_in_the_midnight_sun_and_no_sunrise_in_the_polar_night() {
        // Latitude 78 (Svalbard): the sun does not set from late April to late August.
        let sunset = solar(Event::Sunset, 78.0, 15.0)
            .next_after(at("2026-06-21T00:00:00Z"))
            .unwrap();
        assert!(sunset > at("2026-08-15T00:00:00Z"), "{sunset}");
        assert!(sunset < at("2026-09-01T00:00:00Z"), "{sunset}");
        // Latitude 70 (Tromsø region): no sunrise around the December solstice.
        let sunrise = solar(Event::Sunrise, 70.0, 19.0)
            .next_after(at("2026-12-10T00:00:00Z"))
            .unwrap();
        assert!(sunrise > at("2027-01-05T00:00:00Z"), "{sunrise}");
        assert!(sunrise < at("2027-01-25T00:00:00Z"), "{sunrise}");
        // At the pole the sun rises once a year, around the March equinox.
        let pole = solar(Event::Sunrise, 90.0, 0.0)
            .next_after(at("2026-06-01T00:00:00Z"))
            .unwrap();
        assert!(
            pole > at("2027-03-10T00:00:00Z") && pole < at("2027-03-25T00:00:00Z"),
            "{pole}"
        );
    }

    #[test]
    fn the_search_is_bounded_at_the_end_of_time() {
        let late = DateTime::<Utc>::MAX_UTC;
        // Whatever it answers, it answers (no loop, no panic).
        let _ = solar(Event::SolarNoon, 0.0, 0.0).next_after(late);
        let _ = solar(Event::Sunrise, 89.9, 0.0).next_after(DateTime::<Utc>::MIN_UTC);
    }
}
