//! Client traffic that records every call: each client is bound to one member, picks an
//! operation at random (get, put, put with a lease, delete, a CAS txn, lease grant and
//! revoke), and records its invocation, completion and outcome in `cairn_history`'s types.
//! Every put writes a value unique within the run, which the checks rely on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_history::{
    Compare, CompareTarget, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult,
};
use etcd_client::{Client, ConnectOptions, LeaseGrantOptions, PutOptions, TxnOpResponse};

/// A lease outlives any run: leases never expire in the model.
const LEASE_TTL_SECS: i64 = 3600;
/// Leases one client holds at a time.
const MAX_LEASES_PER_CLIENT: usize = 2;
/// Pause after a call that failed at once, so that a client of a member that is down does
/// not spin (the same for every server).
const BACKOFF_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// What the clients of one run do.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    pub clients: usize,
    pub keys: usize,
    /// Each call's deadline: past it, its outcome is unknown.
    pub op_timeout: Duration,
    /// Whether clients use leases (grant, put with a lease, revoke).
    pub leases: bool,
}

/// The clock and the record all clients of a run share.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
    stop: AtomicBool,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn operations(&self) -> Vec<Operation> {
        self.ops.lock().unwrap().clone()
    }

    fn record(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }
}

pub fn key_name(i: usize) -> String {
    format!("k{i}")
}

/// The prefix of every key the traffic touches.
pub const KEY_PREFIX: &str = "k";

