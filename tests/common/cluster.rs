//! Multi-member test harness: runs N server processes that form one cluster.
//!
//! Each member is started with etcd's own cluster flags (`--name`,
//! `--initial-advertise-peer-urls`, `--listen-peer-urls`, `--listen-client-urls`,
//! `--advertise-client-urls`, `--initial-cluster-token`, `--initial-cluster`,
//! `--initial-cluster-state`) on loopback ports, so the same tests run against Cairn and,
//! with `CAIRN_TEST_SERVER_BIN=/usr/bin/etcd`, against etcd 3.4. A member counts as started
//! once it prints the ready line, as a single `TestServer` does.
//!
//! All members of a cluster keep their data under one temporary directory, which outlives
//! kills and restarts; dropping the cluster kills every member that still runs.
//!
//! Network partitions (`start_proxied`, `partition`, `heal`): member i listens for peers on
//! its own port but advertises a proxy's port (`tests/common/proxy.rs`) that forwards to
//! it, so every peer connection to member i passes that proxy. Cutting only the proxies in
//! front of the minority is no partition: a member's outgoing connections go to the other
//! members' proxies and still carry traffic both ways (Raft requests and their answers,
//! and streams a member opens to receive its peers' messages, as etcd 3.4 does). Tried
//! with an isolated leader on both servers these tests run against: it stayed leader and
//! its writes committed. Nor can a member get its own proxy per peer: every member must see
//! the same peer URLs (member IDs are derived from them). So each proxy tells senders apart
//! by process: it admits only connections opened by the member processes on its own
//! member's side of the partition, which cuts both directions between the sides and
//! nothing within a side. Needs Linux `/proc` and the same user as the members.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use super::proxy::Proxy;
use super::{next_port_pair, path_str, server_bin, LogState, SharedLog, READY_LINE, STOP_TIMEOUT};

/// Time for every member of a fresh cluster to become ready. Members wait for each other
/// (a member is ready only once the cluster has a leader), so this covers all of them.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for one (re)started member to become ready.
const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A safety net against a hung call, not a performance bound: a test that waits on a
/// server fails instead of hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each member's output printed when a test fails.
const LOG_TAIL_LINES: usize = 400;

