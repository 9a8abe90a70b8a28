//! `cairn::etcd_data` against data directories real etcd members wrote: etcd 3.4
//! (`/usr/bin/etcd`, `/usr/bin/etcdctl`) and, when built (`compat/etcd37/build`, or
//! `ETCD37_BIN_DIR`), etcd 3.7. Each test runs an etcd on a temporary directory, drives a
//! history with etcdctl, stops it and reads the directory: IDs as etcd reports them, the
//! HardState, and the log after the snapshot mapped to exactly the requests issued.
//! Without an etcd binary a test prints a note and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::etcd_data::{
    check_not_running, list_wal_files, map_entry, read_raft_log, ConfChangeKind, EtcdDataError,
    EtcdDirs, EtcdEntry, EtcdRaftLog, MapOptions,
};
use cairn::proto::cairnraftpb::internal_request::Request as Q;

struct Bins {
    etcd: PathBuf,
    etcdctl: PathBuf,
}

fn etcd34() -> Option<Bins> {
    let bins = Bins {
        etcd: "/usr/bin/etcd".into(),
        etcdctl: "/usr/bin/etcdctl".into(),
    };
    if bins.etcd.exists() && bins.etcdctl.exists() {
        Some(bins)
    } else {
        eprintln!("note: etcd 3.4 not installed at /usr/bin/etcd; test skipped");
        None
    }
}

fn etcd37() -> Option<Bins> {
    let dir = std::env::var_os("ETCD37_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/.work/etcd37/bin"));
    let bins = Bins {
        etcd: dir.join("etcd"),
        etcdctl: dir.join("etcdctl"),
    };
    if bins.etcd.exists() && bins.etcdctl.exists() {
        Some(bins)
    } else {
        eprintln!(
            "note: etcd 3.7 not found in {} (run compat/etcd37/build, or set ETCD37_BIN_DIR); test skipped",
            dir.display()
        );
        None
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running etcd member, killed when dropped.
struct Etcd<'a> {
    bins: &'a Bins,
    child: Option<Child>,
    data_dir: PathBuf,
    client_url: String,
    peer_url: String,
}

