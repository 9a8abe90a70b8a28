//! Test harness: runs an etcd-compatible server binary as a child process.
//!
//! The binary is taken from the `CAIRN_TEST_SERVER_BIN` environment variable when it is
//! set (e.g. `/usr/bin/etcd`, to validate the tests against real etcd), otherwise from
//! Cargo's `CARGO_BIN_EXE_cairn`. This is the only place that knows the binary path.
//!
//! The server is started with etcd's own command-line flags and is considered ready
//! once it prints a line containing `ready to serve client requests` (on stderr or stdout).

#![allow(dead_code)]

pub mod cluster;
pub mod history;
pub mod http;
pub mod proxy;
pub mod tmpfs;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use etcd_client::Client;

const READY_LINE: &str = "ready to serve client requests";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the server binary in `dir` with `args`; its stdout and stderr lines go to `log`
/// through the returned reader threads.
pub fn spawn_server(
    args: &[String],
    env: &[(&str, String)],
    dir: &Path,
    log: &SharedLog,
) -> (Child, Vec<std::thread::JoinHandle<()>>) {
    spawn_server_bin(&server_bin(), args, env, dir, log)
}

/// `spawn_server` of another binary than the one under test.
pub fn spawn_server_bin(
    bin: &Path,
    args: &[String],
    env: &[(&str, String)],
    dir: &Path,
    log: &SharedLog,
) -> (Child, Vec<std::thread::JoinHandle<()>>) {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin:?}: {e}"));
    let readers = vec![
        spawn_reader(child.stdout.take().unwrap(), "out", log.clone()),
        spawn_reader(child.stderr.take().unwrap(), "err", log.clone()),
    ];
    (child, readers)
}

/// Why a server did not print its ready line.
pub enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Waits until the output logged after `start_index` holds the ready line, the process
/// exits, or `deadline` passes; woken by each new line.
pub fn wait_ready_line(
    log: &Arc<(Mutex<LogState>, Condvar)>,
    start_index: usize,
    child: &mut Child,
    deadline: Instant,
) -> Result<(), NotReady> {
    let (lock, cvar) = &**log;
    let mut st = lock.lock().unwrap();
    loop {
        if st.lines[start_index..]
            .iter()
            .any(|l| l.contains(READY_LINE))
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(NotReady::TimedOut);
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        st = cvar.wait_timeout(st, wait).unwrap().0;
    }
}

/// Path of the server binary under test.
pub fn server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("CAIRN_TEST_SERVER_BIN") {
        if !bin.is_empty() {
            return PathBuf::from(bin);
        }
    }
    match option_env!("CARGO_BIN_EXE_cairn") {
        Some(bin) => PathBuf::from(bin),
        None => panic!(
            "no server binary: set CAIRN_TEST_SERVER_BIN (e.g. /usr/bin/etcd) \
             or build these tests inside the cairn crate"
        ),
    }
}

/// Ports are handed out from a per-process base, below the Linux ephemeral range
/// (32768+), so they never collide with client sockets. Each candidate is probed by
/// binding it; taken ports are skipped.
fn next_port_pair() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Initialise the counter once from the process id.
    let _ = NEXT.compare_exchange(
        0,
        12000 + ((std::process::id() % 400) as u16) * 50,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(2, Ordering::SeqCst);
        let p = if p >= 32000 { 12000 + (p % 20000) } else { p };
        let a = TcpListener::bind(("127.0.0.1", p));
        let b = TcpListener::bind(("127.0.0.1", p + 1));
        if a.is_ok() && b.is_ok() {
            return (p, p + 1);
        }
    }
}

/// A loopback port free now, for a listener a test names itself (a metrics URL).
pub fn free_port() -> u16 {
    next_port_pair().0
}

#[derive(Default)]
pub struct LogState {
    lines: Vec<String>,
}

pub type SharedLog = Arc<(Mutex<LogState>, Condvar)>;

fn spawn_reader<R: Read + Send + 'static>(
    stream: R,
    tag: &'static str,
    log: SharedLog,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    let (lock, cvar) = &*log;
                    lock.lock().unwrap().lines.push(format!("[{tag}] {line}"));
                    cvar.notify_all();
                }
            }
        }
    })
}

