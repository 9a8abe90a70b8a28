//! Cluster identity: member and cluster IDs derived as etcd derives them, and this member's
//! view of who is in the cluster.
//!
//! Owns ID derivation and etcd's URL formatting. Calls nothing else in Cairn: `config`
//! depends on this module (it builds `Identity::from_config`), never the reverse.

use sha1::{Digest, Sha1};
use url::Url;

/// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs
/// followed by the cluster token. A member keeps its ID across restarts.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    member_hash(peer_urls, cluster_token, None)
}

/// etcd's ID for a member added at run time: as `member_id`, with the time of the addition
/// (Unix seconds) after the token, so a member added again later gets a new ID.
pub fn added_member_id(peer_urls: &[String], cluster_token: &str, unix_secs: u64) -> u64 {
    member_hash(peer_urls, cluster_token, Some(unix_secs))
}

fn member_hash(peer_urls: &[String], cluster_token: &str, unix_secs: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = Sha1::new();
    for url in &urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(cluster_token.as_bytes());
    if let Some(secs) = unix_secs {
        hasher.update(secs.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

/// etcd's cluster ID: SHA-1 over the sorted member IDs, each as 8 big-endian bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-1 has 20 bytes"))
}

/// A URL as etcd prints it: `http://host:port`, with no trailing slash.
pub fn url_string(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        s.push_str(&format!(":{port}"));
    }
    if url.path() != "/" {
        s.push_str(url.path());
    }
    s
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// Who this member is and which cluster it belongs to, fixed at bootstrap.
#[derive(Debug, Clone)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// `--initial-cluster-token`: also salts the IDs of members added later.
    pub cluster_token: String,
    pub name: String,
    pub client_urls: Vec<String>,
    pub initial_members: Vec<InitialMember>,
}

impl Identity {
    /// This member's identity at bootstrap: each initial member's ID from its peer URLs and
    /// the token, the cluster's from those IDs.
    pub fn bootstrap(
        name: &str,
        initial_cluster: &[(String, Vec<Url>)],
        cluster_token: &str,
        client_urls: &[Url],
    ) -> Identity {
        let initial_members: Vec<InitialMember> = initial_cluster
            .iter()
            .map(|(name, urls)| {
                let peer_urls: Vec<String> = urls.iter().map(url_string).collect();
                InitialMember {
                    id: member_id(&peer_urls, cluster_token),
                    name: name.clone(),
                    peer_urls,
                }
            })
            .collect();
        let member_id = initial_members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.id)
            .expect("config validation ensures this member is in the initial cluster");
        let ids: Vec<u64> = initial_members.iter().map(|m| m.id).collect();
        Identity {
            member_id,
            cluster_id: cluster_id(&ids),
            cluster_token: cluster_token.to_string(),
            name: name.to_string(),
            client_urls: client_urls.iter().map(url_string).collect(),
            initial_members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd() {
        // Read off etcd 3.4.23 started with `--initial-advertise-peer-urls
        // http://127.0.0.1:22380` and the default token.
        let id = member_id(&["http://127.0.0.1:22380".into()], "etcd-cluster");
        assert_eq!(id, 11417610130673999598);
        assert_eq!(cluster_id(&[id]), 14443903163313418560);
        assert_ne!(
            id,
            member_id(&["http://127.0.0.1:22380".into()], "other-token")
        );
        // Order of peer URLs does not matter.
        assert_eq!(
            member_id(&["http://b:1".into(), "http://a:1".into()], "t"),
            member_id(&["http://a:1".into(), "http://b:1".into()], "t")
        );
        assert_eq!(cluster_id(&[1, 2]), cluster_id(&[2, 1]));
    }

    #[test]
    fn bootstrap_identity_uses_etcds_ids() {
        let peer = Url::parse("http://127.0.0.1:22380").unwrap();
        let client = Url::parse("http://127.0.0.1:22379").unwrap();
        let identity = Identity::bootstrap(
            "default",
            &[("default".into(), vec![peer])],
            "etcd-cluster",
            &[client],
        );
        assert_eq!(identity.member_id, 11417610130673999598);
        assert_eq!(identity.cluster_id, 14443903163313418560);
        assert_eq!(identity.client_urls, ["http://127.0.0.1:22379"]);
        assert_eq!(
            identity.initial_members[0].peer_urls,
            ["http://127.0.0.1:22380"]
        );
    }

    #[test]
    fn urls_print_like_etcd() {
        let u = Url::parse("http://127.0.0.1:2380").unwrap();
        assert_eq!(url_string(&u), "http://127.0.0.1:2380");
    }
}
