//! A fault-injecting TCP proxy, for network partitions made by the tests themselves.
//!
//! A `Proxy` listens on a loopback port and forwards each accepted connection to a target
//! port, copying both directions, each byte after `delay` (none by default: a slow
//! network). It is `open` (admits everyone), `cut` (admits no one) or admits only
//! connections made by given processes (`only_from`). A change of rule closes
//! at once every current connection the new rule refuses; a refused new connection is
//! accepted and closed at once (a listening socket cannot refuse per sender).
//!
//! Telling senders apart is what makes a two-way partition possible: every member sends to
//! the same advertised peer URL of a member, so the proxy in front of member j decides by
//! the process that opened the connection. It finds it as `ss -p` does: the client end of
//! an accepted loopback connection is a socket in `/proc/net/tcp` (its local port is the
//! accepted connection's remote port), and its inode is among the fds of the process that
//! owns it. A connection whose owner cannot be found is refused unless the proxy is open.
//!
//! Bounded: four copy threads per connection (a reader and a writer each way), which end when either side closes or the
//! proxy closes the connection; the accept thread ends when the proxy is dropped, which
//! also closes every connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

enum Rule {
    Open,
    /// Admits connections opened by these processes only (none: cut).
    OnlyFrom(Vec<u32>),
}

struct Conn {
    id: u64,
    /// Inode of the client's socket, if it was found.
    inode: Option<u64>,
    client: TcpStream,
    upstream: TcpStream,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

struct State {
    rule: Rule,
    /// Added to the time every byte takes through the proxy.
    delay: std::time::Duration,
    dropped: bool,
    next_id: u64,
    conns: Vec<Conn>,
}

pub struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts an open proxy on a free loopback port, forwarding to `127.0.0.1:target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            rule: Rule::Open,
            delay: std::time::Duration::ZERO,
            dropped: false,
            next_id: 0,
            conns: Vec::new(),
        }));
        let st = state.clone();
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.lock().unwrap().dropped {
                    break;
                }
                if let Ok(client) = client {
                    accept(&st, client, port, target);
                }
            }
        });
        Proxy {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn open(&self) {
        self.set_rule(Rule::Open);
    }

    /// Closes every connection and refuses new ones until the rule changes.
    pub fn cut(&self) {
        self.set_rule(Rule::OnlyFrom(Vec::new()));
    }

    /// Keeps (and admits) only connections opened by these processes.
    pub fn only_from(&self, pids: &[u32]) {
        self.set_rule(Rule::OnlyFrom(pids.to_vec()));
    }

    /// Delays every byte through the proxy, in both directions, by `delay` from now on
    /// (zero: none), current connections included.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    fn set_rule(&self, rule: Rule) {
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        st.rule = rule;
        let (keep, close): (Vec<Conn>, Vec<Conn>) =
            st.conns.drain(..).partition(|c| admits(&st.rule, c.inode));
        st.conns = keep;
        close.iter().for_each(Conn::close);
    }
}

fn accept(state: &Arc<Mutex<State>>, client: TcpStream, port: u16, target: u16) {
    let inode = client.peer_addr().ok().and_then(|a| client_inode(a, port));
    let mut st = state.lock().unwrap();
    if st.dropped || !admits(&st.rule, inode) {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
        return; // The member is down: so is the connection.
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let id = st.next_id;
    st.next_id += 1;
    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    st.conns.push(Conn {
        id,
        inode,
        client,
        upstream,
    });
    drop(st);
    // The peer protocols here never half-close, so the end of either direction ends both.
    // Each direction is a reader that stamps what it reads and a writer that passes it on
    // once the delay since its stamp has passed, so a delay adds latency, not a bandwidth
    // limit.
    let pump = move |mut from: TcpStream, to: TcpStream, state: Arc<Mutex<State>>, owner: bool| {
        let (chunks, delayed) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
        let delay_of = state.clone();
        let mut writer_to = to.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for (read_at, chunk) in delayed {
                let due = read_at + delay_of.lock().unwrap().delay;
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                if writer_to.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || chunks
                    .send((std::time::Instant::now(), buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
        drop(chunks);
        let _ = writer.join();
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
        if owner {
            state.lock().unwrap().conns.retain(|c| c.id != id);
        }
    };
    let (c3, u3) = (c2.try_clone().unwrap(), u2.try_clone().unwrap());
    let (st1, st2) = (state.clone(), state.clone());
    std::thread::spawn(move || pump(c2, u2, st1, true));
    std::thread::spawn(move || pump(u3, c3, st2, false));
}

fn admits(rule: &Rule, inode: Option<u64>) -> bool {
    match (rule, inode) {
        (Rule::Open, _) => true,
        (Rule::OnlyFrom(pids), Some(inode)) => pids.iter().any(|&p| owns_socket(p, inode)),
        (Rule::OnlyFrom(_), None) => false,
    }
}

/// Inode of the socket at the other end of an accepted loopback connection: the one whose
/// local port is the connection's remote port and whose remote port is the proxy's.
fn client_inode(remote: SocketAddr, proxy_port: u16) -> Option<u64> {
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let ours = f.len() > 9
                    && port_of(f[1]) == Some(remote.port())
                    && port_of(f[2]) == Some(proxy_port);
                // A closed connection's socket lingers in TIME_WAIT with inode 0.
                f.get(9)
                    .and_then(|i| i.parse().ok())
                    .filter(|&i| ours && i != 0)
            })
        })
}

fn owns_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(want.as_str())))
}

impl Drop for Proxy {
    fn drop(&mut self) {
        {
            let mut st = self.state.lock().unwrap();
            st.dropped = true;
            for c in st.conns.drain(..) {
                c.close();
            }
        }
        // Wakes the accept thread, which then sees `dropped` and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}
