//! Findings already known and being fixed elsewhere, recognised by their message so that a run
//! counts them apart instead of failing on them. Each entry goes when its fix lands: the
//! run then fails on it, as it should if the fix did not hold.

/// A known finding: what it is and how its message reads.
pub struct Known {
    pub label: &'static str,
    pub needle: &'static str,
}

pub const KNOWN: &[Known] = &[
    Known {
        label: "numeric options.expires cannot be decoded (untagged enum + arbitrary_precision)",
        needle: "untagged enum Expires",
    },
    Known {
        label: "JSON nested past the decoders' depth in args/kwargs/headers (MAX_JSON_DEPTH)",
        needle: "recursion limit exceeded",
    },
    Known {
        label: "leap seconds accepted as occurrences",
        needle: "leap second",
    },
];

/// The known finding `message` is, if any.
pub fn classify(message: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| message.contains(k.needle))
}
