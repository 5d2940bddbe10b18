//! Helpers for the cluster tests: a [`Cluster`] of `kv replica --etcd` nodes (one etcd,
//! one temp dir of database files, each node restartable with its exact command line),
//! acknowledged writes, polling for a settled primary and for equal digests, and a
//! description of every node for failure messages; the tests run one at a time.

use crate::client::{connect, set, Info, Reply};
use crate::common::etcd::Etcd;
use crate::common::{wait_until, KvProcess, PATIENCE};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The `--lease-ttl` every test uses.
pub const LEASE_TTL: Duration = Duration::from_secs(2);

/// How often the tests sample the nodes' state.
pub const POLL: Duration = Duration::from_millis(25);

/// The cluster tests measure timings against a 2 s lease on a small machine: they run one
/// at a time so that one test's 20 writers do not starve another's lease renewals.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---- writes ---------------------------------------------------------------------------

/// `SET {prefix}{i:03} v{i}` for `i` in `0..count` on node `node`, each of which must be
/// acknowledged; returns the pairs.
pub fn write_all(
    cluster: &Cluster,
    node: usize,
    prefix: &str,
    count: usize,
) -> Vec<(String, String)> {
    let mut con = cluster.nodes[node].connect();
    let pairs: Vec<(String, String)> = (0..count)
        .map(|i| (format!("{prefix}{i:03}"), format!("v{i}")))
        .collect();
    for (key, value) in &pairs {
        let reply = set(&mut con, key, value);
        assert_eq!(reply, Reply::Ok, "SET {key}:\n{}", cluster.describe());
    }
    pairs
}

// ---- nodes ----------------------------------------------------------------------------

/// One cluster node: its command line and database file, and its process while it runs.
pub struct Node {
    pub name: String,
    args: Vec<String>,
    process: Option<KvProcess>,
    /// The stderr of earlier runs of this node, for failure messages.
    earlier_stderr: String,
}

impl Node {
    /// Starts the node with its command line (the same at every start).
    fn start(&mut self) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.process = Some(KvProcess::start(&args));
    }

    /// SIGKILLs the node (keeping its stderr for failure messages).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
            self.earlier_stderr += &format!("{}\n--- killed ---\n", process.stderr_text());
        }
    }

    /// Stops the node cleanly (`EXIT` in its shell); returns its exit status.
    pub fn exit(&mut self) -> Option<i32> {
        let mut process = self
            .process
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        process.send("EXIT");
        let status = process.wait_exit();
        self.earlier_stderr += &format!("{}\n--- exited ---\n", process.stderr_text());
        status
    }

    /// The running process; panics when the node is down.
    pub fn process(&self) -> &KvProcess {
        self.process
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The replication port (what followers report as `master_port`).
    pub fn repl_port(&self) -> u16 {
        self.process().port
    }

    /// The client port.
    pub fn resp_port(&self) -> u16 {
        self.process().resp_port.expect("started with --resp")
    }

    /// A connection to the client port.
    pub fn connect(&self) -> redis::Connection {
        connect(self.resp_port(), PATIENCE)
            .unwrap_or_else(|| panic!("cannot connect to {}", self.name))
    }

    /// `INFO replication`, or `None` when the node is down or does not answer.
    pub fn info(&self) -> Option<Info> {
        Info::of(self.process.as_ref()?.resp_port?)
    }

    /// The shell's `DIGEST`: `HEX (seq N)` (other lines the shell prints meanwhile, such as
    /// a sync report, are skipped).
    pub fn digest(&mut self) -> String {
        let process = self
            .process
            .as_mut()
            .unwrap_or_else(|| panic!("digest of a node that is down"));
        process.send("DIGEST");
        for _ in 0..20 {
            let line = process.next_line();
            if line.ends_with(')') && line.contains(" (seq ") {
                return line;
            }
        }
        panic!("no DIGEST line; stderr:\n{}", process.stderr_text())
    }

    /// Everything the node wrote on stderr, over all its runs.
    pub fn stderr_text(&self) -> String {
        let now = self.process.as_ref().map(KvProcess::stderr_text);
        format!("{}{}", self.earlier_stderr, now.unwrap_or_default())
    }
}

/// The client ports of a cluster's nodes (`None` while a node is down), shared with writer
/// threads so they find restarted nodes.
pub type Ports = Arc<Mutex<Vec<Option<u16>>>>;

/// Nodes of one cluster, all started with `kv replica --etcd ... --cluster NAME`.
pub struct Cluster {
    pub nodes: Vec<Node>,
    ports: Ports,
    pub name: String,
    _dir: TempDir,
    /// Last: dropped after the nodes.
    pub etcd: Etcd,
}

impl Cluster {
    /// A fresh etcd and `size` nodes pointing straight at it, started at once.
    pub fn start(name: &str, size: usize, extra: &[&str]) -> Cluster {
        let etcd = Etcd::start();
        let urls = vec![etcd.url(); size];
        Cluster::start_with(etcd, name, &urls, extra)
    }

