//! The network the nodes live on, and the partitions cut into it.
//!
//! In `netns` mode every node runs in its own network namespace whose only link goes to a
//! router namespace; the runner, Redis (through its proxy) and the Celery worker stay in the
//! root namespace, linked to the router too. Every packet between two nodes is forwarded by the
//! router, so a partition is a policy-routing rule there (`ip rule … blackhole`): forwarded
//! packets that match are dropped silently, as a real partition drops them, established
//! connections included. A one-way cut matches the peer port as well, so only the connections
//! one side opens are cut. No iptables, no kernel module beyond what `ip netns` needs.
//!
//! In `loopback` mode (no root) every node listens on 127.0.0.1 and partitions are unavailable.
//!
//! Owns the namespaces, links, addresses and rules; must not start or signal processes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The port every node listens on inside its own namespace.
pub const NODE_PORT: u16 = 7400;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run `ip`: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("partitions need netns mode (run as root)")]
    NoNetns,
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `ip` and ignores failure: used for teardown of what may not exist.
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

/// A rule in the router namespace: `from <src> to <dst> [ipproto tcp dport <port>] blackhole`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    from: String,
    to: String,
    dport: Option<u16>,
}

impl Rule {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "from".to_string(),
            self.from.clone(),
            "to".to_string(),
            self.to.clone(),
        ];
        if let Some(port) = self.dport {
            args.extend(["ipproto", "tcp", "dport"].map(String::from));
            args.push(port.to_string());
        }
        args.push("blackhole".to_string());
        args
    }
}

/// The namespaces of one run.
pub struct Network {
    mode: Mode,
    rules: BTreeSet<Rule>,
}

enum Mode {
    Loopback,
    /// `tag` names the namespaces and links (the runner's pid); `net` is the second octet of
    /// the run's 10.x.0.0/16, so several runs can share a machine.
    Netns {
        tag: String,
        net: u8,
    },
}

/// Prefix of every namespace and link this harness creates (used to clean up stale ones).
const PREFIX: &str = "bfc";

impl Network {
    pub fn loopback() -> Network {
        Network {
            mode: Mode::Loopback,
            rules: BTreeSet::new(),
        }
    }

    /// Creates the router namespace and the root link, in a /16 no other run uses. Removes
    /// what runs that died left behind first.
    pub fn netns() -> Result<Network, NetError> {
        cleanup_stale();
        let tag = std::process::id().to_string();
        let routes = Command::new("ip")
            .args(["route", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let second = (std::process::id() % 50) as u8;
        let octet = (0..50u8)
            .map(|k| 200 + (second + k) % 50)
            .find(|b| !routes.contains(&format!("10.{b}.")))
            .unwrap_or(200);
        let net = Network {
            mode: Mode::Netns {
                tag: tag.clone(),
                net: octet,
            },
            rules: BTreeSet::new(),
        };
        let root_ip = format!("10.{octet}.0.2/24");
        let router_ip = format!("10.{octet}.0.1/24");
        let gateway = format!("10.{octet}.0.1");
        let subnet = format!("10.{octet}.0.0/16");
        let router = net.router_ns().expect("netns mode");
        let root_if = format!("{PREFIX}{tag}");
        ip(&["netns", "add", &router])?;
        ip(&["-n", &router, "link", "set", "lo", "up"])?;
        // Forwarding is switched on inside the router namespace only, not on the host.
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()?;
        if !out.status.success() {
            return Err(NetError::Ip {
                args: "netns exec sysctl net.ipv4.ip_forward=1".into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            });
        }
        ip(&[
            "link", "add", &root_if, "type", "veth", "peer", "name", "up0", "netns", &router,
        ])?;
        ip(&["addr", "add", &root_ip, "dev", &root_if])?;
        ip(&["link", "set", &root_if, "up"])?;
        ip(&["-n", &router, "addr", "add", &router_ip, "dev", "up0"])?;
        ip(&["-n", &router, "link", "set", "up0", "up"])?;
        ip(&["route", "add", &subnet, "via", &gateway])?;
        Ok(net)
    }

    pub fn is_netns(&self) -> bool {
        matches!(self.mode, Mode::Netns { .. })
    }

    fn router_ns(&self) -> Option<String> {
        match &self.mode {
            Mode::Netns { tag, .. } => Some(format!("{PREFIX}-{tag}-r")),
            Mode::Loopback => None,
        }
    }

    /// The namespace node `id` runs in.
    pub fn node_ns(&self, id: u64) -> Option<String> {
        match &self.mode {
            Mode::Netns { tag, .. } => Some(format!("{PREFIX}-{tag}-n{id}")),
            Mode::Loopback => None,
        }
    }

    /// Where the runner, Redis' proxy and the worker are reached from the nodes.
    pub fn host_ip(&self) -> String {
        match self.mode {
            Mode::Netns { net, .. } => format!("10.{net}.0.2"),
            Mode::Loopback => "127.0.0.1".into(),
        }
    }

    fn octet(&self) -> u8 {
        match self.mode {
            Mode::Netns { net, .. } => net,
            Mode::Loopback => 0,
        }
    }

    /// The address of node `id` (netns mode), fixed for the node's life.
    pub fn node_ip(&self, id: u64) -> String {
        format!("10.{}.{id}.2", self.octet())
    }

    /// Creates node `id`'s namespace and its link to the router. Ids are 1..=250.
    pub fn add_node(&mut self, id: u64) -> Result<(), NetError> {
        let (Some(router), Some(ns)) = (self.router_ns(), self.node_ns(id)) else {
            return Ok(());
        };
        let router_if = format!("n{id}");
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", &router_if, "netns", &router, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ])?;
        let b = self.octet();
        let (router_addr, node_addr, gateway) = (
            format!("10.{b}.{id}.1/24"),
            format!("10.{b}.{id}.2/24"),
            format!("10.{b}.{id}.1"),
        );
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &router_addr,
            "dev",
            &router_if,
        ])?;
        ip(&["-n", &router, "link", "set", &router_if, "up"])?;
        ip(&["-n", &ns, "addr", "add", &node_addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &gateway])?;
        Ok(())
    }