/// One member process of a `TestCluster`.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    /// `--initial-cluster` and `--initial-cluster-state` it is started with.
    initial_cluster: String,
    initial_state: &'static str,
    child: Option<Child>,
    readers: Vec<std::thread::JoinHandle<()>>,
    log: SharedLog,
    /// Its member ID, once a status answer told it (it never changes).
    id: Option<u64>,
    /// In a proxied cluster, the proxy in front of its peer port, whose port it advertises.
    proxy: Option<Proxy>,
    /// `http`, or `https` for peer TLS.
    peer_scheme: &'static str,
    /// In a cluster with failpoints, the port of its failpoint HTTP endpoint (`GOFAIL_HTTP`).
    failpoint_port: Option<u16>,
    /// Failpoints set at its next start (`FAILPOINTS`), `name=action;...`.
    startup_failpoints: String,
    /// A filesystem of its own under its data dir (`start_with_tmpfs`).
    disk: Option<super::tmpfs::Tmpfs>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL it advertises (its proxy's, in a proxied cluster).
    fn peer_url(&self) -> String {
        let port = self.proxy.as_ref().map_or(self.peer_port, Proxy::port);
        format!("{}://127.0.0.1:{port}", self.peer_scheme)
    }

    /// The peer URL it listens on.
    fn listen_peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }

    fn push_log(&self, line: String) -> usize {
        let (lock, _) = &*self.log;
        let mut st = lock.lock().unwrap();
        st.lines.push(line);
        st.lines.len()
    }

    fn tail(&self, n: usize) -> String {
        let (lock, _) = &*self.log;
        let st = lock.lock().unwrap();
        let from = st.lines.len().saturating_sub(n);
        let mut out = format!(
            "---- output of member {} (last {} of {} lines) ----\n",
            self.name,
            st.lines.len() - from,
            st.lines.len()
        );
        for l in &st.lines[from..] {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(&format!("---- end of output of member {} ----", self.name));
        out
    }

    fn join_readers(&mut self) {
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

pub struct TestCluster {
    dir: tempfile::TempDir,
    token: String,
    extra_args: Vec<String>,
    members: Vec<Member>,
    /// Whether members get a proxy in front of their peer port (`start_proxied`).
    proxied: bool,
    /// Scheme of every member's peer URLs: `http`, or `https` for peer TLS.
    peer_scheme: &'static str,
    /// Whether members serve failpoints (`start_with_failpoints`).
    failpoints: bool,
    /// The binary members run: the server under test, unless the test names another.
    bin: PathBuf,
}

impl TestCluster {
    /// Starts `n` fresh members named `m1`..`mN` that form one cluster, and waits until
    /// every one of them is ready. `extra_args` are passed to every member.
    pub fn start(n: usize, extra_args: &[&str]) -> TestCluster {
        Self::start_inner(n, extra_args, false, "http")
    }

    /// Like `start`, with `https` peer URLs: `extra_args` must give peer TLS flags.
    pub fn start_peer_tls(n: usize, extra_args: &[&str]) -> TestCluster {
        Self::start_inner(n, extra_args, false, "https")
    }

    /// Like `start`, with a proxy (`tests/common/proxy.rs`) in front of each member's peer
    /// port: member i listens for peers on its own port but advertises (and is listed in
    /// `--initial-cluster` at) its proxy's, so all peer traffic to it passes the proxy and
    /// `partition` can cut it.
    pub fn start_proxied(n: usize, extra_args: &[&str]) -> TestCluster {
        Self::start_inner(n, extra_args, true, "http")
    }

    /// Like `start_proxied`, with each member serving its failpoints over HTTP
    /// (`set_failpoint`). Cairn serves them only when built with the `failpoints` feature.
    pub fn start_with_failpoints(n: usize, extra_args: &[&str]) -> TestCluster {
        Self::start_with(n, extra_args, true, "http", true)
    }

    /// Like `start`, with member `i`'s data dir on a tmpfs of `size_bytes` of its own
    /// (`disk`); None when no tmpfs can be mounted here (the test then skips).
    pub fn start_with_tmpfs(
        n: usize,
        extra_args: &[&str],
        i: usize,
        size_bytes: u64,
    ) -> Option<TestCluster> {
        let mut cluster = Self::prepare(n, extra_args, false, "http", false);
        let m = &mut cluster.members[i];
        let mount_point = cluster.dir.path().join(format!("{}-disk", m.name));
        m.disk = Some(super::tmpfs::Tmpfs::mount(&mount_point, size_bytes)?);
        m.data_dir = mount_point.join(format!("{}.etcd", m.name));
        let all: Vec<usize> = (0..n).collect();
        cluster.spawn_and_wait(&all, CLUSTER_READY_TIMEOUT);
        Some(cluster)
    }

    /// `n` members, not started: the test prepares their data directories (a restore),
    /// then calls `start_prepared`.
    pub fn prepare_stopped(n: usize, extra_args: &[&str]) -> TestCluster {
        Self::prepare(n, extra_args, false, "http", false)
    }

    pub fn start_prepared(&mut self) {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.spawn_and_wait(&all, CLUSTER_READY_TIMEOUT);
    }

    /// Runs `bin` from the next start of each member on (etcd, then Cairn on its data).
    pub fn set_bin(&mut self, bin: &Path) {
        self.bin = bin.to_path_buf();
    }

    /// `--initial-cluster-token` of every member.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The tmpfs of member `i` (`start_with_tmpfs`).
    pub fn disk(&self, i: usize) -> &super::tmpfs::Tmpfs {
        self.members[i]
            .disk
            .as_ref()
            .expect("started with start_with_tmpfs")
    }

    fn start_inner(
        n: usize,
        extra_args: &[&str],
        proxied: bool,
        peer_scheme: &'static str,
    ) -> TestCluster {
        Self::start_with(n, extra_args, proxied, peer_scheme, false)
    }

    fn start_with(
        n: usize,
        extra_args: &[&str],
        proxied: bool,
        peer_scheme: &'static str,
        failpoints: bool,
    ) -> TestCluster {
        let mut cluster = Self::prepare(n, extra_args, proxied, peer_scheme, failpoints);
        // Every member must be running before any can become ready.
        let all: Vec<usize> = (0..n).collect();
        cluster.spawn_and_wait(&all, CLUSTER_READY_TIMEOUT);
        cluster
    }

    /// A fresh cluster of `n` members, none started yet.
    fn prepare(
        n: usize,
        extra_args: &[&str],
        proxied: bool,
        peer_scheme: &'static str,
        failpoints: bool,
    ) -> TestCluster {
        assert!(n >= 1, "a cluster has at least one member");
        let dir = tempfile::Builder::new()
            .prefix("kvcluster-")
            .tempdir()
            .expect("create tempdir");
        // A token per cluster, so that members of two test clusters can never join up.
        let token = format!(
            "cairn-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut cluster = TestCluster {
            dir,
            token,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            members: Vec::new(),
            proxied,
            peer_scheme,
            failpoints,
            bin: server_bin(),
        };
        for i in 0..n {
            cluster.prepare_member(&format!("m{}", i + 1));
        }
        let initial = cluster.initial_cluster_of(&(0..n).collect::<Vec<_>>());
        for m in &mut cluster.members {
            m.initial_cluster = initial.clone();
            m.initial_state = "new";
        }
        cluster
    }

    /// Number of members known to the harness (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    pub fn peer_url(&self, i: usize) -> String {
        self.members[i].peer_url()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.members[i].data_dir.clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Indices of the members whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_running(i)).collect()
    }

    /// Client URLs of all members, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `name=peer-url,...` of the given members, as `--initial-cluster` takes it.
    pub fn initial_cluster_of(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| format!("{}={}", self.members[i].name, self.members[i].peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that knows every member's endpoint and balances over them.
    pub async fn client(&self) -> Client {
        Self::connect(self.endpoints()).await
    }

    /// A client that talks to member `i` only.
    pub async fn member_client(&self, i: usize) -> Client {
        Self::connect(vec![self.endpoint(i)]).await
    }

    /// A client over the endpoints of the given members.
    pub async fn client_of(&self, members: &[usize]) -> Client {
        Self::connect(members.iter().map(|&i| self.endpoint(i)).collect()).await
    }

    /// A client of member `i` whose requests and streams require a leader (clientv3's
    /// `WithRequireLeader`: `hasleader` metadata).
    pub async fn member_client_requiring_leader(&self, i: usize) -> Client {
        Self::connect_with(vec![self.endpoint(i)], true).await
    }

    async fn connect(endpoints: Vec<String>) -> Client {
        Self::connect_with(endpoints, false).await
    }

    async fn connect_with(endpoints: Vec<String>, require_leader: bool) -> Client {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_require_leader(require_leader)
            .with_timeout(REQUEST_TIMEOUT);
        Client::connect(&endpoints, Some(options))
            .await
            .unwrap_or_else(|e| panic!("connect to {endpoints:?}: {e}"))
    }

    /// Member `i`'s ID, from the header of its own status answer.
    pub async fn member_id(&mut self, i: usize) -> u64 {
        if let Some(id) = self.members[i].id {
            return id;
        }
        let mut c = self.member_client(i).await;
        let status = c
            .status()
            .await
            .unwrap_or_else(|e| panic!("status of member {}: {e}", self.name(i)));
        let id = status.header().expect("status has a header").member_id();
        assert_ne!(id, 0, "member {} reports member ID 0", self.name(i));
        self.members[i].id = Some(id);
        id
    }

    /// The index of the member with this ID, if the harness has learned it.
    pub fn index_of_id(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == Some(id))
    }

    /// Waits until every running member reports the same leader and that leader is a
    /// running member; returns its index. Panics with the last observations at the
    /// deadline.
    pub async fn wait_for_leader(&mut self, within: Duration) -> usize {
        let running = self.running();
        self.wait_for_leader_among(&running, within).await
    }

    /// Like `wait_for_leader`, among the given members only (one side of a partition): they
    /// all report the same leader, and it is one of them.
    pub async fn wait_for_leader_among(&mut self, members: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            let mut leaders = Vec::new();
            let mut answered_all = true;
            last.clear();
            for &i in members {
                match self.probe_status(i).await {
                    Ok((id, leader)) => {
                        self.members[i].id = Some(id);
                        last.push_str(&format!("{}: id {id:x} leader {leader:x}; ", self.name(i)));
                        leaders.push(leader);
                    }
                    Err(e) => {
                        last.push_str(&format!("{}: {e}; ", self.name(i)));
                        answered_all = false;
                    }
                }
            }
            if answered_all && !leaders.is_empty() {
                let leader = leaders[0];
                if leader != 0 && leaders.iter().all(|&l| l == leader) {
                    if let Some(i) = self.index_of_id(leader) {
                        if self.is_running(i) && members.contains(&i) {
                            return i;
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!("no agreed leader among members {members:?} within {within:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (member ID, leader ID) from member `i`'s status, with a short bound per call so
    /// that an unresponsive member does not stall a poll.
    async fn probe_status(&self, i: usize) -> Result<(u64, u64), String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut c = Client::connect([self.endpoint(i)], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        let status = c.status().await.map_err(|e| e.to_string())?;
        let id = status.header().map(|h| h.member_id()).unwrap_or(0);
        Ok((id, status.leader()))
    }

    /// The proxy in front of member `i`'s peer port (a cluster from `start_proxied`).
    pub fn proxy(&self, i: usize) -> &Proxy {
        self.members[i]
            .proxy
            .as_ref()
            .expect("not a proxied cluster")
    }

    /// Cuts all peer traffic, both ways, between the members in `side` and the others
    /// (a cluster from `start_proxied`); connections within each side are kept. Each
    /// proxy admits only connections opened by the member processes on its own member's
    /// side, so it decides by the current processes: partition again after a restart.
    pub fn partition(&mut self, side: &[usize]) {
        for j in 0..self.len() {
            let pids: Vec<u32> = self
                .running()
                .into_iter()
                .filter(|i| side.contains(i) == side.contains(&j))
                .map(|i| self.members[i].child.as_ref().unwrap().id())
                .collect();
            self.proxy(j).only_from(&pids);
            let m = &self.members[j];
            m.push_log(format!(
                "[harness] partition {side:?}: peers admitted from pids {pids:?}"
            ));
        }
    }

    /// Cuts peer traffic from member `from` to member `to` only: `to`'s proxy refuses the
    /// connections `from` opens, while `to` still reaches `from` (and the answers to what
    /// `to` sends come back). Decided by the current processes, as `partition`.
    pub fn partition_one_way(&mut self, from: usize, to: usize) {
        let pids: Vec<u32> = self
            .running()
            .into_iter()
            .filter(|&i| i != from)
            .map(|i| self.members[i].child.as_ref().unwrap().id())
            .collect();
        self.proxy(to).only_from(&pids);
        self.members[to].push_log(format!(
            "[harness] one-way partition: nothing from {} reaches {}",
            self.name(from),
            self.name(to)
        ));
    }

    /// Delays all peer traffic, between every two members, by `delay` (a slow network);
    /// zero ends it.
    pub fn delay_peer_network(&mut self, delay: Duration) {
        for j in 0..self.len() {
            self.proxy(j).set_delay(delay);
            self.members[j].push_log(format!("[harness] peer traffic delayed by {delay:?}"));
        }
    }

    /// Ends a partition and any delay: every proxy admits everyone again, at once.
    pub fn heal(&mut self) {
        for j in 0..self.len() {
            self.proxy(j).open();
            self.proxy(j).set_delay(Duration::ZERO);
            self.members[j].push_log("[harness] partition healed".to_string());
        }
    }

    /// Indices of running members other than `leader`.
    pub fn followers(&self, leader: usize) -> Vec<usize> {
        self.running()
            .into_iter()
            .filter(|&i| i != leader)
            .collect()
    }

    /// Abrupt stop of member `i`: SIGKILL, and reap the process.
    pub fn kill9(&mut self, i: usize) {
        let m = &mut self.members[i];
        let mut child = m.child.take().expect("member not running");
        child.kill().expect("kill -9 member");
        child.wait().expect("reap member");
        m.join_readers();
        m.push_log("[harness] killed with SIGKILL".to_string());
    }

    /// Freezes member `i` (SIGSTOP), as a long GC pause or a stalled VM does: its sockets
    /// stay open and nothing answers. `resume` thaws it.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.members[i].push_log("[harness] paused with SIGSTOP".to_string());
    }

    /// Thaws member `i` after `pause` (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.members[i].push_log("[harness] resumed with SIGCONT".to_string());
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        let pid = self.members[i]
            .child
            .as_ref()
            .expect("member not running")
            .id();
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill -{signal} {pid} failed");
    }

    /// Graceful stop of member `i`: SIGTERM, then it must exit cleanly within 10 s.
    pub fn stop(&mut self, i: usize) {
        let name = self.name(i).to_string();
        let m = &mut self.members[i];
        let mut child = m.child.take().expect("member not running");
        let pid = child.id();
        m.push_log("[harness] sending SIGTERM".to_string());
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {pid} failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for member") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                m.join_readers();
                panic!("member {name} did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        m.join_readers();
        // etcd re-raises SIGTERM (exit by signal 15 / status 143); Cairn exits 0. Anything
        // else (an abort, a crash) is a failed shutdown.
        use std::os::unix::process::ExitStatusExt;
        let clean =
            status.code() == Some(0) || status.code() == Some(143) || status.signal() == Some(15);
        assert!(
            clean,
            "member {name} did not stop cleanly on SIGTERM ({status})"
        );
    }

    /// Starts member `i` again on its data dir and ports; waits until it is ready.
    pub fn restart(&mut self, i: usize) {
        self.restart_many(&[i]);
    }

    /// Starts the given stopped members together, then waits until each is ready. Use it
    /// when the members need each other to reach a quorum.
    pub fn restart_many(&mut self, members: &[usize]) {
        for &i in members {
            if self.is_running(i) {
                self.stop(i);
            }
        }
        self.spawn_and_wait(members, MEMBER_READY_TIMEOUT);
    }

    /// Makes stopped member `i` a new member at its next start, as after a member remove
    /// and a member add of its peer URLs: its data is wiped, and it joins the running
    /// cluster (`existing`, every member in `--initial-cluster`) under the ID the add gave.
    pub fn wipe_for_rejoin(&mut self, i: usize) {
        assert!(!self.is_running(i), "stop member {} first", self.name(i));
        let all: Vec<usize> = (0..self.len()).collect();
        let initial_cluster = self.initial_cluster_of(&all);
        let m = &mut self.members[i];
        match std::fs::remove_dir_all(&m.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("wipe {}: {e}", m.data_dir.display()),
        }
        m.initial_state = "existing";
        m.initial_cluster = initial_cluster;
        m.id = None;
        m.push_log("[harness] data wiped: rejoins as a new member".to_string());
    }

    /// Reserves ports and a data dir for a new member named `name` without starting it;
    /// returns its index. Its `--initial-cluster` is every member known to the harness and
    /// its state `existing`: the flags of a member that joins a running cluster after a
    /// member add. `set_initial_cluster` changes that.
    pub fn prepare_member(&mut self, name: &str) -> usize {
        assert!(
            self.members.iter().all(|m| m.name != name),
            "member name {name} already used"
        );
        let (client_port, peer_port) = next_port_pair();
        self.members.push(Member {
            name: name.to_string(),
            client_port,
            peer_port,
            data_dir: self.dir.path().join(format!("{name}.etcd")),
            initial_cluster: String::new(),
            initial_state: "existing",
            child: None,
            readers: Vec::new(),
            log: Arc::new((Mutex::new(LogState::default()), Condvar::new())),
            id: None,
            proxy: self.proxied.then(|| Proxy::start(peer_port)),
            peer_scheme: self.peer_scheme,
            failpoint_port: self.failpoints.then(|| next_port_pair().0),
            startup_failpoints: String::new(),
            disk: None,
        });
        let i = self.members.len() - 1;
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.members[i].initial_cluster = self.initial_cluster_of(&all);
        i
    }

    /// Polls serializable count-only reads of `prefix` on member `i` (its own state) until
    /// it holds `n` keys; panics at `within` with what it last held. Returns how long it took.
    pub async fn wait_key_count(
        &self,
        i: usize,
        prefix: &str,
        n: i64,
        within: Duration,
    ) -> Duration {
        let mut mc = self.member_client(i).await;
        let started = Instant::now();
        loop {
            let options = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only()
                .with_serializable();
            let count = mc.get(prefix, Some(options)).await.map(|r| r.count());
            if count.as_ref().ok() == Some(&n) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{} holds {count:?} of the {n} keys under {prefix:?} after {within:?}",
                self.name(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets failpoint `name` of running member `i` to `action` (`fail`'s syntax, e.g.
    /// `sleep(20000)`, `panic`, `return`), through its failpoint HTTP endpoint.
    pub fn set_failpoint(&self, i: usize, name: &str, action: &str) {
        let status = self.failpoint_request(i, "PUT", name, action);
        assert_eq!(
            status,
            204,
            "setting failpoint {name}={action} on {}",
            self.name(i)
        );
        self.members[i].push_log(format!("[harness] failpoint {name}={action}"));
    }

    /// Turns failpoint `name` of running member `i` off.
    pub fn clear_failpoint(&self, i: usize, name: &str) {
        let status = self.failpoint_request(i, "DELETE", name, "");
        assert_eq!(status, 204, "clearing failpoint {name} on {}", self.name(i));
        self.members[i].push_log(format!("[harness] failpoint {name} off"));
    }

    /// Failpoints member `i` sets at its next start, `name=action;...`.
    pub fn set_startup_failpoints(&mut self, i: usize, failpoints: &str) {
        self.members[i].startup_failpoints = failpoints.to_string();
    }

    /// One HTTP/1.1 request to member `i`'s failpoint endpoint; its status code.
    fn failpoint_request(&self, i: usize, method: &str, name: &str, body: &str) -> u16 {
        use std::io::{Read, Write};
        let port = self.members[i]
            .failpoint_port
            .expect("start the cluster with start_with_failpoints");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("failpoint endpoint of {}: {e}", self.name(i)));
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        write!(
            stream,
            "{method} /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("failpoint endpoint answered {response:?}"))
    }

    /// Sets the `--initial-cluster` member `i` is started with.
    pub fn set_initial_cluster(&mut self, i: usize, initial_cluster: String) {
        self.members[i].initial_cluster = initial_cluster;
    }

    /// Starts a prepared member (see `prepare_member`) and waits until it is ready.
    pub fn start_member(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "member {} already running",
            self.name(i)
        );
        self.spawn_and_wait(&[i], MEMBER_READY_TIMEOUT);
    }

    /// Moves stopped member `i` to a fresh peer port, for a peer URL update; returns the
    /// new peer URL. Its next start listens and advertises there.
    pub fn move_peer_port(&mut self, i: usize) -> String {
        assert!(!self.is_running(i), "stop member {} first", self.name(i));
        assert!(
            self.members[i].proxy.is_none(),
            "a proxied member keeps its peer port"
        );
        let old = self.peer_url(i);
        let (_, peer_port) = next_port_pair();
        self.members[i].peer_port = peer_port;
        let new = self.peer_url(i);
        self.members[i].initial_cluster = self.members[i].initial_cluster.replace(&old, &new);
        new
    }

    /// Waits up to `within` for member `i`'s process to exit on its own (for example after
    /// it was removed from the cluster); returns its exit status, or None if it still runs.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let m = &mut self.members[i];
        loop {
            let child = m.child.as_mut().expect("member not running");
            if let Some(status) = child.try_wait().expect("wait for member") {
                m.child = None;
                m.join_readers();
                m.push_log(format!("[harness] exited on its own ({status})"));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All of member `i`'s output so far (all its runs).
    pub fn logs(&self, i: usize) -> String {
        self.members[i].tail(usize::MAX)
    }

    fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let mut args: Vec<String> = vec![
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            path_str(&m.data_dir),
            "--listen-client-urls".into(),
            m.endpoint(),
            "--advertise-client-urls".into(),
            m.endpoint(),
            "--listen-peer-urls".into(),
            m.listen_peer_url(),
            "--initial-advertise-peer-urls".into(),
            m.peer_url(),
            "--initial-cluster-token".into(),
            self.token.clone(),
            "--initial-cluster".into(),
            m.initial_cluster.clone(),
            "--initial-cluster-state".into(),
            m.initial_state.into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts stopped member `i` without waiting for it to become ready (for a start that
    /// is expected to end in a crash: see `wait_exit`).
    pub fn spawn_member(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Spawns the given members, then waits until each has printed the ready line (in this
    /// run) or exited.
    fn spawn_and_wait(&mut self, members: &[usize], within: Duration) {
        let mut starts = Vec::new();
        for &i in members {
            starts.push((i, self.spawn(i)));
        }
        let deadline = Instant::now() + within;
        for (i, start_index) in starts {
            self.wait_ready(i, start_index, deadline, within);
        }
    }

    /// Spawns member `i`; the index of its first log line of this run.
    fn spawn(&mut self, i: usize) -> usize {
        assert!(
            !self.is_running(i),
            "member {} already running",
            self.name(i)
        );
        let args = self.args(i);
        let m = &mut self.members[i];
        let mut env = Vec::new();
        if let Some(port) = m.failpoint_port {
            env.push(("GOFAIL_HTTP", format!("127.0.0.1:{port}")));
        }
        if !m.startup_failpoints.is_empty() {
            env.push(("FAILPOINTS", std::mem::take(&mut m.startup_failpoints)));
        }
        let start_index = m.push_log(format!(
            "[harness] starting {:?} {args:?} {env:?}",
            self.bin
        ));
        let (child, readers) =
            super::spawn_server_bin(&self.bin, &args, &env, self.dir.path(), &m.log);
        m.readers = readers;
        m.child = Some(child);
        start_index
    }

    fn wait_ready(&mut self, i: usize, start_index: usize, deadline: Instant, within: Duration) {
        let name = self.name(i).to_string();
        let m = &mut self.members[i];
        let log = m.log.clone();
        match super::wait_ready_line(&log, start_index, m.child.as_mut().unwrap(), deadline) {
            Ok(()) => {}
            Err(super::NotReady::Exited(status)) => {
                m.child = None;
                m.join_readers();
                panic!("member {name} exited before becoming ready ({status})");
            }
            Err(super::NotReady::TimedOut) => panic!(
                "member {name} not ready within {within:?} (no line containing {READY_LINE:?})"
            ),
        }
    }
}

/// Kills every member that still runs; when the test is failing, prints the tail of each
/// member's output so that the failure report shows it.
impl Drop for TestCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Unmounted before the cluster's directory is removed.
            m.disk = None;
        }
        if std::thread::panicking() {
            for m in &mut self.members {
                m.join_readers();
                eprintln!("{}", m.tail(LOG_TAIL_LINES));
            }
        }
    }
}

/// key -> value of every key under `prefix`, read from the member(s) behind `c`, as a
/// serializable or a linearizable range.
pub async fn kvs(
    c: &mut etcd_client::Client,
    prefix: &str,
    serializable: bool,
) -> std::collections::BTreeMap<String, String> {
    let mut opts = etcd_client::GetOptions::new().with_prefix();
    if serializable {
        opts = opts.with_serializable();
    }
    let resp = c
        .get(prefix, Some(opts))
        .await
        .unwrap_or_else(|e| panic!("get prefix {prefix:?} (serializable: {serializable}): {e}"));
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}
