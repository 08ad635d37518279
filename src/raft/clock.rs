//! This node's view of time against its peers: NTP-style offset samples from the peer RPCs it
//! sends (heartbeats, votes, clock probes), the quorum's time as the median over a majority of
//! voters, the bound (`max_clock_offset`) and wall-clock steps.
//!
//! Every sample and estimate is kept against a *reference* clock that cannot step: the wall
//! clock read once at start plus the process's monotonic time since. A peer's offset is its
//! wall clock minus this reference, and this node's own wall clock is one more voter in the
//! median, read afresh on every estimate. So a step of the local wall clock (NTP, `date -s`, a
//! resumed VM) changes only this node's own entry at once, never the peers', and the quorum's
//! time does not move with it.
//!
//! Invariant: the quorum's time is given only while at least a majority of the voters (this
//! node included) have a fresh sample and lie within the bound of their median; otherwise the
//! answer is "unknown", never a guess. Only the estimate lives here: it must not pause
//! dispatch, change elections or do I/O itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use super::NodeId;

/// Samples older than this are not used.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(5);
/// Samples kept per peer; the one with the shortest round trip is the estimate.
const KEEP: usize = 8;
/// A change of the local wall clock against the monotonic clock larger than this between two
/// looks is a step.
pub(crate) const STEP_THRESHOLD: Duration = Duration::from_millis(100);

/// The local wall clock now, in microseconds since the Unix epoch.
pub(crate) fn wall_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// One round trip: the peer's offset from the reference and the round trip's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub offset_us: i64,
    pub rtt_us: i64,
}

impl Sample {
    /// NTP's arithmetic: `t0`/`t3` are the requester's send and receive times (reference
    /// clock), `t1`/`t2` the peer's receive and reply times (its wall clock). `None` for an
    /// impossible sample (the peer claims to have spent longer than the round trip).
    pub fn from_times(t0: i64, t1: i64, t2: i64, t3: i64) -> Option<Sample> {
        let rtt_us = (t3 - t0) - (t2 - t1);
        if rtt_us < 0 || t2 < t1 || t3 < t0 {
            return None;
        }
        let offset_us = ((t1 - t0) + (t2 - t3)) / 2;
        Some(Sample { offset_us, rtt_us })
    }
}

/// Where this node stands against the quorum's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Within the bound: the quorum's time is known.
    Agreed(Estimate),
    /// The quorum agrees on a time and this node's clock is off it by more than the bound.
    Beyond(Estimate),
    /// No majority of voters agrees on a time (too few fresh samples, or too far apart).
    Unknown(String),
}

/// The quorum's time against the reference clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The quorum's (median) wall clock minus the reference clock.
    pub median_us: i64,
    /// This node's wall clock minus the quorum's.
    pub own_offset_us: i64,
    /// How far the median may be from the truth (half the round trip of its sample).
    pub error_us: i64,
}

/// The pure rule: this node's own offset from the reference (`own_us`, always fresh) and the
/// fresh samples of the other voters, out of `voters` voters in all, against the bound.
pub(crate) fn standing(
    own_us: i64,
    peers: &[Sample],
    voters: usize,
    max_offset_us: i64,
) -> Standing {
    let needed = voters / 2 + 1;
    let mut all: Vec<Sample> = Vec::with_capacity(peers.len() + 1);
    all.push(Sample {
        offset_us: own_us,
        rtt_us: 0,
    });
    all.extend_from_slice(peers);
    if all.len() < needed {
        return Standing::Unknown(format!(
            "clock samples from {} of {voters} voters; {needed} needed",
            all.len()
        ));
    }
    all.sort_by_key(|s| s.offset_us);
    let n = all.len();
    let (low, high) = (all[(n - 1) / 2], all[n / 2]);
    let median_us = low.offset_us + (high.offset_us - low.offset_us) / 2;
    let error_us = low.rtt_us.max(high.rtt_us) / 2;
    let agreeing = all
        .iter()
        .filter(|s| (s.offset_us - median_us).abs() <= max_offset_us)
        .count();
    if agreeing < needed {
        return Standing::Unknown(format!(
            "no majority of voters agrees on the time: {agreeing} of {voters} within {} ms of the median",
            max_offset_us / 1000
        ));
    }
    let estimate = Estimate {
        median_us,
        own_offset_us: own_us - median_us,
        error_us,
    };
    if estimate.own_offset_us.abs() > max_offset_us {
        Standing::Beyond(estimate)
    } else {
        Standing::Agreed(estimate)
    }
}