impl<'a> Etcd<'a> {
    fn start(bins: &'a Bins, data_dir: &Path, snapshot_count: u32) -> Etcd<'a> {
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = Command::new(&bins.etcd)
            .args(["--name", "m1", "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m1={peer_url}")])
            .args(["--snapshot-count", &snapshot_count.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let etcd = Etcd {
            bins,
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            client_url,
            peer_url,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !etcd.ctl_ok(&["endpoint", "health"]) {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn ctl_ok(&self, args: &[&str]) -> bool {
        Command::new(&self.bins.etcdctl)
            .args(["--endpoints", &self.client_url, "--dial-timeout", "1s"])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// etcdctl's stdout; panics on failure.
    fn ctl(&self, args: &[&str]) -> String {
        self.ctl_stdin(args, "")
    }

    fn ctl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(&self.bins.etcdctl)
            .args(["--endpoints", &self.client_url])
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// (member ID, cluster ID, raft applied index) from `endpoint status -w json`.
    fn status(&self, user: &[&str]) -> (u64, u64, u64) {
        let args = |cmd: &[&'static str]| [user, cmd].concat();
        let v: serde_json::Value =
            serde_json::from_str(&self.ctl(&args(&["endpoint", "status", "-w", "json"]))).unwrap();
        let s = &v[0]["Status"];
        let member = s["header"]["member_id"].as_u64().unwrap();
        let cluster = s["header"]["cluster_id"].as_u64().unwrap();
        let applied = s["raftAppliedIndex"]
            .as_u64()
            .or_else(|| s["raftIndex"].as_u64())
            .unwrap();
        // member list agrees on the member's ID.
        let m: serde_json::Value =
            serde_json::from_str(&self.ctl(&args(&["member", "list", "-w", "json"]))).unwrap();
        assert_eq!(m["members"][0]["ID"].as_u64(), Some(member));
        (member, cluster, applied)
    }

    fn dirs(&self) -> EtcdDirs {
        EtcdDirs::of_data_dir(&self.data_dir)
    }

    fn signal(&mut self, signal: i32) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap();
    }

    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
    }

    fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

impl Drop for Etcd<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn options() -> MapOptions {
    MapOptions { bcrypt_cost: 4 }
}

/// Every entry after the snapshot, mapped.
fn mapped(log: &EtcdRaftLog) -> Vec<EtcdEntry> {
    let mut out = Vec::new();
    let mut expected_index = log.snapshot.index + 1;
    for entry in log.entries() {
        let entry = entry.unwrap();
        assert_eq!(entry.index, expected_index, "entries are consecutive");
        expected_index += 1;
        out.push(map_entry(&entry, &options()).unwrap());
    }
    assert_eq!(out.len(), log.entry_count());
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The client requests among the entries (those with a caller), described.
fn client_requests(entries: &[EtcdEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            EtcdEntry::Request(r) if r.caller.is_some() => Some(r),
            _ => None,
        })
        .map(|r| {
            let who = r.caller.as_ref().unwrap();
            let by = if who.user.is_empty() {
                String::new()
            } else {
                format!(" by {}", who.user)
            };
            let what = match r.request.as_ref().unwrap() {
                Q::Put(p) if p.value.len() > 64 => {
                    format!("put {} ({} bytes)", text(&p.key), p.value.len())
                }
                Q::Put(p) if p.lease != 0 => {
                    format!("put {}={} with lease", text(&p.key), text(&p.value))
                }
                Q::Put(p) => format!("put {}={}", text(&p.key), text(&p.value)),
                Q::DeleteRange(d) => format!("delete {}", text(&d.key)),
                Q::Txn(t) => format!("txn {} compares", t.compare.len()),
                Q::Compaction(c) => format!("compact {}", c.revision),
                Q::LeaseGrant(g) => format!("lease grant {}", g.ttl),
                Q::LeaseRevoke(_) => "lease revoke".into(),
                Q::UserAdd(u) => format!("user add {}", u.name),
                Q::UserChangePassword(u) => format!("user passwd {}", u.name),
                Q::RoleAdd(a) => format!("role add {}", a.name),
                Q::UserGrantRole(g) => format!("grant {} {}", g.user, g.role),
                Q::RoleGrantPermission(g) => format!("permit {}", g.name),
                Q::AuthEnable(_) => "auth enable".into(),
                Q::Authenticate(a) => format!("authenticate {}", a.name),
                other => format!("{other:?}"),
            };
            format!("{what}{by}")
        })
        .collect()
}

fn user_hash(entries: &[EtcdEntry], name: &str, change: bool) -> String {
    entries
        .iter()
        .rev()
        .find_map(|e| match e {
            EtcdEntry::Request(r) => match r.request.as_ref()? {
                Q::UserAdd(u) if !change && u.name == name => Some(text(&u.hashed_password)),
                Q::UserChangePassword(u) if change && u.name == name => {
                    Some(text(&u.hashed_password))
                }
                _ => None,
            },
            _ => None,
        })
        .unwrap()
}

/// Runs the history both versions' tests share; returns the requests as described.
fn common_history(etcd: &Etcd) -> Vec<String> {
    let out = etcd.ctl(&["put", "a", "1", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rev = v["header"]["revision"].as_u64().unwrap();
    etcd.ctl(&["put", "b", "2"]);
    let lease = etcd.ctl(&["lease", "grant", "600"]);
    let lease = lease.split_whitespace().nth(1).unwrap().to_string();
    etcd.ctl(&["put", "--lease", &lease, "l", "1"]);
    etcd.ctl_stdin(
        &["txn"],
        "value(\"a\") = \"1\"\n\nput t yes\n\nput t no\n\n",
    );
    etcd.ctl(&["del", "b"]);
    etcd.ctl(&["compaction", &rev.to_string()]);
    etcd.ctl(&["lease", "revoke", &lease]);
    etcd.ctl(&["user", "add", "root:rootpw", "--interactive=false"]);
    etcd.ctl(&["role", "add", "root"]);
    etcd.ctl(&["user", "grant-role", "root", "root"]);
    etcd.ctl(&["user", "add", "alice:alicepw", "--interactive=false"]);
    etcd.ctl_stdin(
        &["user", "passwd", "alice", "--interactive=false"],
        "alicepw2\n",
    );
    etcd.ctl(&["role", "add", "r1"]);
    etcd.ctl(&["role", "grant-permission", "r1", "readwrite", "x"]);
    etcd.ctl(&["user", "grant-role", "alice", "r1"]);
    etcd.ctl(&["auth", "enable"]);
    etcd.ctl(&["--user", "root:rootpw", "put", "z", "1"]);
    [
        "put a=1".to_string(),
        "put b=2".into(),
        "lease grant 600".into(),
        "put l=1 with lease".into(),
        "txn 1 compares".into(),
        "delete b".into(),
        format!("compact {rev}"),
        "lease revoke".into(),
        "user add root".into(),
        "role add root".into(),
        "grant root root".into(),
        "user add alice".into(),
        "user passwd alice".into(),
        "role add r1".into(),
        "permit r1".into(),
        "grant alice r1".into(),
        "auth enable".into(),
        "authenticate root".into(),
        "put z=1 by root".into(),
    ]
    .into()
}

/// The history's requests in order, then only the logins of the status calls after it.
fn assert_history(entries: &[EtcdEntry], expected: &[String]) {
    let got = client_requests(entries);
    assert_eq!(got[..expected.len().min(got.len())], expected[..]);
    assert!(
        got[expected.len()..]
            .iter()
            .all(|r| r == "authenticate root"),
        "{got:?}"
    );
}

fn assert_locked(dirs: &EtcdDirs) {
    match check_not_running(dirs) {
        Err(e @ EtcdDataError::Running { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("stop etcd first"), "{msg}");
            assert!(msg.contains(".wal") || msg.contains(".tmp"), "{msg}");
        }
        other => panic!("a running etcd's directory: {other:?}"),
    }
}

/// No snapshot yet: the whole log from index 1, with the bootstrap conf change, etcd 3.4's
/// v2 publish and cluster version, and the history in order; the lock check sees etcd.
#[test]
fn etcd34_whole_log_maps_to_the_requests_issued() {
    let Some(bins) = etcd34() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&bins, &tmp.path().join("d"), 100_000);
    assert_locked(&etcd.dirs());
    let expected = common_history(&etcd);
    let (member_id, cluster_id, applied) = etcd.status(&["--user", "root:rootpw"]);
    let client_url = etcd.client_url.clone();
    let peer_url = etcd.peer_url.clone();
    etcd.stop();
    check_not_running(&etcd.dirs()).unwrap();

    let log = read_raft_log(&etcd.dirs()).unwrap();
    assert_eq!((log.member_id, log.cluster_id), (member_id, cluster_id));
    assert!(
        log.hard_state.commit >= applied,
        "{:?} < {applied}",
        log.hard_state
    );
    assert_eq!(log.hard_state.vote, member_id);
    assert_eq!(log.snapshot.index, 0);
    assert!(log.snapshot.file.is_none());
    assert!(log.torn_tail.is_none());
    assert_eq!(log.last_index(), log.hard_state.commit);
    let entries = mapped(&log);

    // Bootstrap: the member's AddNode, a leader's blank entry, publish, cluster version.
    match &entries[0] {
        EtcdEntry::ConfChange {
            kind: ConfChangeKind::AddNode,
            node_id,
            member: Some(m),
            promote: false,
        } => {
            assert_eq!(*node_id, member_id);
            assert_eq!(m.peer_urls, vec![peer_url]);
            assert_eq!(m.name, "m1");
        }
        other => panic!("entry 1: {other:?}"),
    }
    assert!(entries.contains(&EtcdEntry::Blank));
    let publish = entries.iter().find_map(|e| match e {
        EtcdEntry::Request(r) => match &r.request {
            Some(Q::Publish(p)) => Some(p.clone()),
            _ => None,
        },
        _ => None,
    });
    let publish = publish.expect("v2 publish of member attributes");
    assert_eq!(publish.member_id, member_id);
    assert_eq!(
        (publish.name.as_str(), publish.client_urls.clone()),
        ("m1", vec![client_url])
    );
    assert!(entries.contains(&EtcdEntry::ClusterVersion("3.4.0".into())));

    assert_history(&entries, &expected);
    // etcd 3.4 logged the passwords in plain text: hashed here with bcrypt.
    assert!(bcrypt::verify("rootpw", &user_hash(&entries, "root", false)).unwrap());
    assert!(bcrypt::verify("alicepw2", &user_hash(&entries, "alice", true)).unwrap());
}

/// `--snapshot-count 5` and records large enough to fill a 64 MB segment: the log starts
/// after the newest .snap file, spans segments, and holds exactly the last requests. A
/// damaged record in an earlier segment is an error.
#[test]
fn etcd34_snapshots_and_segments() {
    let Some(bins) = etcd34() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&bins, &tmp.path().join("d"), 5);
    let mut issued = Vec::new();
    let big = "v".repeat(1_400_000);
    for i in 0..50 {
        etcd.ctl_stdin(&["put", &format!("big{i}")], &big);
        issued.push(format!("put big{i} ({} bytes)", big.len()));
    }
    for i in 0..13 {
        etcd.ctl(&["put", &format!("k{i}"), &format!("v{i}")]);
        issued.push(format!("put k{i}=v{i}"));
    }
    let (member_id, cluster_id, applied) = etcd.status(&[]);
    etcd.stop();

    let dirs = etcd.dirs();
    assert!(
        list_wal_files(&dirs.wal).unwrap().len() >= 2,
        "a segment was cut"
    );
    let log = read_raft_log(&dirs).unwrap();
    assert_eq!((log.member_id, log.cluster_id), (member_id, cluster_id));
    assert!(log.hard_state.commit >= applied);
    let newest = &log.snap_files.snaps[0];
    assert_eq!(log.snapshot.file.as_ref(), Some(&newest.path));
    assert_eq!(log.snapshot.index, newest.index);
    assert!(log.snapshot.index > 0);
    let conf = log.snapshot.conf_state.clone().unwrap();
    assert_eq!(conf.voters, vec![member_id]);
    let snap = log.snapshot_data().unwrap().unwrap();
    assert!(
        serde_json::from_slice::<serde_json::Value>(&snap.data).is_ok(),
        "v2 store JSON"
    );
    let entries = mapped(&log);
    // A snapshot every 5 applied entries: at most that many, and a few more, follow it.
    assert!(
        log.entry_count() <= 8,
        "{} entries after the snapshot",
        log.entry_count()
    );
    let after = client_requests(&entries);
    assert_eq!(after.len(), log.entry_count(), "only client requests");
    assert_eq!(after[..], issued[issued.len() - after.len()..]);

    // A flipped byte in a record of the first segment (not the last): an error.
    let copy = tmp.path().join("copy");
    copy_dir(&etcd.data_dir, &copy);
    let first = list_wal_files(&EtcdDirs::of_data_dir(&copy).wal).unwrap()[0]
        .path
        .clone();
    let mut bytes = std::fs::read(&first).unwrap();
    let at = find(&bytes, b"vvvvvvvvvvvvvvvv").unwrap() + 1000;
    bytes[at] ^= 0x01;
    std::fs::write(&first, bytes).unwrap();
    match read_raft_log(&EtcdDirs::of_data_dir(&copy)) {
        Err(e @ EtcdDataError::Corrupt { .. }) => {
            assert!(e.to_string().contains("CRC mismatch"), "{e}")
        }
        other => panic!("a corrupt middle record: {other:?}"),
    }
}

/// SIGKILL: every acknowledged request is in the log. Then a last record cut short, or torn
/// (zeros from a sector on), is cut away as etcd's repair does; the rest stays.
#[test]
fn etcd34_killed_and_torn_tail() {
    let Some(bins) = etcd34() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&bins, &tmp.path().join("d"), 100_000);
    for i in 0..10 {
        etcd.ctl(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    let last = format!("LAST{}", "x".repeat(3000));
    etcd.ctl(&["put", "last", &last]);
    etcd.kill9();
    check_not_running(&etcd.dirs()).unwrap();
    let log = read_raft_log(&etcd.dirs()).unwrap();
    let all = client_requests(&mapped(&log));
    let mut expected: Vec<String> = (0..10).map(|i| format!("put k{i}=v{i}")).collect();
    assert_eq!(all[..10], expected[..]);
    assert_eq!(all[10], format!("put last ({} bytes)", last.len()));
    assert_eq!(all.len(), 11);
    expected.truncate(10);

    for zeros in [false, true] {
        let copy = tmp.path().join(format!("copy-{zeros}"));
        copy_dir(&etcd.data_dir, &copy);
        let dirs = EtcdDirs::of_data_dir(&copy);
        let segment = list_wal_files(&dirs.wal).unwrap().pop().unwrap().path;
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = find(&bytes, b"LAST").unwrap();
        if zeros {
            bytes[at..].iter_mut().for_each(|b| *b = 0);
        } else {
            bytes.truncate(at + 100);
        }
        std::fs::write(&segment, bytes).unwrap();
        let log = read_raft_log(&dirs).unwrap();
        let torn = log.torn_tail.clone().expect("a torn tail");
        assert_eq!(torn.path, segment);
        assert_eq!(client_requests(&mapped(&log)), expected, "zeros: {zeros}");
    }
}

/// A directory `etcdctl snapshot restore` wrote for a three-member cluster: the snapshot at
/// index 3 (one AddNode per member), its members as voters, no entries after it, and the
/// IDs etcdctl reported.
#[test]
fn etcd34_snapshot_restore() {
    let Some(bins) = etcd34() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&bins, &tmp.path().join("d"), 100_000);
    etcd.ctl(&["put", "a", "1"]);
    let db = tmp.path().join("snap.db");
    etcd.ctl(&["snapshot", "save", db.to_str().unwrap()]);
    etcd.stop();

    let restored = tmp.path().join("restored");
    let cluster = "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2,m3=http://127.0.0.1:3";
    let out = Command::new(&bins.etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", db.to_str().unwrap(), "--name", "m1"])
        .args(["--data-dir", restored.to_str().unwrap()])
        .args(["--initial-cluster", cluster])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:1"])
        .args(["--initial-cluster-token", "restored"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // etcdctl logs each member it added, as JSON: `"cluster-id":"<hex>",
    // "added-peer-id":"<hex>", "added-peer-peer-urls":[...]`.
    let mut added = Vec::new();
    let (mut m1, mut cluster_id) = (0, 0);
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["msg"] != "added member" {
            continue;
        }
        let hex = |key: &str| u64::from_str_radix(v[key].as_str().unwrap(), 16).unwrap();
        let id = hex("added-peer-id");
        cluster_id = hex("cluster-id");
        if v["added-peer-peer-urls"][0] == "http://127.0.0.1:1" {
            m1 = id;
        }
        added.push(id);
    }
    added.sort();
    assert_eq!(added.len(), 3);

    let log = read_raft_log(&EtcdDirs::of_data_dir(&restored)).unwrap();
    assert_eq!((log.member_id, log.cluster_id), (m1, cluster_id));
    assert_eq!((log.snapshot.index, log.snapshot.term), (3, 1));
    assert!(log.snapshot.file.is_some());
    let mut voters = log.snapshot.conf_state.clone().unwrap().voters;
    voters.sort();
    assert_eq!(voters, added);
    assert_eq!(log.hard_state.commit, 3);
    assert_eq!(log.entry_count(), 0);
}

/// etcd 3.7: the lock check sees it; 3.5+'s requests (member attributes and cluster version
/// as v3 requests, hashed passwords in the log, base64) map.
#[test]
fn etcd37_log_maps_to_the_requests_issued() {
    let Some(bins) = etcd37() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&bins, &tmp.path().join("d"), 100_000);
    assert_locked(&etcd.dirs());
    let expected = common_history(&etcd);
    let (member_id, cluster_id, applied) = etcd.status(&["--user", "root:rootpw"]);
    etcd.stop();
    check_not_running(&etcd.dirs()).unwrap();

    let log = read_raft_log(&etcd.dirs()).unwrap();
    assert_eq!((log.member_id, log.cluster_id), (member_id, cluster_id));
    assert!(log.hard_state.commit >= applied);
    let entries = mapped(&log);
    assert!(entries.iter().any(|e| matches!(e, EtcdEntry::ConfChange { kind: ConfChangeKind::AddNode, node_id, .. } if *node_id == member_id)));
    assert!(entries
        .iter()
        .any(|e| matches!(e, EtcdEntry::ClusterVersion(v) if v.starts_with("3.7"))));
    assert!(entries.iter().any(|e| matches!(e, EtcdEntry::Request(r) if matches!(&r.request, Some(Q::Publish(p)) if p.member_id == member_id && p.name == "m1"))));
    assert_history(&entries, &expected);
    assert!(bcrypt::verify("rootpw", &user_hash(&entries, "root", false)).unwrap());
    assert!(bcrypt::verify("alicepw2", &user_hash(&entries, "alice", true)).unwrap());
}

/// etcd 3.7 with `--snapshot-count 5`: the log starts after the newest .snap file (which
/// 3.7's WAL snapshot records match, membership included) and holds exactly the last
/// requests.
#[test]
fn etcd37_snapshots() {
    let Some(bins) = etcd37() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&bins, &tmp.path().join("d"), 5);
    let issued: Vec<String> = (0..23).map(|i| format!("put k{i}=v{i}")).collect();
    for i in 0..23 {
        etcd.ctl(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    let (member_id, cluster_id, applied) = etcd.status(&[]);
    etcd.stop();
    let log = read_raft_log(&etcd.dirs()).unwrap();
    assert_eq!((log.member_id, log.cluster_id), (member_id, cluster_id));
    assert!(log.hard_state.commit >= applied);
    let newest = &log.snap_files.snaps[0];
    assert_eq!(log.snapshot.file.as_ref(), Some(&newest.path));
    assert!(log.snapshot.index > 0);
    assert_eq!(
        log.snapshot.conf_state.clone().unwrap().voters,
        vec![member_id]
    );
    let after = client_requests(&mapped(&log));
    assert_eq!(after.len(), log.entry_count(), "only client requests");
    assert!(after.len() <= 8, "{after:?}");
    assert_eq!(after[..], issued[issued.len() - after.len()..]);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
