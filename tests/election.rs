//! `v3electionpb.Election`: campaign and resign, a second candidate that waits, proclaim by
//! a stale leader, observe seeing every leader in order, and a leader whose lease expires.
//! Passes against etcd 3.4 and 3.7 (`CAIRN_TEST_SERVER_BIN`).

mod common;

use std::time::Duration;

use common::{assert_grpc_error, rev, wait_for_delete, wait_for_keys, Code, TestServer};
use etcd_client::{CampaignResponse, Client, LeaderKey, ProclaimOptions, ResignOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const LONG_TTL: i64 = 60;
/// The shortest TTL etcd grants with default flags; expiry tests use it.
const SHORT_TTL: i64 = 2;
/// How long a campaign that should win may take.
const ELECTED_WITHIN: Duration = Duration::from_secs(10);

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.expect("lease grant").id()
}

fn leader_key(campaign: &CampaignResponse) -> LeaderKey {
    campaign
        .leader()
        .expect("campaign names its leader key")
        .clone()
}

async fn leader_value(c: &mut Client, name: &str) -> String {
    let leader = c.leader(name).await.expect("leader");
    leader
        .kv()
        .expect("leader's key")
        .value_str()
        .unwrap()
        .to_string()
}

fn campaign_in_background(
    server: &TestServer,
    name: &str,
    value: &str,
    lease: i64,
) -> JoinHandle<CampaignResponse> {
    let endpoint = server.endpoint();
    let (name, value) = (name.to_string(), value.to_string());
    tokio::spawn(async move {
        let mut c = Client::connect([endpoint], None).await.expect("connect");
        c.campaign(name, value, lease).await.expect("campaign")
    })
}

async fn elected(candidate: JoinHandle<CampaignResponse>) -> CampaignResponse {
    tokio::time::timeout(ELECTED_WITHIN, candidate)
        .await
        .expect("elected in time")
        .expect("campaign task")
}