/// A client of one member whose calls carry no deadline of their own (`op_timeout` bounds
/// them), so that its answer is recorded however late it comes within that bound.
pub async fn connect(endpoint: &str) -> Client {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
    loop {
        match Client::connect([endpoint], Some(options.clone())).await {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// xorshift64*: enough randomness for choosing operations, seeded per client.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One client's loop: until the recorder stops, call, record, repeat.
pub async fn run_client(
    id: u32,
    endpoint: String,
    config: TrafficConfig,
    seed: u64,
    recorder: Arc<Recorder>,
) {
    let mut client = connect(&endpoint).await;
    let mut rng = Rng::new(seed ^ (u64::from(id) << 32));
    let mut seq: u64 = 0;
    // What this client last read of each key: the basis of its CAS txns.
    let mut last_read: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut leases: Vec<i64> = Vec::new();
    while !recorder.stopped() {
        seq += 1;
        let request = choose(id, seq, &config, &mut rng, &last_read, &leases);
        let call_ns = recorder.now_ns();
        let outcome =
            match tokio::time::timeout(config.op_timeout, execute(&mut client, &request)).await {
                Ok(Ok(response)) => Outcome::Ok(response),
                Ok(Err(e)) => classify(&e),
                Err(_) => Outcome::Unknown(format!("no answer within {:?}", config.op_timeout)),
            };
        let return_ns = recorder.now_ns();
        match (&request, &outcome) {
            (Request::Get { key }, Outcome::Ok(Response::Get { kv, .. })) => {
                last_read.insert(key.clone(), kv.clone());
            }
            (Request::LeaseGrant { lease_id }, Outcome::Ok(_)) => leases.push(*lease_id),
            // Revoked, or maybe revoked: not used again either way.
            (Request::LeaseRevoke { lease_id }, _) => leases.retain(|l| l != lease_id),
            _ => {}
        }
        let failed_at_once = matches!(outcome, Outcome::Failed(_));
        recorder.record(Operation {
            client: id,
            call_ns,
            return_ns,
            request,
            outcome,
        });
        if failed_at_once {
            tokio::time::sleep(BACKOFF_AFTER_FAILURE).await;
        }
    }
}

fn choose(
    id: u32,
    seq: u64,
    config: &TrafficConfig,
    rng: &mut Rng,
    last_read: &HashMap<String, Option<KeyValue>>,
    leases: &[i64],
) -> Request {
    let key = key_name(rng.below(config.keys));
    let value = format!("c{id}-{seq}");
    let roll = rng.below(100);
    match roll {
        0..=34 => Request::Get { key },
        35..=59 => {
            let lease_id = if config.leases && !leases.is_empty() && rng.below(4) == 0 {
                leases[rng.below(leases.len())]
            } else {
                0
            };
            Request::Put {
                key,
                value,
                lease_id,
            }
        }
        60..=69 => Request::Delete { key },
        70..=89 => {
            // A CAS on what this client last read of the key, on its value or its mod
            // revision; a get of the key when the compare fails.
            let seen = last_read.get(&key).cloned().flatten();
            let target = match (&seen, rng.below(2)) {
                (None, _) => CompareTarget::Value(None),
                (Some(kv), 0) => CompareTarget::Value(Some(kv.value.clone())),
                (Some(kv), _) => CompareTarget::ModRevision(kv.mod_revision),
            };
            Request::Txn {
                compares: vec![Compare {
                    key: key.clone(),
                    target,
                }],
                on_success: vec![TxnOp::Put {
                    key: key.clone(),
                    value,
                    lease_id: 0,
                }],
                on_failure: vec![TxnOp::Get { key }],
            }
        }
        _ if config.leases && leases.len() < MAX_LEASES_PER_CLIENT && rng.below(2) == 0 => {
            Request::LeaseGrant {
                // Positive, and unique per client and call.
                lease_id: (i64::from(id) + 1) << 32 | seq as i64,
            }
        }
        _ if config.leases && !leases.is_empty() => Request::LeaseRevoke {
            lease_id: leases[rng.below(leases.len())],
        },
        _ => Request::Get { key },
    }
}

/// The outcome of a call that returned an error: `Failed` only where the server said so
/// before it could have applied anything; anything else may have been applied.
pub fn classify(e: &etcd_client::Error) -> Outcome {
    let text = e.to_string();
    let definite = match e {
        etcd_client::Error::GRpcStatus(status) => {
            let m = status.message();
            m == "etcdserver: requested lease not found"
                || m == "etcdserver: no leader"
                || m == "etcdserver: not leader"
                || m == "etcdserver: too many requests"
                || m == "etcdserver: lease already exists"
                // The connection was never made, so the request never left.
                || m.contains("tcp connect error")
                || m.contains("Connection refused")
        }
        etcd_client::Error::TransportError(_) => text.contains("Connection refused"),
        _ => false,
    };
    if definite {
        Outcome::Failed(text)
    } else {
        Outcome::Unknown(text)
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

/// A key's state as the history records it.
pub fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease_id: kv.lease(),
    }
}

fn put_options(lease_id: i64) -> Option<PutOptions> {
    (lease_id != 0).then(|| PutOptions::new().with_lease(lease_id))
}

fn txn_op(op: &TxnOp) -> etcd_client::TxnOp {
    match op {
        TxnOp::Get { key } => etcd_client::TxnOp::get(key.as_str(), None),
        TxnOp::Put {
            key,
            value,
            lease_id,
        } => etcd_client::TxnOp::put(key.as_str(), value.as_str(), put_options(*lease_id)),
        TxnOp::Delete { key } => etcd_client::TxnOp::delete(key.as_str(), None),
    }
}

async fn execute(client: &mut Client, request: &Request) -> Result<Response, etcd_client::Error> {
    Ok(match request {
        Request::Get { key } => {
            let r = client.get(key.as_str(), None).await?;
            Response::Get {
                revision: header_revision(r.header()),
                kv: r.kvs().first().map(key_value),
            }
        }
        Request::Put {
            key,
            value,
            lease_id,
        } => {
            let r = client
                .put(key.as_str(), value.as_str(), put_options(*lease_id))
                .await?;
            Response::Put {
                revision: header_revision(r.header()),
            }
        }
        Request::Delete { key } => {
            let r = client.delete(key.as_str(), None).await?;
            Response::Delete {
                revision: header_revision(r.header()),
                deleted: r.deleted(),
            }
        }
        Request::Txn {
            compares,
            on_success,
            on_failure,
        } => {
            let compares: Vec<etcd_client::Compare> = compares
                .iter()
                .map(|c| match &c.target {
                    CompareTarget::Value(None) => etcd_client::Compare::version(
                        c.key.as_str(),
                        etcd_client::CompareOp::Equal,
                        0,
                    ),
                    CompareTarget::Value(Some(v)) => etcd_client::Compare::value(
                        c.key.as_str(),
                        etcd_client::CompareOp::Equal,
                        v.as_str(),
                    ),
                    CompareTarget::ModRevision(r) => etcd_client::Compare::mod_revision(
                        c.key.as_str(),
                        etcd_client::CompareOp::Equal,
                        *r,
                    ),
                })
                .collect();
            let txn = etcd_client::Txn::new()
                .when(compares)
                .and_then(on_success.iter().map(txn_op).collect::<Vec<_>>())
                .or_else(on_failure.iter().map(txn_op).collect::<Vec<_>>());
            let r = client.txn(txn).await?;
            let results = r
                .op_responses()
                .into_iter()
                .map(|op| match op {
                    TxnOpResponse::Get(g) => TxnOpResult::Get {
                        kv: g.kvs().first().map(key_value),
                    },
                    TxnOpResponse::Put(_) => TxnOpResult::Put,
                    TxnOpResponse::Delete(d) => TxnOpResult::Delete {
                        deleted: d.deleted(),
                    },
                    TxnOpResponse::Txn(_) => unreachable!("the traffic sends no nested txn"),
                })
                .collect();
            Response::Txn {
                revision: header_revision(r.header()),
                succeeded: r.succeeded(),
                results,
            }
        }
        Request::LeaseGrant { lease_id } => {
            let r = client
                .lease_grant(
                    LEASE_TTL_SECS,
                    Some(LeaseGrantOptions::new().with_id(*lease_id)),
                )
                .await?;
            Response::LeaseGrant {
                revision: header_revision(r.header()),
            }
        }
        Request::LeaseRevoke { lease_id } => {
            let r = client.lease_revoke(*lease_id).await?;
            Response::LeaseRevoke {
                revision: header_revision(r.header()),
            }
        }
    })
}
