//! Hash-spread cron fields: `H` picks a field's value from the schedule's name, so that many
//! schedules written `H * * * *` spread over the hour instead of all firing at minute 0.
//!
//! - `H`: one value in the field's range.
//! - `H/n`: every `n` from an offset below `n` (`H/15` in minutes: e.g. 7,22,37,52).
//! - `H(a-b)`: one value in `a`-`b`.
//!
//! The value is FNV-1a (64-bit) of the name, then of the field's position (0 for minutes … 4
//! for day of week), mixed by MurmurHash3's 64-bit finalizer, modulo the range's size: the same
//! on every node and every build.
//!
//! Invariant: pure text to text; an expression without `H` is returned unchanged. It must not
//! know about calendars (the expanded expression is parsed as any other).

use super::SpecError;

/// Each field's position and range: minute, hour, day of month, month, day of week.
const RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 28), (1, 12), (0, 6)];

/// FNV-1a over the name's bytes and then the field's position, mixed so that its low bits
/// (what a modulo keeps) depend on every byte.
fn hash(name: &str, field: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes().iter().chain([field as u8].iter()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `text` uses `H` in any field.
pub(crate) fn uses_hash(text: &str) -> bool {
    text.split_whitespace()
        .flat_map(|field| field.split(','))
        .any(|item| item == "H" || item.starts_with("H/") || item.starts_with("H("))
}

/// `text` with every `H` item replaced by its value for `name`; `spec_field` names the spec
/// field in errors. Days of month spread over 1-28, so every month has the day.
pub(crate) fn expand(text: &str, name: &str, spec_field: &str) -> Result<String, SpecError> {
    if !uses_hash(text) {
        return Ok(text.to_string());
    }
    if name.is_empty() {
        return Err(SpecError::new(
            spec_field,
            "H picks a value from the schedule's name: preview the stored schedule",
        ));
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        let Some(&(min, max)) = RANGES.get(i) else {
            out.push(field.to_string());
            continue;
        };
        let items: Result<Vec<String>, String> = field
            .split(',')
            .map(|item| expand_item(item, hash(name, i), min, max))
            .collect();
        out.push(
            items
                .map_err(|reason| SpecError::new(spec_field, format!("field {field:?}: {reason}")))?
                .join(","),
        );
    }
    Ok(out.join(" "))
}

fn expand_item(item: &str, hash: u64, min: u32, max: u32) -> Result<String, String> {
    let pick = |lo: u32, hi: u32| lo + (hash % u64::from(hi - lo + 1)) as u32;
    if item == "H" {
        return Ok(pick(min, max).to_string());
    }
    if let Some(step) = item.strip_prefix("H/") {
        let step: u32 = step
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("H/{step}: the step is not a positive whole number"))?;
        let start = min + (hash % u64::from(step.min(max - min + 1))) as u32;
        return Ok(format!("{start}-{max}/{step}"));
    }
    if let Some(range) = item.strip_prefix("H(").and_then(|r| r.strip_suffix(')')) {
        let (a, b) = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .filter(|(a, b)| a <= b && *a >= min && *b <= max)
            .ok_or_else(|| format!("H({range}): not a range within {min}-{max}"))?;
        return Ok(pick(a, b).to_string());
    }
    Ok(item.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_spreads_by_name_and_is_stable() {
        let a = expand("H * * * *", "reports.a", "cron").unwrap();
        let b = expand("H * * * *", "reports.b", "cron").unwrap();
        assert_eq!(a, expand("H * * * *", "reports.a", "cron").unwrap());
        assert_ne!(a, b, "two names, two minutes (for these names)");
        // The documented values, computed apart (FNV-1a, MurmurHash3's finalizer).
        assert_eq!(a, "19 * * * *");
        assert_eq!(b, "5 * * * *");
        assert_eq!(
            expand("H H * * *", "nightly-report", "cron").unwrap(),
            "52 18 * * *"
        );
        let mut minutes = std::collections::BTreeSet::new();
        for n in 0..1_000 {
            let text = expand("H H * * *", &format!("job-{n}"), "cron").unwrap();
            let fields: Vec<u32> = text
                .split_whitespace()
                .take(2)
                .map(|f| f.parse().unwrap())
                .collect();
            assert!(fields[0] < 60 && fields[1] < 24, "{text}");
            minutes.insert(fields[0]);
        }
        assert_eq!(minutes.len(), 60, "a thousand names cover every minute");
    }

    #[test]
    fn steps_ranges_and_lists() {
        let text = expand("H/15 H(9-17) * * H(1-5)", "etl", "cron").unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (start, rest) = fields[0].split_once('-').unwrap();
        assert!(
            start.parse::<u32>().unwrap() < 15 && rest == "59/15",
            "{text}"
        );
        assert!(
            (9..=17).contains(&fields[1].parse::<u32>().unwrap()),
            "{text}"
        );
        assert!(
            (1..=5).contains(&fields[4].parse::<u32>().unwrap()),
            "{text}"
        );
        assert_eq!(
            expand("0,H * * * *", "x", "cron")
                .unwrap()
                .split(',')
                .count(),
            2
        );
        // Untouched without H; day names are not H.
        assert_eq!(expand("0 9 * * thu", "x", "cron").unwrap(), "0 9 * * thu");
    }

    #[test]
    fn refusals_name_the_field() {
        let err = expand("H/0 * * * *", "x", "cron").unwrap_err();
        assert_eq!(err.field, "cron");
        assert!(expand("H(50-70) * * * *", "x", "crontab").is_err());
        assert!(expand("H * * * *", "", "cron")
            .unwrap_err()
            .reason
            .contains("name"));
    }
}