/// Observes `name` from a task of its own: etcd sends an Observe's response headers only
/// with its first leader, so the call itself returns only once there is one.
fn observe(c: &Client, name: &str) -> mpsc::UnboundedReceiver<(i64, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (mut c, name) = (c.clone(), name.to_string());
    tokio::spawn(async move {
        let mut observed = c.observe(name).await.expect("observe");
        while let Some(response) = observed.message().await.expect("observe") {
            let kv = response.kv().expect("a leader's key");
            let value = kv.value_str().unwrap().to_string();
            if tx.send((rev(response.header()), value)).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next_value(observed: &mut mpsc::UnboundedReceiver<(i64, String)>) -> (i64, String) {
    tokio::time::timeout(ELECTED_WITHIN, observed.recv())
        .await
        .expect("observe reports in time")
        .expect("observe stream open")
}

#[tokio::test]
async fn a_candidate_is_elected_and_resigns() {
    let (_server, mut c) = fresh().await;
    let lease = grant(&mut c, LONG_TTL).await;
    let won = c.campaign("job", "alpha", lease).await.expect("campaign");
    let key = leader_key(&won);
    assert_eq!(key.name(), b"job");
    assert_eq!(key.key(), format!("job/{lease:x}").as_bytes());
    assert_eq!(key.lease(), lease);
    assert_eq!(key.rev(), rev(won.header()), "created by the campaign");
    assert_eq!(leader_value(&mut c, "job").await, "alpha");

    let resigned = c
        .resign(Some(ResignOptions::new().with_leader(key.clone())))
        .await
        .expect("resign");
    assert!(rev(resigned.header()) > key.rev());
    assert_grpc_error(c.leader("job").await, Code::Unknown, "election: no leader");

    // Resigning again is no error: there is nothing left to give up.
    c.resign(Some(ResignOptions::new().with_leader(key)))
        .await
        .expect("resign again");
}

#[tokio::test]
async fn a_second_candidate_waits_until_the_leader_resigns() {
    let (server, mut c) = fresh().await;
    let first_lease = grant(&mut c, LONG_TTL).await;
    let second_lease = grant(&mut c, LONG_TTL).await;
    let first = c
        .campaign("svc", "first", first_lease)
        .await
        .expect("campaign");
    let second = campaign_in_background(&server, "svc", "second", second_lease);
    wait_for_keys(&mut c, "svc/", 2).await;
    c.put("election-test/round-trip", "x", None)
        .await
        .expect("put");
    assert!(!second.is_finished(), "the second candidate waits");
    assert_eq!(leader_value(&mut c, "svc").await, "first");

    c.resign(Some(ResignOptions::new().with_leader(leader_key(&first))))
        .await
        .expect("resign");
    let second = elected(second).await;
    assert_eq!(
        leader_key(&second).key(),
        format!("svc/{second_lease:x}").as_bytes()
    );
    assert_eq!(leader_value(&mut c, "svc").await, "second");
}

#[tokio::test]
async fn a_leader_proclaims_and_a_stale_leader_cannot() {
    let (_server, mut c) = fresh().await;
    let lease = grant(&mut c, LONG_TTL).await;
    let won = c.campaign("cfg", "v1", lease).await.expect("campaign");
    let key = leader_key(&won);
    let proclaimed = c
        .proclaim("v2", Some(ProclaimOptions::new().with_leader(key.clone())))
        .await
        .expect("proclaim");
    assert!(rev(proclaimed.header()) > key.rev());
    assert_eq!(leader_value(&mut c, "cfg").await, "v2");

    // Campaigning again with the same lease keeps the key and proclaims the new value.
    let again = c
        .campaign("cfg", "v3", lease)
        .await
        .expect("campaign again");
    assert_eq!(leader_key(&again).rev(), key.rev());
    assert_eq!(leader_value(&mut c, "cfg").await, "v3");

    c.resign(Some(ResignOptions::new().with_leader(key.clone())))
        .await
        .expect("resign");
    let stale = c
        .proclaim("v4", Some(ProclaimOptions::new().with_leader(key)))
        .await;
    assert_grpc_error(stale, Code::Unknown, "election: not leader");

    let missing = c.proclaim("v5", None).await;
    assert_grpc_error(missing, Code::Unknown, "\"leader\" field must be provided");
    assert_grpc_error(
        c.resign(None).await,
        Code::Unknown,
        "\"leader\" field must be provided",
    );
}

#[tokio::test]
async fn observe_sees_every_leader_and_value_in_order() {
    let (server, mut c) = fresh().await;
    let mut observed = observe(&c, "obs");
    let first_lease = grant(&mut c, LONG_TTL).await;
    let second_lease = grant(&mut c, LONG_TTL).await;

    // Each change is made once the observer has reported the one before: a leader found
    // by reading (after the previous one's delete) shows its value at that read.
    let mut seen = Vec::new();
    let first = c.campaign("obs", "a", first_lease).await.expect("campaign");
    seen.push(next_value(&mut observed).await);
    c.proclaim(
        "a2",
        Some(ProclaimOptions::new().with_leader(leader_key(&first))),
    )
    .await
    .expect("proclaim");
    seen.push(next_value(&mut observed).await);
    let second = campaign_in_background(&server, "obs", "b", second_lease);
    wait_for_keys(&mut c, "obs/", 2).await;
    c.resign(Some(ResignOptions::new().with_leader(leader_key(&first))))
        .await
        .expect("resign");
    let second = elected(second).await;
    seen.push(next_value(&mut observed).await);
    c.proclaim(
        "b2",
        Some(ProclaimOptions::new().with_leader(leader_key(&second))),
    )
    .await
    .expect("proclaim");
    seen.push(next_value(&mut observed).await);

    let values: Vec<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["a", "a2", "b", "b2"]);
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "revisions increase: {seen:?}"
    );

    // An observer that starts while a leader holds office sees it first.
    let mut late = observe(&c, "obs");
    assert_eq!(next_value(&mut late).await.1, "b2");
}

#[tokio::test]
async fn a_leader_whose_lease_expires_loses_office_to_the_next_candidate() {
    let (server, mut c) = fresh().await;
    let short = grant(&mut c, SHORT_TTL).await;
    let long = grant(&mut c, LONG_TTL).await;
    let first = c.campaign("ttl", "short", short).await.expect("campaign");
    let second = campaign_in_background(&server, "ttl", "long", long);
    wait_for_keys(&mut c, "ttl/", 2).await;

    // Nobody keeps the short lease alive.
    let second = elected(second).await;
    assert_eq!(leader_key(&second).lease(), long);
    assert_eq!(leader_value(&mut c, "ttl").await, "long");
    let stale = c
        .proclaim(
            "again",
            Some(ProclaimOptions::new().with_leader(leader_key(&first))),
        )
        .await;
    assert_grpc_error(stale, Code::Unknown, "election: not leader");
}

#[tokio::test]
async fn a_candidate_whose_client_goes_away_while_waiting_is_resigned() {
    let (server, mut c) = fresh().await;
    let first_lease = grant(&mut c, LONG_TTL).await;
    let second_lease = grant(&mut c, LONG_TTL).await;
    let first = c
        .campaign("gone", "first", first_lease)
        .await
        .expect("campaign");
    let second = campaign_in_background(&server, "gone", "second", second_lease);
    let queued = wait_for_keys(&mut c, "gone/", 2).await;
    // The second's lease has a minute to run: only the server's resignation deletes its
    // key in time.
    second.abort();
    wait_for_delete(
        &mut c,
        queued[1].key(),
        queued[1].mod_revision(),
        ELECTED_WITHIN,
    )
    .await;
    assert_eq!(leader_value(&mut c, "gone").await, "first");
    assert_eq!(leader_key(&first).key(), queued[0].key());
}

#[tokio::test]
async fn proclaim_and_resign_without_a_key_are_refused() {
    let (_server, mut c) = fresh().await;
    let lease = grant(&mut c, LONG_TTL).await;
    let keyless = LeaderKey::new().with_name("keyless").with_lease(lease);
    let proclaimed = c
        .proclaim(
            "v",
            Some(ProclaimOptions::new().with_leader(keyless.clone())),
        )
        .await;
    assert_grpc_error(proclaimed, Code::Unknown, "etcdserver: key is not provided");
    let resigned = c
        .resign(Some(ResignOptions::new().with_leader(keyless)))
        .await;
    assert_grpc_error(resigned, Code::Unknown, "etcdserver: key is not provided");
    let all = c
        .get("", Some(etcd_client::GetOptions::new().with_from_key()))
        .await
        .expect("get");
    assert!(all.kvs().is_empty(), "nothing written: {:?}", all.kvs());
}