pub struct TestServer {
    name: String,
    /// A filesystem of its own under the data dir (`start_on_tmpfs`); dropped (unmounted)
    /// after the process is killed and before `dir` is removed.
    disk: Option<tmpfs::Tmpfs>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// `http`, or `https` for client TLS.
    client_scheme: &'static str,
    extra_args: Vec<String>,
    /// The binary run: the server under test, unless the test names another.
    bin: PathBuf,
    /// Environment variables of every run, besides the test's own.
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
    readers: Vec<std::thread::JoinHandle<()>>,
    log: SharedLog,
}

impl TestServer {
    /// Starts a fresh single-member server and waits until it is ready.
    pub fn start(extra_args: &[&str]) -> TestServer {
        Self::start_named("cairn-test", extra_args)
    }

    /// Like `start`, with environment variables for the server.
    pub fn start_with_env(extra_args: &[&str], env: &[(&'static str, String)]) -> TestServer {
        let mut server = Self::prepare("cairn-test", "http", extra_args);
        server.env = env.to_vec();
        server.spawn_and_wait();
        server
    }

    /// Like `start`, with an explicit `--name`.
    pub fn start_named(name: &str, extra_args: &[&str]) -> TestServer {
        Self::start_with_scheme(name, "http", extra_args)
    }

    /// Like `start`, with an `https` client URL: `extra_args` must give client TLS flags.
    /// `client()` does not speak TLS; connect with `endpoint()` and TLS options instead.
    pub fn start_client_tls(extra_args: &[&str]) -> TestServer {
        Self::start_with_scheme("cairn-test", "https", extra_args)
    }

    /// Like `start_client_tls`, for a server that must refuse to start: waits until it
    /// exits and returns its exit status and output. Panics if it becomes ready instead.
    pub fn start_client_tls_expecting_exit(
        extra_args: &[&str],
    ) -> (std::process::ExitStatus, String) {
        let mut server = Self::prepare("cairn-test", "https", extra_args);
        let status = server.restart_expecting_exit();
        (status, server.logs())
    }

    fn start_with_scheme(
        name: &str,
        client_scheme: &'static str,
        extra_args: &[&str],
    ) -> TestServer {
        let mut server = Self::prepare(name, client_scheme, extra_args);
        server.spawn_and_wait();
        server
    }

    /// Ports and a data dir for a server, not started yet.
    fn prepare(name: &str, client_scheme: &'static str, extra_args: &[&str]) -> TestServer {
        let (client_port, peer_port) = next_port_pair();
        TestServer {
            name: name.to_string(),
            disk: None,
            dir: tempfile::Builder::new()
                .prefix("kvtest-")
                .tempdir()
                .expect("create tempdir"),
            client_port,
            peer_port,
            client_scheme,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            bin: server_bin(),
            env: Vec::new(),
            child: None,
            readers: Vec::new(),
            log: Arc::new((Mutex::new(LogState::default()), Condvar::new())),
        }
    }

    /// A server of `bin` (another than the one under test, e.g. etcd for data Cairn made),
    /// not started: the test prepares its data directory, then calls `start_prepared`.
    pub fn prepare_with_bin(bin: &Path, name: &str, extra_args: &[&str]) -> TestServer {
        let mut server = Self::prepare(name, "http", extra_args);
        server.bin = bin.to_path_buf();
        server
    }

    pub fn start_prepared(&mut self) {
        self.spawn_and_wait();
    }

    /// Runs `bin` from the next start on (etcd, then Cairn on its data directory).
    pub fn set_bin(&mut self, bin: &Path) {
        self.bin = bin.to_path_buf();
    }

    /// Like `start`, with the data dir on a tmpfs of `size_bytes` of its own (`disk`);
    /// None when no tmpfs can be mounted here (the test then skips).
    pub fn start_on_tmpfs(size_bytes: u64, extra_args: &[&str]) -> Option<TestServer> {
        let mut server = Self::prepare("cairn-test", "http", extra_args);
        server.disk = Some(tmpfs::Tmpfs::mount(
            &server.dir.path().join("disk"),
            size_bytes,
        )?);
        server.spawn_and_wait();
        Some(server)
    }

    /// The tmpfs of `start_on_tmpfs`.
    pub fn disk(&self) -> &tmpfs::Tmpfs {
        self.disk.as_ref().expect("started with start_on_tmpfs")
    }

    /// Starts the stopped server again, expecting it to exit before it is ready: its exit
    /// status.
    pub fn restart_expecting_exit(&mut self) -> std::process::ExitStatus {
        assert!(self.child.is_none(), "server still running");
        let start_index = self.log_start();
        let (child, readers) = spawn_server_bin(
            &self.bin,
            &self.args(),
            &self.env,
            self.dir.path(),
            &self.log,
        );
        self.readers = readers;
        let child = self.child.insert(child);
        match wait_ready_line(
            &self.log,
            start_index,
            child,
            Instant::now() + READY_TIMEOUT,
        ) {
            Ok(()) => panic!("server became ready, but it was expected to exit"),
            Err(NotReady::TimedOut) => {
                panic!("server neither exited nor became ready within {READY_TIMEOUT:?}")
            }
            Err(NotReady::Exited(status)) => {
                self.child = None;
                self.join_readers();
                status
            }
        }
    }

    /// Whether the process has exited on its own.
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        let base = match &self.disk {
            Some(disk) => disk.path(),
            None => self.dir.path(),
        };
        base.join(format!("{}.etcd", self.name))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.endpoint()))
    }

    /// All output captured so far (all runs of this server), one line per line.
    pub fn logs(&self) -> String {
        let (lock, _) = &*self.log;
        let state = lock.lock().unwrap();
        let mut out = format!("---- server output ({} lines) ----\n", state.lines.len());
        for l in &state.lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("---- end of server output ----");
        out
    }

    fn args(&self) -> Vec<String> {
        let curl = self.endpoint();
        let purl = self.peer_url();
        let mut args: Vec<String> = vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            path_str(&self.data_dir()),
            "--listen-client-urls".into(),
            curl.clone(),
            "--advertise-client-urls".into(),
            curl,
            "--listen-peer-urls".into(),
            purl.clone(),
            "--initial-advertise-peer-urls".into(),
            purl.clone(),
            "--initial-cluster".into(),
            format!("{}={}", self.name, purl),
            "--initial-cluster-state".into(),
            "new".into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Logs the command line of the run about to start; returns where its output begins.
    fn log_start(&self) -> usize {
        let (lock, _) = &*self.log;
        let mut st = lock.lock().unwrap();
        st.lines.push(format!(
            "[harness] starting {:?} {:?}",
            self.bin,
            self.args()
        ));
        st.lines.len()
    }

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let start_index = self.log_start();
        let (child, readers) = spawn_server_bin(
            &self.bin,
            &self.args(),
            &self.env,
            self.dir.path(),
            &self.log,
        );
        self.readers = readers;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        let child = self.child.as_mut().unwrap();
        match wait_ready_line(&self.log, start_index, child, deadline) {
            Ok(()) => {}
            Err(NotReady::Exited(status)) => {
                self.child = None;
                self.join_readers();
                panic!("server exited before becoming ready ({status}); its output follows");
            }
            Err(NotReady::TimedOut) => panic!(
                "server not ready within {READY_TIMEOUT:?} (no line containing \
                 {READY_LINE:?}); its output follows"
            ),
        }
    }

    /// Waits for the output readers of the last run (they end when the pipes close).
    fn join_readers(&mut self) {
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }

    /// Graceful stop: SIGTERM, then the server must exit within 10 s.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("server not running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {pid} failed");
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(STOP_TIMEOUT) {
            Ok(status) => {
                let status = status.expect("wait for server");
                // etcd re-raises SIGTERM (exit by signal 15 / status 143); Cairn exits 0.
                // Anything else (an abort, a crash) is a failed shutdown.
                use std::os::unix::process::ExitStatusExt;
                let clean = status.code() == Some(0)
                    || status.code() == Some(143)
                    || status.signal() == Some(15);
                if !clean {
                    self.join_readers();
                    panic!(
                        "server did not stop cleanly on SIGTERM ({status}); output:\n{}",
                        self.logs()
                    );
                }
                let _ = waiter.join();
                self.join_readers();
            }
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                let _ = waiter.join();
                panic!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM; its output follows"
                );
            }
        }
    }

    /// Abrupt stop: SIGKILL, and reap the process.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server not running");
        child.kill().expect("kill -9 server");
        child.wait().expect("reap server");
        self.join_readers();
    }

    /// Starts the server again on the same data dir and ports; waits until ready.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn_and_wait();
    }
}