#[derive(Debug)]
struct Inner {
    /// Recent samples per peer, newest last, with when they were taken.
    samples: HashMap<NodeId, VecDeque<(Instant, Sample)>>,
    /// The voters (this node may be one of them).
    voters: Vec<NodeId>,
    /// This node's offset from the reference at the last look for steps.
    last_own_us: i64,
}

/// The shared clock view of one node (cheap to clone).
#[derive(Clone, Debug)]
pub struct PeerClocks {
    node_id: NodeId,
    max_offset_us: i64,
    wall0_us: i64,
    mono0: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl PeerClocks {
    pub fn new(node_id: NodeId, max_offset: Duration) -> PeerClocks {
        PeerClocks {
            node_id,
            max_offset_us: max_offset.as_micros() as i64,
            wall0_us: wall_micros(),
            mono0: Instant::now(),
            inner: Arc::new(Mutex::new(Inner {
                samples: HashMap::new(),
                voters: vec![node_id],
                last_own_us: 0,
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn max_offset(&self) -> Duration {
        Duration::from_micros(self.max_offset_us as u64)
    }

    /// The reference clock now, in microseconds since the Unix epoch: it never steps.
    pub fn reference_micros(&self) -> i64 {
        self.wall0_us + self.mono0.elapsed().as_micros() as i64
    }

    /// This node's wall clock minus the reference clock, now.
    pub fn own_offset_micros(&self) -> i64 {
        wall_micros() - self.reference_micros()
    }

    /// Sets the voters whose clocks make the quorum.
    pub fn set_voters(&self, voters: Vec<NodeId>) {
        self.with(|inner| {
            inner.samples.retain(|id, _| voters.contains(id));
            inner.voters = voters;
        });
    }

    /// Records one round trip to `peer` (`t0`, `t3` from `reference_micros`; `t1`, `t2` the
    /// peer's wall times as it reported them; 0 = not reported).
    pub fn record(&self, peer: NodeId, t0: i64, t1: i64, t2: i64, t3: i64) {
        if t1 == 0 || t2 == 0 || peer == self.node_id {
            return;
        }
        let Some(sample) = Sample::from_times(t0, t1, t2, t3) else {
            return;
        };
        self.with(|inner| {
            let kept = inner.samples.entry(peer).or_default();
            if kept.len() >= KEEP {
                kept.pop_front();
            }
            kept.push_back((Instant::now(), sample));
        });
    }

    /// The best fresh sample of each peer (the shortest round trip).
    pub fn best_samples(&self) -> HashMap<NodeId, Sample> {
        self.with(|inner| {
            inner
                .samples
                .iter()
                .filter_map(|(id, kept)| {
                    kept.iter()
                        .filter(|(at, _)| at.elapsed() <= FRESH_FOR)
                        .map(|(_, s)| *s)
                        .min_by_key(|s| s.rtt_us)
                        .map(|s| (*id, s))
                })
                .collect()
        })
    }

    /// Where this node stands now.
    pub fn standing(&self) -> Standing {
        let best = self.best_samples();
        let (voters, peers): (usize, Vec<Sample>) = self.with(|inner| {
            let peers = inner
                .voters
                .iter()
                .filter(|id| **id != self.node_id)
                .filter_map(|id| best.get(id).copied())
                .collect();
            (inner.voters.len().max(1), peers)
        });
        standing(self.own_offset_micros(), &peers, voters, self.max_offset_us)
    }

    /// The quorum's time now, made no later than it can be (minus the estimate's error), or
    /// why it is not known: what dispatch goes by. A node beyond the bound has no time.
    pub fn quorum_now(&self) -> Result<DateTime<Utc>, String> {
        match self.standing() {
            Standing::Agreed(e) => {
                let micros = self.reference_micros() + e.median_us - e.error_us;
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| "the quorum's time is out of range".to_string())
            }
            Standing::Beyond(e) => Err(beyond_reason(e.own_offset_us, self.max_offset_us)),
            Standing::Unknown(reason) => Err(reason),
        }
    }

    /// Why this node may not stand for election or dispatch: its clock is beyond the bound.
    pub fn beyond(&self) -> Option<String> {
        match self.standing() {
            Standing::Beyond(e) => Some(beyond_reason(e.own_offset_us, self.max_offset_us)),
            _ => None,
        }
    }

    /// The peers whose clocks this node sees beyond the bound from the quorum's: not to be
    /// handed leadership. Empty while the quorum's time is unknown.
    pub fn peers_beyond(&self) -> Vec<NodeId> {
        let median_us = match self.standing() {
            Standing::Agreed(e) | Standing::Beyond(e) => e.median_us,
            Standing::Unknown(_) => return Vec::new(),
        };
        self.best_samples()
            .into_iter()
            .filter(|(_, s)| (s.offset_us - median_us).abs() > self.max_offset_us)
            .map(|(id, _)| id)
            .collect()
    }

    /// How much the local wall clock moved against the monotonic clock since the last look,
    /// when that is a step (more than `STEP_THRESHOLD`), in microseconds (positive: forward).
    pub fn take_step(&self) -> Option<i64> {
        let own = self.own_offset_micros();
        self.with(|inner| {
            let moved = own - inner.last_own_us;
            inner.last_own_us = own;
            (moved.abs() > STEP_THRESHOLD.as_micros() as i64).then_some(moved)
        })
    }
}

/// The reason given for a clock beyond the bound.
pub(crate) fn beyond_reason(own_offset_us: i64, max_offset_us: i64) -> String {
    format!(
        "this node's clock is {:+} ms off the quorum's, beyond max_clock_offset ({} ms)",
        own_offset_us / 1000,
        max_offset_us / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(offset_ms: i64, rtt_ms: i64) -> Sample {
        Sample {
            offset_us: offset_ms * 1000,
            rtt_us: rtt_ms * 1000,
        }
    }

    const MAX: i64 = 250_000;

    #[test]
    fn ntp_arithmetic_gives_offset_and_round_trip() {
        // The peer is 1 s ahead; 10 ms each way; it spent 2 ms.
        let t0 = 1_000_000;
        let t1 = t0 + 10_000 + 1_000_000;
        let t2 = t1 + 2_000;
        let t3 = t0 + 22_000;
        assert_eq!(
            Sample::from_times(t0, t1, t2, t3),
            Some(Sample {
                offset_us: 1_000_000,
                rtt_us: 20_000
            })
        );
        assert_eq!(
            Sample::from_times(0, 10, 5, 20),
            None,
            "replied before it got it"
        );
        assert_eq!(
            Sample::from_times(0, 0, 100, 20),
            None,
            "longer than the round trip"
        );
    }

    #[test]
    fn the_sample_with_the_shortest_round_trip_wins() {
        let clocks = PeerClocks::new(1, Duration::from_millis(250));
        clocks.set_voters(vec![1, 2, 3]);
        // Asymmetric delay skews long round trips; the short one is the truest.
        for (t1, rtt) in [(50_000, 100_000), (2_000, 4_000), (30_000, 60_000)] {
            clocks.record(2, 0, t1, t1, rtt);
        }
        assert_eq!(clocks.best_samples()[&2], s(0, 4));
        clocks.record(2, 0, 0, 0, 10);
        assert_eq!(
            clocks.best_samples().len(),
            1,
            "a reply without times is no sample"
        );
        clocks.record(1, 0, 5, 5, 10);
        assert_eq!(clocks.best_samples().len(), 1, "no sample of itself");
    }

    #[test]
    fn the_quorum_time_is_the_median_over_a_majority() {
        // Three voters, this node 2.3 s ahead of both others: it is the one beyond.
        match standing(2_300_000, &[s(0, 1), s(10, 1)], 3, MAX) {
            Standing::Beyond(e) => assert_eq!((e.median_us, e.own_offset_us), (10_000, 2_290_000)),
            other => panic!("{other:?}"),
        }
        // The others see it as an outlier and agree among themselves.
        match standing(0, &[s(2_300, 1), s(10, 1)], 3, MAX) {
            Standing::Agreed(e) => assert_eq!((e.median_us, e.own_offset_us), (10_000, -10_000)),
            other => panic!("{other:?}"),
        }
        // Five voters, four known: the median of an even count is between the middle two.
        match standing(0, &[s(-100, 2), s(100, 2), s(9_000, 2)], 5, MAX) {
            Standing::Agreed(e) => {
                assert_eq!((e.median_us, e.error_us), (50_000, 1_000));
            }
            other => panic!("{other:?}"),
        }
        // A single voter is its own quorum.
        assert!(matches!(standing(7, &[], 1, MAX), Standing::Agreed(e) if e.own_offset_us == 0));
    }

    #[test]
    fn without_a_majority_the_time_is_unknown() {
        // Too few samples: 1 of 3.
        let Standing::Unknown(reason) = standing(0, &[], 3, MAX) else {
            panic!()
        };
        assert!(reason.contains("1 of 3"), "{reason}");
        // Three clocks 5 s apart: no two within the bound of the median.
        let Standing::Unknown(reason) = standing(0, &[s(5_000, 1), s(-5_000, 1)], 3, MAX) else {
            panic!()
        };
        assert!(reason.contains("agrees"), "{reason}");
    }

    #[test]
    fn a_node_beyond_the_bound_has_no_time_to_dispatch_by() {
        let clocks = PeerClocks::new(1, Duration::from_millis(250));
        clocks.set_voters(vec![1, 2, 3]);
        let t0 = clocks.reference_micros();
        // Both peers 2 s behind this node.
        clocks.record(2, t0, t0 - 2_000_000, t0 - 2_000_000, t0);
        clocks.record(3, t0, t0 - 2_000_000, t0 - 2_000_000, t0);
        let err = clocks.quorum_now().unwrap_err();
        assert!(err.contains("beyond max_clock_offset"), "{err}");
        assert!(clocks.beyond().is_some());
        assert_eq!(clocks.peers_beyond(), Vec::<NodeId>::new());
        // Seen from a peer: the same node is the one beyond.
        let peer = PeerClocks::new(2, Duration::from_millis(250));
        peer.set_voters(vec![1, 2, 3]);
        let t0 = peer.reference_micros();
        peer.record(1, t0, t0 + 2_000_000, t0 + 2_000_000, t0);
        peer.record(3, t0, t0, t0, t0);
        assert_eq!((peer.beyond(), peer.peers_beyond()), (None, vec![1]));
        // Peers 100 ms ahead: within the bound, the quorum's time runs 100 ms ahead of ours.
        let clocks = PeerClocks::new(1, Duration::from_millis(250));
        clocks.set_voters(vec![1, 2, 3]);
        let t0 = clocks.reference_micros();
        clocks.record(2, t0, t0 + 100_000, t0 + 100_000, t0);
        clocks.record(3, t0, t0 + 100_000, t0 + 100_000, t0);
        let quorum = clocks.quorum_now().expect("agreed");
        let ahead = quorum - Utc::now();
        assert!((90..=110).contains(&ahead.num_milliseconds()), "{ahead:?}");
    }

    #[test]
    fn a_wall_clock_step_is_seen_once_in_either_direction() {
        let clocks = PeerClocks::new(1, Duration::from_millis(250));
        assert_eq!(clocks.take_step(), None);
        // Move the reference instead of the wall clock: the same divergence, seen from the
        // other side.
        // Wall and monotonic time drift apart by a few microseconds between two readings, so
        // the step is compared to the nearest second.
        let seconds = |us: i64| (us as f64 / 1e6).round() as i64;
        let mut stepped = clocks.clone();
        stepped.wall0_us -= 3_600_000_000;
        assert_eq!(stepped.take_step().map(seconds), Some(3_600));
        assert_eq!(stepped.take_step(), None, "reported once");
        stepped.wall0_us += 3_600_000_000;
        assert_eq!(stepped.take_step().map(seconds), Some(-3_600));
    }
}
