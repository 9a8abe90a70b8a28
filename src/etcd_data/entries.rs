//! What each of etcd's Raft log entries is to Cairn.
//!
//! etcd's entries: an `EntryNormal` carries nothing (a new leader's blank entry), etcd's v3
//! `InternalRaftRequest`, or (etcd 3.4) a v2 store request; an `EntryConfChange` a
//! `raftpb.ConfChange` whose context is etcd's member as JSON. As etcd, data that decodes as
//! an `InternalRaftRequest` is one, anything else a v2 request.

use prost::Message;
use serde::{Deserialize, Serialize};

use super::EtcdDataError;
use crate::proto::cairnraftpb::{
    self, internal_request::Request as Q, Authenticate, Caller, DowngradeInfoSet, InternalRequest,
    UserAdd, UserChangePassword,
};
use crate::proto::etcd::etcdraftpb::{InternalRaftRequest, RequestHeader, V2Request};
use crate::proto::etcd::raftpb::{self, ConfChangeTransition, ConfChangeType, EntryType};
use crate::proto::etcdserverpb::{AlarmRequest, LeaseCheckpointRequest};

/// One etcd log entry, for Cairn.
#[derive(Debug, Clone, PartialEq)]
pub enum EtcdEntry {
    /// A leader's blank entry: nothing to apply.
    Blank,
    /// A request Cairn applies as its own: a client's (with its caller, from etcd's request
    /// header), or a member publishing its attributes (`publish`, no caller).
    Request(InternalRequest),
    /// etcd's alarm request (activate or deactivate NOSPACE / CORRUPT for a member).
    Alarm {
        caller: Option<Caller>,
        request: AlarmRequest,
    },
    /// Leases' remaining TTLs, as the leader checkpointed them.
    LeaseCheckpoint(LeaseCheckpointRequest),
    /// The cluster version the leader decided (etcd 3.4: a v2 PUT of `/0/version`; 3.5+:
    /// `cluster_version_set`).
    ClusterVersion(String),
    /// A membership change. `member` from the entry's context (absent for a removal);
    /// `promote` when an AddNode promotes a learner.
    ConfChange {
        kind: ConfChangeKind,
        node_id: u64,
        member: Option<EtcdMember>,
        promote: bool,
    },
    /// Nothing for Cairn to do, and why (reads that went through Raft, v2 SYNC).
    Ignored(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChangeKind {
    AddNode,
    RemoveNode,
    UpdateNode,
    AddLearnerNode,
}

/// etcd's `membership.Member` as a conf change's context and etcd's `members` bucket spell
/// it (`name`, `clientURLs` and `isLearner` left out when empty, as Go's `omitempty`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EtcdMember {
    pub id: u64,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfChangeContext {
    #[serde(flatten)]
    member: EtcdMember,
    #[serde(rename = "isPromote")]
    is_promote: bool,
}

/// etcd 3.4's v2 attributes value.
#[derive(Deserialize, Default)]
#[serde(default)]
struct V2Attributes {
    name: String,
    #[serde(rename = "clientURLs")]
    client_urls: Vec<String>,
}

/// How entries are mapped.
#[derive(Debug, Clone)]
pub struct MapOptions {
    /// bcrypt cost for passwords etcd 3.4 logged in plain text (Cairn's `--bcrypt-cost`).
    pub bcrypt_cost: u32,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { bcrypt_cost: 10 }
    }
}

/// What `entry` is for Cairn; an error naming the entry for what Cairn cannot take over.
pub fn map_entry(entry: &raftpb::Entry, options: &MapOptions) -> Result<EtcdEntry, EtcdDataError> {
    let refuse = |reason: String| EtcdDataError::Unmappable {
        index: entry.index,
        term: entry.term,
        reason,
    };
    match EntryType::try_from(entry.r#type) {
        Ok(EntryType::EntryNormal) => {
            if entry.data.is_empty() {
                return Ok(EtcdEntry::Blank);
            }
            match InternalRaftRequest::decode(entry.data.as_slice()) {
                Ok(r) => map_v3(r, options).map_err(refuse),
                Err(_) => match V2Request::decode(entry.data.as_slice()) {
                    Ok(r) => map_v2(&r).map_err(refuse),
                    Err(e) => Err(refuse(format!("undecodable normal entry: {e}"))),
                },
            }
        }
        Ok(EntryType::EntryConfChange) => {
            let cc = raftpb::ConfChange::decode(entry.data.as_slice())
                .map_err(|e| refuse(format!("undecodable ConfChange: {e}")))?;
            conf_change(cc.r#type, cc.node_id, &cc.context).map_err(refuse)
        }
        Ok(EntryType::EntryConfChangeV2) => {
            let cc = raftpb::ConfChangeV2::decode(entry.data.as_slice())
                .map_err(|e| refuse(format!("undecodable ConfChangeV2: {e}")))?;
            let auto = cc.transition == ConfChangeTransition::Auto as i32;
            match cc.changes.as_slice() {
                [single] if auto => {
                    conf_change(single.r#type, single.node_id, &cc.context).map_err(refuse)
                }
                _ => Err(refuse(format!(
                    "a ConfChangeV2 of {} changes (transition {}): etcd makes single changes only",
                    cc.changes.len(),
                    cc.transition
                ))),
            }
        }
        Err(_) => Err(refuse(format!("unknown entry type {}", entry.r#type))),
    }
}

fn conf_change(kind: i32, node_id: u64, context: &[u8]) -> Result<EtcdEntry, String> {
    let kind = match ConfChangeType::try_from(kind) {
        Ok(ConfChangeType::ConfChangeAddNode) => ConfChangeKind::AddNode,
        Ok(ConfChangeType::ConfChangeRemoveNode) => ConfChangeKind::RemoveNode,
        Ok(ConfChangeType::ConfChangeUpdateNode) => ConfChangeKind::UpdateNode,
        Ok(ConfChangeType::ConfChangeAddLearnerNode) => ConfChangeKind::AddLearnerNode,
        Err(_) => return Err(format!("unknown conf change type {kind}")),
    };
    let (member, promote) = if context.is_empty() {
        (None, false)
    } else {
        let c: ConfChangeContext = serde_json::from_slice(context)
            .map_err(|e| format!("conf change context is not etcd's member JSON: {e}"))?;
        if c.member.id != node_id {
            return Err(format!(
                "conf change for node {node_id:x} carries member {:x}",
                c.member.id
            ));
        }
        (Some(c.member), c.is_promote)
    };
    Ok(EtcdEntry::ConfChange {
        kind,
        node_id,
        member,
        promote,
    })
}

fn caller(header: Option<RequestHeader>) -> Option<Caller> {
    header.map(|h| Caller {
        user: h.username,
        auth_revision: h.auth_revision,
    })
}

/// The bcrypt hash a user add or password change sets, as etcd 3.5+ applies it: etcd 3.4
/// logged the password itself (hashed here, at Cairn's cost); 3.5+ log the hash, base64.
fn select_password(password: &str, hashed: &str, options: &MapOptions) -> Result<Vec<u8>, String> {
    if !password.is_empty() && hashed.is_empty() {
        return bcrypt::hash(password, options.bcrypt_cost)
            .map(String::into_bytes)
            .map_err(|e| format!("cannot hash the logged password: {e}"));
    }
    base64_decode(hashed).ok_or_else(|| "a hashed password that is not base64".into())
}

/// Standard base64 with padding (Go's `base64.StdEncoding`).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | digit(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

fn map_v3(r: InternalRaftRequest, options: &MapOptions) -> Result<EtcdEntry, String> {
    if let Some(v2) = r.v2 {
        return map_v2(&v2);
    }
    let caller = caller(r.header);
    let request = |q: Q| {
        Ok(EtcdEntry::Request(InternalRequest {
            request: Some(q),
            caller: caller.clone(),
        }))
    };
    if let Some(p) = r.put {
        return request(Q::Put(p));
    }
    if let Some(d) = r.delete_range {
        return request(Q::DeleteRange(d));
    }
    if let Some(t) = r.txn {
        return request(Q::Txn(t));
    }
    if let Some(c) = r.compaction {
        return request(Q::Compaction(c));
    }
    if let Some(g) = r.lease_grant {
        if g.id == 0 {
            return Err("a lease grant without an ID".into());
        }
        return request(Q::LeaseGrant(g));
    }
    if let Some(l) = r.lease_revoke {
        return request(Q::LeaseRevoke(l));
    }
    if let Some(a) = r.alarm {
        return Ok(EtcdEntry::Alarm { caller, request: a });
    }
    if let Some(c) = r.lease_checkpoint {
        return Ok(EtcdEntry::LeaseCheckpoint(c));
    }
    if let Some(a) = r.auth_enable {
        return request(Q::AuthEnable(a));
    }
    if let Some(a) = r.auth_disable {
        return request(Q::AuthDisable(a));
    }
    if let Some(a) = r.authenticate {
        return request(Q::Authenticate(Authenticate {
            name: a.name,
            token_prefix: a.simple_token,
        }));
    }
    if let Some(u) = r.auth_user_add {
        let no_password = u.options.as_ref().is_some_and(|o| o.no_password);
        let hashed_password = if no_password {
            Vec::new()
        } else {
            select_password(&u.password, &u.hashed_password, options)?
        };
        return request(Q::UserAdd(UserAdd {
            name: u.name,
            hashed_password,
            options: u.options,
        }));
    }
    if let Some(u) = r.auth_user_delete {
        return request(Q::UserDelete(u));
    }
    if let Some(u) = r.auth_user_change_password {
        let hashed_password = select_password(&u.password, &u.hashed_password, options)?;
        return request(Q::UserChangePassword(UserChangePassword {
            name: u.name,
            hashed_password,
        }));
    }
    if let Some(u) = r.auth_user_grant_role {
        return request(Q::UserGrantRole(u));
    }
    if let Some(u) = r.auth_user_revoke_role {
        return request(Q::UserRevokeRole(u));
    }
    if let Some(a) = r.auth_role_add {
        return request(Q::RoleAdd(a));
    }
    if let Some(a) = r.auth_role_delete {
        return request(Q::RoleDelete(a));
    }
    if let Some(a) = r.auth_role_grant_permission {
        return request(Q::RoleGrantPermission(a));
    }
    if let Some(a) = r.auth_role_revoke_permission {
        return request(Q::RoleRevokePermission(a));
    }
    if let Some(v) = r.cluster_version_set {
        return Ok(EtcdEntry::ClusterVersion(v.ver));
    }
    if let Some(m) = r.cluster_member_attr_set {
        let attributes = m.member_attributes.unwrap_or_default();
        return Ok(publish(
            m.member_id,
            attributes.name,
            attributes.client_urls,
        ));
    }
    if let Some(d) = r.downgrade_info_set {
        return request(Q::DowngradeInfoSet(DowngradeInfoSet {
            enabled: d.enabled,
            target_version: d.ver,
        }));
    }
    let read = if r.range.is_some() {
        "range"
    } else if r.auth_status.is_some() {
        "auth status"
    } else if r.auth_user_get.is_some() {
        "user get"
    } else if r.auth_user_list.is_some() {
        "user list"
    } else if r.auth_role_get.is_some() {
        "role get"
    } else if r.auth_role_list.is_some() {
        "role list"
    } else if r.downgrade_version_test.is_some() {
        return Ok(EtcdEntry::Ignored(
            "etcd's downgrade version test request".into(),
        ));
    } else {
        return Err("an InternalRaftRequest with no request Cairn knows".into());
    };
    Ok(EtcdEntry::Ignored(format!("a read through Raft ({read})")))
}

fn publish(member_id: u64, name: String, client_urls: Vec<String>) -> EtcdEntry {
    EtcdEntry::Request(InternalRequest {
        request: Some(Q::Publish(cairnraftpb::MemberAttributes {
            member_id,
            name,
            client_urls,
            server_version: String::new(),
        })),
        caller: None,
    })
}

/// etcd 3.4's v2 store requests: member attributes, the cluster version, SYNC (expiry of
/// v2 TTL keys) and quorum reads. Any other v2 write is refused.
fn map_v2(r: &V2Request) -> Result<EtcdEntry, String> {
    let plain_put = r.method == "PUT"
        && r.prev_exist.is_none()
        && r.prev_index == 0
        && r.prev_value.is_empty()
        && !r.dir;
    if plain_put {
        if let Some(id) = member_attributes_path(&r.path) {
            let a: V2Attributes = serde_json::from_str(&r.val)
                .map_err(|e| format!("v2 member attributes are not JSON: {e}"))?;
            return Ok(publish(id, a.name, a.client_urls));
        }
        if r.path == "/0/version" {
            return Ok(EtcdEntry::ClusterVersion(r.val.clone()));
        }
    }
    match r.method.as_str() {
        "SYNC" => Ok(EtcdEntry::Ignored("v2 SYNC (expires v2 TTL keys)".into())),
        "QGET" => Ok(EtcdEntry::Ignored("a v2 quorum read".into())),
        m => Err(format!(
            "a v2 store request ({m} {:?}): Cairn has no v2 store",
            r.path
        )),
    }
}

/// `/0/members/<hex id>/attributes` → the member ID.
fn member_attributes_path(path: &str) -> Option<u64> {
    let hex = path
        .strip_prefix("/0/members/")?
        .strip_suffix("/attributes")?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_go_std_encoding() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zm9").is_none());
        assert!(base64_decode("Zg==Zg==").is_none());
    }

    #[test]
    fn v2_and_v3_payloads_told_apart() {
        let v2 = V2Request {
            id: 7,
            method: "PUT".into(),
            path: "/0/members/8e9e05c52164694d/attributes".into(),
            val: r#"{"name":"m1","clientURLs":["http://127.0.0.1:2379"]}"#.into(),
            ..Default::default()
        };
        let entry = raftpb::Entry {
            r#type: 0,
            term: 2,
            index: 3,
            data: v2.encode_to_vec(),
        };
        match map_entry(&entry, &MapOptions::default()).unwrap() {
            EtcdEntry::Request(InternalRequest {
                request: Some(Q::Publish(p)),
                caller: None,
            }) => {
                assert_eq!(p.member_id, 0x8e9e05c52164694d);
                assert_eq!(p.client_urls, vec!["http://127.0.0.1:2379"]);
            }
            other => panic!("{other:?}"),
        }
        let write = V2Request {
            method: "PUT".into(),
            path: "/foo".into(),
            val: "bar".into(),
            ..Default::default()
        };
        let entry = raftpb::Entry {
            data: write.encode_to_vec(),
            ..entry
        };
        let err = map_entry(&entry, &MapOptions::default()).unwrap_err();
        assert!(err.to_string().contains("entry 3"), "{err}");
    }
}
