//! Console page timings (filled in below).
fn main() {}