/// Kills the server if it still runs; when the test is failing, prints the captured
/// server output so that the failure report shows it.
impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

// ---------------------------------------------------------------------------------
// Small helpers shared by the test files.
// ---------------------------------------------------------------------------------

/// gRPC status codes (numbering from the gRPC spec), so that tests need not name tonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    fn from_i32(v: i32) -> Code {
        const ALL: [Code; 17] = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        ALL.get(v as usize).copied().unwrap_or(Code::Unknown)
    }
}

/// The gRPC code and message of a failed call; panics unless it failed with a gRPC status.
#[track_caller]
pub fn grpc_error<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>) -> (Code, String) {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => (
            Code::from_i32(status.code() as i32),
            status.message().to_string(),
        ),
        other => panic!("expected a gRPC status error, got {other:?}"),
    }
}

/// Asserts that `result` failed with exactly this gRPC code and message.
#[track_caller]
pub fn assert_grpc_error<T: std::fmt::Debug>(
    result: Result<T, etcd_client::Error>,
    code: Code,
    message: &str,
) {
    let got = grpc_error(result);
    assert_eq!(got, (code, message.to_string()), "unexpected gRPC error");
}

/// Revision in the header of a response.
pub fn rev(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("response has a header").revision()
}

/// Current store revision, read with a range on a key nobody uses.
pub async fn current_revision(client: &mut etcd_client::Client) -> i64 {
    let resp = client
        .get("\u{1}__revision_probe__", None)
        .await
        .expect("revision probe");
    rev(resp.header())
}

