//! Maintenance.Status and Cluster.MemberList, checked against etcd 3.4.

mod common;

use common::TestServer;

#[tokio::test]
async fn status_reports_version_leader_and_sizes() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let status = c.status().await.unwrap();
    let h = status.header().expect("status header");
    assert!(
        status.version().starts_with("3."),
        "version = {:?}",
        status.version()
    );
    assert_ne!(h.member_id(), 0);
    assert_ne!(h.cluster_id(), 0);
    assert_eq!(status.leader(), h.member_id(), "single member leads");
    assert!(
        status.raft_index() >= 1,
        "raft_index = {}",
        status.raft_index()
    );
    assert!(
        status.raft_term() >= 1,
        "raft_term = {}",
        status.raft_term()
    );
    assert!(status.db_size() > 0, "db_size = {}", status.db_size());
    assert!(!status.is_learner());
    assert!(status.errors().is_empty(), "errors = {:?}", status.errors());
}

#[tokio::test]
async fn status_raft_index_grows_with_writes() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let before = c.status().await.unwrap().raft_index();
    for i in 0..5 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let after = c.status().await.unwrap().raft_index();
    assert!(after >= before + 5, "raft_index {before} -> {after}");
}

#[tokio::test]
async fn status_header_matches_kv_headers() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let put = c.put("k", "v", None).await.unwrap();
    let ph = put.header().unwrap().clone();
    let status = c.status().await.unwrap();
    let sh = status.header().unwrap();
    assert_eq!(sh.cluster_id(), ph.cluster_id());
    assert_eq!(sh.member_id(), ph.member_id());
    assert_eq!(sh.revision(), ph.revision());
    assert_eq!(status.raft_term(), ph.raft_term());
}

#[tokio::test]
async fn member_list_has_the_single_started_member() {
    let server = TestServer::start_named("node-alpha", &[]);
    let mut c = server.client().await;
    let resp = c.member_list().await.unwrap();
    let members = resp.members();
    assert_eq!(members.len(), 1, "members = {members:?}");
    let m = &members[0];
    assert_eq!(m.name(), "node-alpha");
    assert_eq!(m.peer_urls(), [server.peer_url()]);
    assert_eq!(m.client_urls(), [server.endpoint()]);
    assert!(!m.is_learner());
    assert_ne!(m.id(), 0);
    assert_eq!(m.id(), resp.header().unwrap().member_id());
}

#[tokio::test]
async fn cluster_id_is_the_same_in_every_header() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let members = c.member_list().await.unwrap();
    let mh = members.header().unwrap().clone();
    assert_ne!(mh.cluster_id(), 0);

    let put = c.put("k", "v", None).await.unwrap();
    let get = c.get("k", None).await.unwrap();
    let del = c.delete("k", None).await.unwrap();
    let status = c.status().await.unwrap();
    for (what, h) in [
        ("put", put.header().unwrap()),
        ("get", get.header().unwrap()),
        ("delete", del.header().unwrap()),
        ("status", status.header().unwrap()),
    ] {
        assert_eq!(h.cluster_id(), mh.cluster_id(), "{what}");
        assert_eq!(h.member_id(), mh.member_id(), "{what}");
    }
}

#[tokio::test]
async fn status_and_member_ids_survive_restart() {
    let mut server = TestServer::start(&[]);
    let (cluster_id, member_id) = {
        let mut c = server.client().await;
        let s = c.status().await.unwrap();
        let h = s.header().unwrap();
        (h.cluster_id(), h.member_id())
    };
    server.stop();
    server.restart();
    let mut c = server.client().await;
    let s = c.status().await.unwrap();
    let h = s.header().unwrap();
    assert_eq!((h.cluster_id(), h.member_id()), (cluster_id, member_id));
    assert_eq!(s.leader(), member_id);
}
