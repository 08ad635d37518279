//! What a run will do, settled from the command line before anything starts: the seed, the
//! network mode, the nemeses that can run here, the belfry binary, the output directory and
//! the command that replays the run.
//!
//! Invariant: every choice that decides the run's faults is fixed here, so the printed
//! command replays it. Must not start anything.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::RunError;
use crate::nemesis::{self, Nemesis};
use crate::net::netns_available;
use crate::Args;

/// The run's settled choices.
pub(super) struct Plan {
    pub(super) seed: u64,
    /// Whether nodes live in network namespaces (so partitions are possible).
    pub(super) netns: bool,
    /// Whether libfaketime is installed (so clocks can be stepped).
    pub(super) clock: bool,
    pub(super) kinds: Vec<Nemesis>,
    pub(super) belfry_bin: PathBuf,
    /// Absolute, so children that change directory (redis-server does) still find their
    /// files.
    pub(super) out: PathBuf,
    /// The command line that replays this run.
    pub(super) command: String,
}

impl Plan {
    pub(super) fn new(args: &Args) -> Result<Plan, RunError> {
        let seed = args.seed.unwrap_or_else(|| {
            let t = Utc::now();
            (t.timestamp_nanos_opt().unwrap_or_default() as u64) ^ u64::from(std::process::id())
        });
        let netns = network_mode(&args.net)?;
        let clock = args.faketime_lib.exists();
        if args.sentinel && args.celery_python.is_some() {
            return Err(RunError::Usage(
                "--celery-python is not run with --sentinel: Redis replicates a worker's pops and \
                 results asynchronously, so a failover can repeat or lose them whatever belfry does"
                    .into(),
            ));
        }
        let kinds = selected_nemeses(&args.nemesis, netns, clock, args.sentinel)?;
        let belfry_bin = args.belfry.clone().unwrap_or_else(default_belfry);
        if !belfry_bin.exists() {
            return Err(RunError::Usage(format!(
                "no belfry binary at {} (build it: cargo build -p belfry, or pass --belfry)",
                belfry_bin.display()
            )));
        }
        let out = output_dir(args, seed)?;
        let command = replay_command(args, seed, &kinds);
        Ok(Plan {
            seed,
            netns,
            clock,
            kinds,
            belfry_bin,
            out,
            command,
        })
    }

    /// Says what the run will do, and how to replay it.
    pub(super) fn announce(&self, args: &Args) {
        println!(
            "belfry-chaos: seed {}, {} nodes, {}s of faults, network {}, output {}",
            self.seed,
            args.nodes,
            args.duration.as_secs(),
            if self.netns { "netns" } else { "loopback" },
            self.out.display()
        );
        println!("replay with: {}", self.command);
    }
}

fn network_mode(net: &str) -> Result<bool, RunError> {
    match net {
        "netns" => Ok(true),
        "loopback" => Ok(false),
        "auto" => Ok(netns_available()),
        other => Err(RunError::Usage(format!(
            "--net {other:?}: netns, loopback or auto"
        ))),
    }
}

fn selected_nemeses(
    spec: &str,
    netns: bool,
    clock: bool,
    sentinel: bool,
) -> Result<Vec<Nemesis>, RunError> {
    let mut out = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "all" {
            out.extend_from_slice(nemesis::ALL);
        } else if name == "none" {
            continue;
        } else {
            out.push(Nemesis::parse(name).ok_or_else(|| {
                RunError::Usage(format!(
                    "unknown nemesis {name:?}; known: {}",
                    nemesis::ALL
                        .iter()
                        .map(|n| n.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?);
        }
    }
    out.sort();
    out.dedup();
    let explicit = spec != "all";
    out.retain(|n| match n.unavailable(netns, clock, sentinel) {
        Some(why) => {
            if explicit {
                eprintln!(
                    "belfry-chaos: nemesis {} is unavailable here ({why}); skipped",
                    n.name()
                );
            }
            false
        }
        None => true,
    });
    Ok(out)
}

fn default_belfry() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("belfry")))
        .unwrap_or_else(|| PathBuf::from("belfry"))
}

/// Creates the output directory and returns its absolute path.
fn output_dir(args: &Args, seed: u64) -> Result<PathBuf, RunError> {
    let out = args.out.clone().unwrap_or_else(|| {
        // In the repository (ignored by git) when run from its root.
        let base = if Path::new("chaos/Cargo.toml").exists() {
            PathBuf::from("chaos/out")
        } else {
            PathBuf::from("chaos-out")
        };
        base.join(format!(
            "{}-{}n-seed{seed}",
            Utc::now().format("%Y%m%dT%H%M%S"),
            args.nodes
        ))
    });
    std::fs::create_dir_all(&out).map_err(|source| RunError::Out {
        path: out.display().to_string(),
        source,
    })?;
    out.canonicalize().map_err(|source| RunError::Out {
        path: out.display().to_string(),
        source,
    })
}

fn replay_command(args: &Args, seed: u64, kinds: &[Nemesis]) -> String {
    format!(
        "belfry-chaos --nodes {} --duration {}s --seed {seed} --nemesis {}{}{}",
        args.nodes,
        args.duration.as_secs(),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        if args.sentinel { " --sentinel" } else { "" },
        if args.celery_python.is_some() {
            " --celery-python <python>"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::selected_nemeses;
    use crate::nemesis::Nemesis;

    #[test]
    fn the_redis_faults_follow_the_topology() {
        let single = selected_nemeses("all", true, true, false).unwrap();
        assert!(single.contains(&Nemesis::RedisKill) && single.contains(&Nemesis::RedisSlow));
        assert!(!single.contains(&Nemesis::RedisFailover));
        let sentinel = selected_nemeses("all", true, true, true).unwrap();
        assert!(sentinel.contains(&Nemesis::RedisFailover));
        assert!(!sentinel.contains(&Nemesis::RedisKill) && !sentinel.contains(&Nemesis::RedisSlow));
        // Named explicitly where it cannot run, a nemesis is skipped (with a notice), not run.
        let explicit = selected_nemeses("redis-failover,kill-leader", true, true, false).unwrap();
        assert_eq!(explicit, [Nemesis::KillLeader]);
    }
}
