//! Hosts on one machine for the fault runs (issue 18): network namespaces joined to the host by
//! veth pairs (Debian's iproute2), so that a link can be cut for real. `ip link set … down` on a
//! pair's host end drops every packet that would cross it, in both directions, until it is set up
//! again: the kernel does the dropping, nothing in the test process forwards or filters.
//!
//! Layout: every link `j` is the subnet `10.207.j.0/24`, the host end `10.207.j.1`, the namespace
//! end `10.207.j.2`. A namespace's first link carries its default route, so namespaces reach each
//! other through the host, which forwards (`net.ipv4.ip_forward=1` while a [`Net`] lives; the old
//! value comes back on drop). A namespace may have a second link without a route (an imei-lockd
//! node's client side, which the test reaches directly and which a cut of the first leaves up).
//!
//! This module does not start processes (callers run them under [`Net::exec`]) and does not pick
//! ports: each namespace has its own port space. Needs root, like every namespace operation.
//! Dropping the [`Net`] deletes its namespaces, which deletes their veth pairs.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

/// The first octets of every link's subnet.
const NET: [u8; 2] = [10, 207];
/// Prefix of every namespace this module creates (`ilkf<pid>-<name>`), for stale clean-up.
const NS_PREFIX: &str = "ilkf";

/// The value of `net.ipv4.ip_forward` before the first [`Net`], restored by the last drop.
static FORWARD: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

/// One namespace's links: its name and the namespace-side address of each link.
#[derive(Clone, Debug)]
pub struct Host {
    pub netns: String,
    /// The namespace end of its first link (carries the default route).
    pub addr: Ipv4Addr,
    /// The namespace end of its second link, if it has one.
    pub side_addr: Option<Ipv4Addr>,
    /// Host-side interface of each link (what [`Net::cut`] sets down).
    links: Vec<String>,
}

/// A set of namespaces of this process, deleted on drop.
pub struct Net {
    tag: String,
    hosts: Vec<Host>,
    next_link: u8,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}): install Debian's iproute2"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

fn link_addr(link: u8, end: u8) -> Ipv4Addr {
    Ipv4Addr::new(NET[0], NET[1], link, end)
}

/// Deletes the namespaces that a test process which no longer runs left behind (a run killed
/// before its drop): their subnets would clash with ours.
fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "delete", name]);
        }
    }
}

impl Net {
    /// An empty set; turns on forwarding. Panics with the reason when namespaces cannot be made
    /// here (not root, no iproute2).
    pub fn new() -> Self {
        remove_stale();
        {
            let mut f = FORWARD.lock().unwrap();
            if f.0 == 0 {
                let old = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                    .map(|s| s.trim().to_owned())
                    .ok();
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                    .unwrap_or_else(|e| panic!("cannot turn on net.ipv4.ip_forward (root?): {e}"));
                f.1 = old;
            }
            f.0 += 1;
        }
        Self {
            tag: format!("{NS_PREFIX}{}", std::process::id()),
            hosts: Vec::new(),
            next_link: 1,
        }
    }

    /// Adds namespace `name` (a few letters: interface names are limited to 15 bytes) with one
    /// link carrying its default route, and a second link without a route when `side_link`.
    pub fn add(&mut self, name: &str, side_link: bool) -> Host {
        let netns = format!("{}-{name}", self.tag);
        must(&["netns", "add", &netns]);
        must(&["-n", &netns, "link", "set", "lo", "up"]);
        let mut links = Vec::new();
        let mut addrs = Vec::new();
        for k in 0..if side_link { 2 } else { 1 } {
            let j = self.next_link;
            self.next_link += 1;
            assert!(j < 255, "too many links");
            let outer = format!("ilk{}l{j}", std::process::id() % 100_000);
            let inner = format!("v{j}");
            must(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &netns,
            ]);
            let host_end = format!("{}/24", link_addr(j, 1));
            let ns_end = format!("{}/24", link_addr(j, 2));
            must(&["addr", "add", &host_end, "dev", &outer]);
            must(&["link", "set", &outer, "up"]);
            must(&["-n", &netns, "addr", "add", &ns_end, "dev", &inner]);
            must(&["-n", &netns, "link", "set", &inner, "up"]);
            if k == 0 {
                let gw = link_addr(j, 1).to_string();
                must(&["-n", &netns, "route", "add", "default", "via", &gw]);
            }
            links.push(outer);
            addrs.push(link_addr(j, 2));
        }
        let host = Host {
            netns,
            addr: addrs[0],
            side_addr: addrs.get(1).copied(),
            links,
        };
        self.hosts.push(host.clone());
        host
    }

    /// Cuts `host`'s first link (the one its default route uses): nothing crosses it until
    /// [`Net::heal`]. A second link stays up.
    pub fn cut(&self, host: &Host) {
        must(&["link", "set", &host.links[0], "down"]);
    }

    /// Undoes [`Net::cut`].
    pub fn heal(&self, host: &Host) {
        must(&["link", "set", &host.links[0], "up"]);
    }

    /// A command that runs `program` inside `host`'s namespace (`ip netns exec` execs it, so the
    /// child's pid is the program's).
    pub fn exec(host: &Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.netns]).arg(program);
        cmd
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = ip(&["netns", "delete", &h.netns]);
        }
        let mut f = FORWARD.lock().unwrap_or_else(|p| p.into_inner());
        f.0 = f.0.saturating_sub(1);
        if f.0 == 0 {
            if let Some(old) = f.1.take() {
                let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", old);
            }
        }
    }
}
