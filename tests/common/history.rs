//! One history for the backup and migration tests: a key with 20 versions, a deleted key,
//! a 10 KB value, 20 values of about a page (which share overflow pages in a snapshot Cairn
//! writes), a lease with a key, a physical compaction, a user with a role, then 200
//! small writes (with a kill, some of them only in the log). A restored or taken-over
//! server must serve all of it.

use etcd_client::{Client, CompactionOptions, GetOptions, LeaseTimeToLiveOptions, PutOptions};

/// What `write` left: the lease, the last revision, the member and cluster IDs.
pub struct Written {
    pub lease: i64,
    pub revision: i64,
    pub member_id: u64,
    pub cluster_id: u64,
}

pub async fn write(c: &mut Client) -> Written {
    c.put("foo", "bar", None).await.unwrap();
    for i in 1..=20 {
        c.put("counter", format!("v{i}"), None).await.unwrap();
    }
    c.put("gone", "soon", None).await.unwrap();
    c.delete("gone", None).await.unwrap();
    let at = c.put("big", vec![b'x'; 10_000], None).await.unwrap();
    for i in 0..20 {
        c.put(format!("page/{i:02}"), page_value(i), None)
            .await
            .unwrap();
    }
    let compact_at = at.header().unwrap().revision();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    c.put(
        "leased",
        "with a lease",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    c.compact(compact_at, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    c.user_add("alice", "secret", None).await.unwrap();
    c.role_add("reader").await.unwrap();
    c.user_grant_role("alice", "reader").await.unwrap();
    let mut last = None;
    for i in 0..200 {
        last = Some(
            c.put(format!("tail/{i:03}"), format!("{i}"), None)
                .await
                .unwrap(),
        );
    }
    let header = last.unwrap().header().unwrap().clone();
    Written {
        lease,
        revision: header.revision(),
        member_id: header.member_id(),
        cluster_id: header.cluster_id(),
    }
}

/// The value of `page/{i}`: 3,900 to 4,850 bytes.
fn page_value(i: usize) -> Vec<u8> {
    (0..3_900 + 50 * i).map(|j| (i * 7 + j) as u8).collect()
}

/// Checks what `write` left, as `c`'s server serves it.
pub async fn check(c: &mut Client, written: &Written) {
    let tail = c.get("tail/199", None).await.unwrap();
    assert_eq!(
        tail.header().unwrap().revision(),
        written.revision,
        "the revision"
    );
    assert_eq!(tail.kvs()[0].value(), b"199");
    assert_eq!(tail.kvs()[0].mod_revision(), written.revision);
    let all_tail = c
        .get(
            "tail/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(all_tail.count(), 200, "every acknowledged write");
    let counter = c.get("counter", None).await.unwrap();
    assert_eq!(
        (counter.kvs()[0].value(), counter.kvs()[0].version()),
        (&b"v20"[..], 20)
    );
    assert_eq!(
        c.get("foo", None).await.unwrap().kvs()[0].create_revision(),
        2
    );
    assert!(c.get("gone", None).await.unwrap().kvs().is_empty());
    assert_eq!(
        c.get("big", None).await.unwrap().kvs()[0].value().len(),
        10_000
    );
    // Below the compaction revision history is gone.
    let old = c
        .get("counter", Some(GetOptions::new().with_revision(3)))
        .await;
    assert!(old.is_err(), "revision 3 stays compacted");
    let pages = c
        .get("page/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let values: Vec<_> = pages.kvs().iter().map(|kv| kv.value().to_vec()).collect();
    assert_eq!(values, (0..20).map(page_value).collect::<Vec<_>>());
    let leased = c.get("leased", None).await.unwrap();
    assert_eq!(leased.kvs()[0].lease(), written.lease);
    let ttl = c
        .lease_time_to_live(
            written.lease,
            Some(LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert_eq!(
        (ttl.granted_ttl(), ttl.keys()),
        (3600, &[b"leased".to_vec()][..])
    );
    assert_eq!(c.user_list().await.unwrap().users(), &["alice".to_string()]);
    let alice = c.user_get("alice").await.unwrap();
    assert_eq!(alice.roles(), &["reader".to_string()]);
}
