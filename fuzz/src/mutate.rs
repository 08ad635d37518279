//! Input generation: random bytes, and stacked mutations of a seed corpus of valid examples
//! (bit flips, byte and range edits, splices between corpus items, dictionary tokens, numbers
//! at their limits, deep nesting). Knows nothing of any format beyond the dictionary it is
//! given: structure-aware generation lives with each target.

use crate::rng::Rng;

/// Inputs never grow past this: every decoder under test sits behind a size limit far smaller
/// than its own input could be, and huge inputs only slow the run.
pub const MAX_INPUT: usize = 256 * 1024;

/// Numbers at the edges of the integer and float types and of chrono's range.
pub const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "59",
    "60",
    "61",
    "255",
    "256",
    "65535",
    "2147483647",
    "-2147483648",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e308",
    "1e309",
    "-1e308",
    "1e-320",
    "0.1",
    "1.5",
    "NaN",
    "inf",
    "-inf",
    "262143",
    "-262143",
    "8210298412799",
    "10000000000000",
];

/// Tokens that matter to every text format here.
const COMMON: &[&str] = &[
    "\"", "\\", "\\u0000", "\\ud800", "\n", "\r\n", "\t", " ", "", "\u{0}", "\u{ffff}", "é", "☃",
    "\u{202e}",
];

/// Random bytes: raw, printable, or a soup of dictionary tokens.
pub fn random_input(rng: &mut Rng, dictionary: &[&str]) -> Vec<u8> {
    let len = rng.below_either(1, 8, 4096, 96);
    match rng.below(3) {
        0 => (0..len).map(|_| rng.byte()).collect(),
        1 => (0..len).map(|_| b' ' + (rng.byte() % 95)).collect(),
        _ => {
            let mut out = Vec::new();
            while out.len() < len {
                out.extend_from_slice(token(rng, dictionary).as_bytes());
            }
            out
        }
    }
}

fn token<'a>(rng: &mut Rng, dictionary: &[&'a str]) -> &'a str {
    match rng.below(8) {
        0 => rng.pick::<&str>(EDGE_NUMBERS),
        1 => rng.pick::<&str>(COMMON),
        _ if !dictionary.is_empty() => rng.pick::<&str>(dictionary),
        _ => rng.pick::<&str>(COMMON),
    }
}

/// A copy of a corpus item with 1–8 stacked mutations.
pub fn mutated(rng: &mut Rng, corpus: &[Vec<u8>], dictionary: &[&str]) -> Vec<u8> {
    let mut input = if corpus.is_empty() {
        Vec::new()
    } else {
        rng.pick(corpus).clone()
    };
    let rounds = 1 + rng.below_either(1, 4, 8, 3);
    for _ in 0..rounds {
        mutate_once(rng, &mut input, corpus, dictionary);
    }
    input.truncate(MAX_INPUT);
    input
}

/// A position in `0..=len`.
fn position(rng: &mut Rng, input: &[u8]) -> usize {
    rng.below(input.len() + 1)
}

/// A range inside `input`, biased to short ones.
fn range(rng: &mut Rng, input: &[u8]) -> (usize, usize) {
    let start = rng.below(input.len() + 1);
    let max = (input.len() - start).min(if rng.chance(1, 4) { 4096 } else { 16 });
    (start, start + rng.below(max + 1))
}