    /// Deletes node `id`'s namespace (its process must have exited).
    pub fn remove_node(&mut self, id: u64) {
        if let Some(ns) = self.node_ns(id) {
            ip_quiet(&["netns", "del", &ns]);
        }
        let ip = self.node_ip(id);
        let stale: Vec<Rule> = self
            .rules
            .iter()
            .filter(|r| r.from == ip || r.to == ip)
            .cloned()
            .collect();
        for rule in stale {
            self.del_rule(&rule);
        }
    }

    fn add_rule(&mut self, rule: Rule) -> Result<(), NetError> {
        let router = self.router_ns().ok_or(NetError::NoNetns)?;
        if self.rules.contains(&rule) {
            return Ok(());
        }
        let mut args = vec!["-n".to_string(), router, "rule".into(), "add".into()];
        args.extend(rule.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ip(&args)?;
        self.rules.insert(rule);
        Ok(())
    }

    fn del_rule(&mut self, rule: &Rule) {
        if let Some(router) = self.router_ns() {
            let mut args = vec!["-n".to_string(), router, "rule".into(), "del".into()];
            args.extend(rule.args());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ip_quiet(&args);
        }
        self.rules.remove(rule);
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn cut(&mut self, a: u64, b: u64) -> Result<(), NetError> {
        let (ia, ib) = (self.node_ip(a), self.node_ip(b));
        self.add_rule(Rule {
            from: ia.clone(),
            to: ib.clone(),
            dport: None,
        })?;
        self.add_rule(Rule {
            from: ib,
            to: ia,
            dport: None,
        })
    }

    /// `from` can no longer open or use connections to `to`'s port; connections `to` opens
    /// towards `from` still work.
    pub fn cut_one_way(&mut self, from: u64, to: u64) -> Result<(), NetError> {
        let rule = Rule {
            from: self.node_ip(from),
            to: self.node_ip(to),
            dport: Some(NODE_PORT),
        };
        self.add_rule(rule)
    }

    /// Splits the nodes into groups that cannot reach each other.
    pub fn partition(&mut self, groups: &[Vec<u64>]) -> Result<(), NetError> {
        for (i, g) in groups.iter().enumerate() {
            for other in &groups[i + 1..] {
                for a in g {
                    for b in other {
                        self.cut(*a, *b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&mut self) {
        let rules: Vec<Rule> = self.rules.iter().cloned().collect();
        for rule in rules {
            self.del_rule(&rule);
        }
    }

    /// Deletes everything this run created.
    pub fn teardown(&mut self) {
        self.heal();
        if let Mode::Netns { tag, net } = &self.mode {
            let tag = tag.clone();
            ip_quiet(&["route", "del", &format!("10.{net}.0.0/16")]);
            ip_quiet(&["link", "del", &format!("{PREFIX}{tag}")]);
            for ns in list_namespaces() {
                if ns.starts_with(&format!("{PREFIX}-{tag}-")) {
                    ip_quiet(&["netns", "del", &ns]);
                }
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn list_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the run with this tag (its runner's pid) is still alive.
fn alive(tag: &str) -> bool {
    tag.parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes namespaces, links and routes left by runs that died.
fn cleanup_stale() {
    for ns in list_namespaces() {
        let Some(rest) = ns.strip_prefix(&format!("{PREFIX}-")) else {
            continue;
        };
        let tag = rest.split('-').next().unwrap_or("");
        if !alive(tag) {
            ip_quiet(&["netns", "del", &ns]);
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
            let name = name.split('@').next().unwrap_or("");
            if let Some(tag) = name.strip_prefix(PREFIX) {
                if !tag.is_empty() && tag.chars().all(|c| c.is_ascii_digit()) && !alive(tag) {
                    ip_quiet(&["link", "del", name]);
                }
            }
        }
    }
    // Routes of dead runs went with their links; a route whose gateway is gone is dropped
    // by the kernel with its link.
}

/// Whether this process may create network namespaces.
pub fn netns_available() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}