/// How long `wait_for_keys` and `wait_for_delete` wait before failing the test.
pub const KEY_WAIT: Duration = Duration::from_secs(15);

/// Waits (at most `KEY_WAIT`) until `prefix` holds at least `n` keys, woken by a watch
/// rather than polling; returns them, oldest first.
pub async fn wait_for_keys(
    client: &mut etcd_client::Client,
    prefix: &str,
    n: usize,
) -> Vec<etcd_client::KeyValue> {
    tokio::time::timeout(KEY_WAIT, keys_appear(client, prefix, n))
        .await
        .unwrap_or_else(|_| panic!("{prefix:?} did not reach {n} keys within {KEY_WAIT:?}"))
}

async fn keys_appear(
    client: &mut etcd_client::Client,
    prefix: &str,
    n: usize,
) -> Vec<etcd_client::KeyValue> {
    use etcd_client::{GetOptions, SortOrder, SortTarget, WatchOptions};
    let read = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let mut found = client.get(prefix, Some(read.clone())).await.expect("get");
    if found.kvs().len() >= n {
        return found.take_kvs();
    }
    let from = rev(found.header()) + 1;
    let mut events = client
        .watch(
            prefix,
            Some(WatchOptions::new().with_prefix().with_start_revision(from)),
        )
        .await
        .expect("watch");
    loop {
        events.message().await.expect("watch").expect("watch open");
        let mut found = client.get(prefix, Some(read.clone())).await.expect("get");
        if found.kvs().len() >= n {
            return found.take_kvs();
        }
    }
}

/// Waits until `key` is deleted (at or after `from`), woken by a watch, at most `within`.
pub async fn wait_for_delete(
    client: &mut etcd_client::Client,
    key: &[u8],
    from: i64,
    within: Duration,
) {
    tokio::time::timeout(within, deleted(client, key, from))
        .await
        .unwrap_or_else(|_| panic!("{key:?} was not deleted within {within:?}"))
}

async fn deleted(client: &mut etcd_client::Client, key: &[u8], from: i64) {
    use etcd_client::{EventType, WatchOptions};
    let mut events = client
        .watch(key, Some(WatchOptions::new().with_start_revision(from)))
        .await
        .expect("watch");
    loop {
        let response = events.message().await.expect("watch").expect("watch open");
        if response
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete)
        {
            return;
        }
    }
}

/// Whether the server under test is etcd 3.4 (whose Lock does not check, after waiting,
/// that the caller's lease is still alive).
pub async fn is_etcd_34(client: &mut etcd_client::Client) -> bool {
    let status = client.status().await.expect("status");
    status.version().starts_with("3.4.") && server_bin().ends_with("etcd")
}