/// A token-like span around a random position: the run of bytes between delimiters.
fn word(rng: &mut Rng, input: &[u8]) -> (usize, usize) {
    let delimiter = |b: u8| b" \t\n\r,;=:\"'[]{}()/-*".contains(&b);
    let at = rng.below(input.len() + 1);
    let start = input[..at]
        .iter()
        .rposition(|b| delimiter(*b))
        .map_or(0, |p| p + 1);
    let end = input[at..]
        .iter()
        .position(|b| delimiter(*b))
        .map_or(input.len(), |p| at + p);
    (start.min(end), end)
}

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&str]) {
    match rng.below(14) {
        0 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] = *rng.pick(&[0, 0xff, 0x7f, 0x80, b'\n', b'"', b'\\', b'0', b'9', b' ']);
        }
        2 => {
            let at = position(rng, input);
            let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.byte()).collect();
            input.splice(at..at, bytes);
        }
        3 => {
            let (start, end) = range(rng, input);
            input.drain(start..end);
        }
        4 => {
            let (start, end) = range(rng, input);
            let copy = input[start..end].to_vec();
            let at = position(rng, input);
            input.splice(at..at, copy);
        }
        5 | 6 => {
            let at = position(rng, input);
            let text = token(rng, dictionary).as_bytes().to_vec();
            input.splice(at..at, text);
        }
        7 | 8 => {
            let (start, end) = word(rng, input);
            let text = token(rng, dictionary).as_bytes().to_vec();
            input.splice(start..end, text);
        }
        9 => {
            // Splice: a range of another corpus item in place of a range of this one.
            if let Some(other) = (!corpus.is_empty()).then(|| rng.pick(corpus)) {
                let (from, to) = range(rng, other);
                let (start, end) = range(rng, input);
                input.splice(start..end, other[from..to].iter().copied());
            }
        }
        10 => {
            // Replace a run of digits with a number at some limit.
            let digits: Vec<usize> = (0..input.len())
                .filter(|&i| input[i].is_ascii_digit())
                .collect();
            if !digits.is_empty() {
                let at = *rng.pick(&digits);
                let end = (at..input.len())
                    .find(|&i| !input[i].is_ascii_digit())
                    .unwrap_or(input.len());
                let start = input[..at]
                    .iter()
                    .rposition(|b| !b.is_ascii_digit())
                    .map_or(0, |p| p + 1);
                let number = rng.pick(EDGE_NUMBERS).as_bytes().to_vec();
                input.splice(start..end, number);
            }
        }
        11 => nest(rng, input),
        12 => {
            let at = position(rng, input);
            input.truncate(at);
        }
        _ => {
            // Repeat a short range many times (long fields, many list items).
            let (start, end) = range(rng, input);
            let copy = input[start..end].to_vec();
            let times = 1 + rng.below(64);
            let at = position(rng, input);
            let repeated: Vec<u8> = copy
                .iter()
                .copied()
                .cycle()
                .take(copy.len() * times)
                .collect();
            input.splice(at..at, repeated);
        }
    }
}

/// Deep nesting at a random position: `[[[[…`, `{"a":{"a":…`, or TOML's inline tables, with or
/// without the closing half.
fn nest(rng: &mut Rng, input: &mut Vec<u8>) {
    let depth = 1 + rng.below_either(1, 2, 140, 3000);
    let (open, close): (&[u8], &[u8]) = *rng.pick(&[
        (b"[".as_slice(), b"]".as_slice()),
        (b"{\"a\":", b"}"),
        (b"{a=", b"}"),
        (b"[[", b"]]"),
    ]);
    let at = position(rng, input);
    let mut middle = open.repeat(depth);
    middle.extend_from_slice(b"1");
    if rng.chance(3, 4) {
        middle.extend_from_slice(&close.repeat(depth));
    }
    input.splice(at..at, middle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_bounded() {
        let corpus = vec![b"*/5 * * * *".to_vec(), b"0 9 * * mon-fri".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..500)
                .map(|_| mutated(&mut rng, &corpus, &["mon", "*/"]))
                .collect::<Vec<_>>()
        };
        let first = run(3);
        assert_eq!(first, run(3));
        assert!(first.iter().all(|input| input.len() <= MAX_INPUT));
        // Mutation actually changes inputs, and not always the same way.
        let changed = first.iter().filter(|i| !corpus.contains(i)).count();
        assert!(changed > 400, "{changed}");
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(distinct.len() > 300, "{}", distinct.len());
    }
}