    /// One node per `--etcd` URL in `urls` (each may go through its own proxy), started at
    /// once, with `extra` arguments.
    pub fn start_with(etcd: Etcd, name: &str, urls: &[String], extra: &[&str]) -> Cluster {
        let dir = TempDir::new().expect("tempdir");
        let mut nodes: Vec<Node> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let db = dir.path().join(format!("n{i}.db"));
                let mut args: Vec<String> = [
                    "replica",
                    "--etcd",
                    url,
                    "--cluster",
                    name,
                    "--lease-ttl",
                    &LEASE_TTL.as_secs().to_string(),
                    "--db",
                    &db.display().to_string(),
                    "--listen",
                    "127.0.0.1:0",
                    "--resp",
                    "127.0.0.1:0",
                ]
                .map(String::from)
                .to_vec();
                args.extend(extra.iter().map(|a| a.to_string()));
                Node {
                    name: format!("n{i}"),
                    args,
                    process: None,
                    earlier_stderr: String::new(),
                }
            })
            .collect();
        std::thread::scope(|s| {
            let starts: Vec<_> = nodes.iter_mut().map(|n| s.spawn(|| n.start())).collect();
            for start in starts {
                if let Err(panic) = start.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        let ports = nodes.iter().map(|n| Some(n.resp_port())).collect();
        Cluster {
            nodes,
            ports: Arc::new(Mutex::new(ports)),
            name: name.to_string(),
            _dir: dir,
            etcd,
        }
    }

    /// The client ports, kept up to date across kills and restarts.
    pub fn ports(&self) -> Ports {
        Arc::clone(&self.ports)
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        self.ports.lock().expect("ports")[i] = None;
        self.nodes[i].kill();
    }

    /// Stops node `i` cleanly (`EXIT`); returns its exit status.
    pub fn exit(&mut self, i: usize) -> Option<i32> {
        self.ports.lock().expect("ports")[i] = None;
        self.nodes[i].exit()
    }

    /// Starts node `i` again with the same command line (same database file).
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
        self.ports.lock().expect("ports")[i] = Some(self.nodes[i].resp_port());
    }

    /// `INFO replication` of every node (`None` for one that is down or silent).
    pub fn infos(&self) -> Vec<Option<Info>> {
        self.nodes.iter().map(Node::info).collect()
    }

    /// The nodes reporting `role:master`.
    pub fn masters(&self) -> Vec<usize> {
        let infos = self.infos();
        (0..infos.len())
            .filter(|&i| infos[i].as_ref().is_some_and(Info::is_master))
            .collect()
    }

    /// The primary, if the cluster is settled: exactly one node says `role:master`, it
    /// accepts writes, and every other running node follows it.
    pub fn settled(&self) -> Option<usize> {
        let infos = self.infos();
        let masters: Vec<usize> = (0..infos.len())
            .filter(|&i| infos[i].as_ref().is_some_and(Info::is_master))
            .collect();
        let [primary] = masters[..] else {
            return None;
        };
        let port = self.nodes[primary].repl_port();
        let follow = (0..infos.len())
            .filter(|&i| i != primary && self.nodes[i].is_running())
            .all(|i| infos[i].as_ref().is_some_and(|info| info.follows(port)));
        let accepting = infos[primary].as_ref().is_some_and(Info::accepts_writes);
        (follow && accepting).then_some(primary)
    }

    /// Waits until the cluster is [`settled`](Cluster::settled); returns the primary.
    pub fn wait_settled(&self, limit: Duration) -> usize {
        let mut settled = None;
        let done = wait_until(limit, || {
            settled = self.settled();
            settled.is_some()
        });
        assert!(
            done,
            "no settled primary within {limit:?}:\n{}",
            self.describe()
        );
        settled.expect("settled")
    }

    /// Waits until one of `candidates` reports `role:master` and accepts writes; returns it
    /// and how long that took.
    pub fn wait_master_among(&self, candidates: &[usize], limit: Duration) -> (usize, Duration) {
        let started = Instant::now();
        let mut found = None;
        let done = wait_until(limit, || {
            found = candidates.iter().copied().find(|&i| {
                self.nodes[i]
                    .info()
                    .is_some_and(|info| info.accepts_writes())
            });
            found.is_some()
        });
        assert!(
            done,
            "none of {candidates:?} became role:master within {limit:?}:\n{}",
            self.describe()
        );
        (found.expect("found"), started.elapsed())
    }

    /// Waits until node `i` follows node `primary` (`role:slave`, its `master_port`, link up).
    pub fn wait_follows(&self, i: usize, primary: usize, limit: Duration) {
        let port = self.nodes[primary].repl_port();
        let follows = wait_until(limit, || {
            self.nodes[i].info().is_some_and(|info| info.follows(port))
        });
        assert!(
            follows,
            "{} never followed {} (replication port {port}) within {limit:?}:\n{}",
            self.nodes[i].name,
            self.nodes[primary].name,
            self.describe()
        );
    }

    /// Waits until every running node's `DIGEST` is the same (same contents at the same seq);
    /// returns it.
    pub fn wait_converged(&mut self) -> String {
        let mut digests = Vec::new();
        let same = wait_until(PATIENCE, || {
            digests = self
                .nodes
                .iter_mut()
                .filter(|n| n.is_running())
                .map(Node::digest)
                .collect();
            digests.iter().all(|d| d == &digests[0])
        });
        assert!(
            same,
            "digests never equal: {digests:?}\n{}",
            self.describe()
        );
        digests.swap_remove(0)
    }

    /// Every node's `INFO replication`, etcd's primary key and the tail of every node's
    /// stderr, for failure messages.
    pub fn describe(&self) -> String {
        let key = format!("/kv/{}/primary", self.name);
        let holder = self
            .etcd
            .get(&key)
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let mut text = format!("etcd {key} = {holder:?}\n");
        for node in &self.nodes {
            let info = node.info().map(|i| i.0);
            let stderr = node.stderr_text();
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(25)..].join("\n    ");
            let state = match &node.process {
                Some(p) => format!(
                    "pid {}, {}, repl port {}",
                    p.pid(),
                    proc_state(p.pid()),
                    p.port
                ),
                None => "down".to_string(),
            };
            text += &format!("== {} ({state}): {info:?}\n    {tail}\n", node.name);
        }
        text
    }
}

/// The state letter of process `pid` from `/proc/PID/stat` (`R`, `S`, `Z` for exited but
/// not reaped...), for failure messages.
fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').next());
    format!("state {}", state.unwrap_or("unknown"))
}
