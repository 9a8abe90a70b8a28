//! Client and peer TLS, as etcd's flags configure it: certificate files, client certificate
//! authentication against a trusted CA, a certificate revocation list, auto TLS (a
//! generated certificate kept in the data dir and reused on restart), the start-up refusal
//! of an https URL without a certificate, and clusters whose members talk over https (auto
//! TLS, and certificate files with peer certificate authentication, through a leader's
//! death).
//!
//! Certificates are made per test with `rcgen` (see `Pki`): a CA, a server certificate for
//! 127.0.0.1 and localhost, a client certificate, a second client certificate revoked by a
//! CRL, and a client certificate from a second CA the servers are never told about; all
//! ECDSA P-256, written as PEM files in a temporary directory. Every test was checked
//! against etcd 3.4 (`CAIRN_TEST_SERVER_BIN=/usr/bin/etcd`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{kvs, TestCluster};
use common::TestServer;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};

/// Bound on one client exchange (connect, request, answer). A refused handshake can
/// surface only as a connection that never becomes ready, so without it a refused client
/// would hang the test instead of failing its call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a cluster to agree on a leader, after a start or a leader's death.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// etcd 3.4's command-line client, used where the server's certificate is one that rustls
/// cannot verify (etcd's auto TLS key is ECDSA P-521).
const ETCDCTL: &str = "/usr/bin/etcdctl";

// ---------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------

/// Serial numbers of the certificates the trusted CA issues; the CRL names `REVOKED_SERIAL`.
const SERVER_SERIAL: u8 = 2;
const CLIENT_SERIAL: u8 = 3;
const REVOKED_SERIAL: u8 = 4;

/// One test's certificates and keys, as PEM files in a temporary directory:
/// `ca.pem`; `server.pem`/`server-key.pem`; `client.pem`/`client-key.pem`;
/// `revoked.pem`/`revoked-key.pem` with `crl.pem` revoking it; `untrusted.pem`/
/// `untrusted-key.pem`, issued by another CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn generate() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("kvtls-")
            .tempdir()
            .expect("create tempdir");
        let pki = Pki { dir };
        let ca = new_ca("Cairn test CA");
        pki.write("ca.pem", &ca.pem());
        // The server certificate doubles as a client certificate: members present it to
        // each other, and etcd's gateway presents it to its own client port.
        pki.issue(
            &ca,
            "server",
            SERVER_SERIAL,
            &["127.0.0.1", "localhost"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let client_auth = &[ExtendedKeyUsagePurpose::ClientAuth];
        pki.issue(&ca, "client", CLIENT_SERIAL, &[], client_auth);
        pki.issue(&ca, "revoked", REVOKED_SERIAL, &[], client_auth);
        let untrusted_ca = new_ca("Cairn test untrusted CA");
        pki.issue(&untrusted_ca, "untrusted", CLIENT_SERIAL, &[], client_auth);

        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[REVOKED_SERIAL]),
                revocation_time: now - time::Duration::hours(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .expect("sign CRL");
        pki.write("crl.pem", &crl.pem().expect("CRL as PEM"));
        pki
    }

    /// Writes `<name>.pem` and `<name>-key.pem`: a certificate issued by `ca` with this
    /// serial, subject alternative names and extended key usages, and its key.
    fn issue(
        &self,
        ca: &CertifiedIssuer<'static, KeyPair>,
        name: &str,
        serial: u8,
        sans: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("certificate parameters");
        params.distinguished_name = common_name(&format!("cairn-test-{name}"));
        // Small serials encode in one byte, as they appear in the CRL.
        params.serial_number = Some(SerialNumber::from_slice(&[serial]));
        set_validity(&mut params);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let key = new_key();
        let cert = params.signed_by(&key, ca).expect("sign certificate");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}-key.pem"), &key.serialize_pem());
    }

    fn write(&self, file: &str, pem: &str) {
        std::fs::write(self.path(file), pem).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }

    fn path(&self, file: &str) -> String {
        self.dir
            .path()
            .join(file)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
    }

    /// `--cert-file`/`--key-file` (or their `--peer-` forms, with `prefix` "peer-") giving
    /// the server certificate.
    fn server_cert_args(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("--{prefix}cert-file={}", self.path("server.pem")),
            format!("--{prefix}key-file={}", self.path("server-key.pem")),
        ]
    }

    /// TLS options of a client that trusts the CA and presents the certificate `name`
    /// (`client`, `revoked`, `untrusted`), or none.
    fn client_tls(&self, name: Option<&str>) -> TlsOptions {
        let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(self.read("ca.pem")));
        match name {
            Some(name) => tls.identity(Identity::from_pem(
                self.read(&format!("{name}.pem")),
                self.read(&format!("{name}-key.pem")),
            )),
            None => tls,
        }
    }
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate P-256 key")
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Valid from an hour ago (some slack for clocks) for a day.
fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
}

/// A self-signed CA that may sign certificates and CRLs.
fn new_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    set_validity(&mut params);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, new_key()).expect("self-sign CA")
}

fn str_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------

/// Connects to `endpoint` (with `tls` if given), puts `key` = `value` and reads it back;
/// returns the value read, or how the exchange failed, not answering within
/// `CALL_TIMEOUT` included.
async fn put_get(
    endpoint: &str,
    tls: Option<TlsOptions>,
    key: &str,
    value: &str,
) -> Result<String, String> {
    let exchange = async {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(CALL_TIMEOUT);
        if let Some(tls) = tls {
            options = options.with_tls(tls);
        }
        let mut c = Client::connect([endpoint], Some(options))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        c.put(key, value, None)
            .await
            .map_err(|e| format!("put: {e}"))?;
        let resp = c.get(key, None).await.map_err(|e| format!("get: {e}"))?;
        match resp.kvs() {
            [kv] => Ok(String::from_utf8_lossy(kv.value()).into_owned()),
            other => Err(format!("get {key:?} found {} keys", other.len())),
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?}")))
}

/// Runs etcdctl (v3 API) against `endpoint` over TLS, not verifying the server's
/// certificate; returns its stdout, or its status and stderr when it fails.
fn etcdctl(endpoint: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--insecure-transport=false",
            "--insecure-skip-tls-verify",
            "--dial-timeout=5s",
            "--command-timeout=10s",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {ETCDCTL}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "etcdctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Reads `key` from the member behind `c`, linearizable and then serializable; both must
/// find `value`. The linearizable read returns only once the member has applied every
/// write committed before it, so the serializable read after it needs no waiting.
async fn assert_member_reads(c: &mut Client, member: &str, key: &str, value: &str) {
    for serializable in [false, true] {
        let got = kvs(c, key, serializable).await;
        assert_eq!(
            got.get(key).map(String::as_str),
            Some(value),
            "{member} (serializable: {serializable}) holds {got:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Client TLS
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn https_client_url_serves_tls_only() {
    let pki = Pki::generate();
    let server = TestServer::start_client_tls(&str_args(&pki.server_cert_args("")));
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    // No client certificate: the server does not ask for one without a trusted CA.
    let got = put_get(&endpoint, Some(pki.client_tls(None)), "tls/k", "v1").await;
    assert_eq!(got, Ok("v1".to_string()));

    let plain = endpoint.replacen("https://", "http://", 1);
    let got = put_get(&plain, None, "tls/plain", "v").await;
    assert!(got.is_err(), "a plaintext client was served: {got:?}");
}

#[tokio::test]
async fn stalled_handshakes_do_not_shut_out_other_clients() {
    // Fault: connections that open TCP and never send a TLS ClientHello (a stuck client, or
    // a flood). Each handshake must wait on its own, so a real client is served at once.
    const STALLED_CONNECTIONS: usize = 300;
    let pki = Pki::generate();
    let server = TestServer::start_client_tls(&str_args(&pki.server_cert_args("")));
    let endpoint = server.endpoint();
    let addr = endpoint.trim_start_matches("https://").to_string();
    let mut stalled = Vec::with_capacity(STALLED_CONNECTIONS);
    for _ in 0..STALLED_CONNECTIONS {
        stalled.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("open a stalled connection"),
        );
    }
    let got = put_get(&endpoint, Some(pki.client_tls(None)), "tls/stalled", "v").await;
    assert_eq!(got, Ok("v".to_string()));
    // Served while every stalled connection is still waiting: not after the server gave
    // up on some of them and so made room (a closed one reads end-of-file).
    let mut buf = [0u8; 1];
    let closed = stalled
        .iter()
        .filter(|s| matches!(s.try_read(&mut buf), Ok(0)))
        .count();
    assert_eq!(
        closed, 0,
        "the client was served only after stalled handshakes were dropped"
    );
}

#[tokio::test]
async fn client_cert_auth_admits_only_certificates_from_the_trusted_ca() {
    let pki = Pki::generate();
    let mut args = pki.server_cert_args("");
    args.push(format!("--trusted-ca-file={}", pki.path("ca.pem")));
    args.push("--client-cert-auth".to_string());
    let server = TestServer::start_client_tls(&str_args(&args));
    let endpoint = server.endpoint();

    let got = put_get(&endpoint, Some(pki.client_tls(Some("client"))), "k", "v").await;
    assert_eq!(got, Ok("v".to_string()));

    let got = put_get(&endpoint, Some(pki.client_tls(None)), "k", "anon").await;
    assert!(
        got.is_err(),
        "a client without a certificate was served: {got:?}"
    );

    let got = put_get(&endpoint, Some(pki.client_tls(Some("untrusted"))), "k", "x").await;
    assert!(
        got.is_err(),
        "a client certificate from an untrusted CA was accepted: {got:?}"
    );
}

/// A self-signed CA certificate named `root` that may also serve as a client certificate,
/// as etcd's own test fixtures make theirs; written as `<name>.pem` and `<name>-key.pem`.
fn write_ca_usable_as_client(pki: &Pki, name: &str) {
    write_ca_with_usages(
        pki,
        name,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
}

fn write_ca_with_usages(pki: &Pki, name: &str, usages: &[ExtendedKeyUsagePurpose]) {
    let key = new_key();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    params.distinguished_name = common_name("root");
    set_validity(&mut params);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = usages.to_vec();
    let cert = params.self_signed(&key).expect("self-sign");
    pki.write(&format!("{name}.pem"), &cert.pem());
    pki.write(&format!("{name}-key.pem"), &key.serialize_pem());
}

#[tokio::test]
async fn a_trusted_ca_certificate_presented_as_the_client_certificate_is_accepted() {
    let pki = Pki::generate();
    write_ca_usable_as_client(&pki, "root");
    write_ca_usable_as_client(&pki, "other-root");
    write_ca_with_usages(
        &pki,
        "server-only-root",
        &[ExtendedKeyUsagePurpose::ServerAuth],
    );
    let bundle = [
        pki.read("ca.pem"),
        pki.read("root.pem"),
        pki.read("server-only-root.pem"),
    ]
    .concat();
    pki.write("bundle.pem", std::str::from_utf8(&bundle).expect("PEM"));
    let mut args = pki.server_cert_args("");
    args.push(format!("--trusted-ca-file={}", pki.path("bundle.pem")));
    args.push("--client-cert-auth".to_string());
    let server = TestServer::start_client_tls(&str_args(&args));
    let endpoint = server.endpoint();

    // Go's TLS, and so etcd, accepts it: etcd's e2e suite connects with such a certificate.
    let got = put_get(&endpoint, Some(pki.client_tls(Some("root"))), "k", "v").await;
    assert_eq!(got, Ok("v".to_string()));

    // A CA certificate that is not itself trusted is still refused.
    let got = put_get(
        &endpoint,
        Some(pki.client_tls(Some("other-root"))),
        "k",
        "x",
    )
    .await;
    assert!(
        got.is_err(),
        "an untrusted CA certificate was accepted: {got:?}"
    );

    // Nor one whose extended key usage leaves out client auth, as Go refuses it.
    let got = put_get(
        &endpoint,
        Some(pki.client_tls(Some("server-only-root"))),
        "k",
        "y",
    )
    .await;
    assert!(
        got.is_err(),
        "a server-only CA certificate was accepted: {got:?}"
    );
}

#[tokio::test]
async fn revoked_client_certificate_is_refused() {
    let pki = Pki::generate();
    let mut args = pki.server_cert_args("");
    args.push(format!("--trusted-ca-file={}", pki.path("ca.pem")));
    args.push("--client-cert-auth".to_string());
    args.push(format!("--client-crl-file={}", pki.path("crl.pem")));
    let server = TestServer::start_client_tls(&str_args(&args));
    let endpoint = server.endpoint();

    let got = put_get(&endpoint, Some(pki.client_tls(Some("revoked"))), "k", "r").await;
    assert!(
        got.is_err(),
        "a revoked client certificate was accepted: {got:?}"
    );

    // The list covers only the revoked certificate: one it does not name still works.
    let got = put_get(&endpoint, Some(pki.client_tls(Some("client"))), "k", "v").await;
    assert_eq!(got, Ok("v".to_string()));
}

/// An `https` metrics URL serves with the client port's certificate and asks for the
/// client certificates the client port asks for (etcd's metrics listener shares its TLS).
#[test]
fn https_metrics_url_serves_with_the_client_ports_tls() {
    let pki = Pki::generate();
    let metrics_url = format!("https://127.0.0.1:{}", common::free_port());
    let mut args = pki.server_cert_args("");
    args.push(format!("--trusted-ca-file={}", pki.path("ca.pem")));
    args.push("--client-cert-auth".to_string());
    args.push(format!("--listen-metrics-urls={metrics_url}"));
    let _server = TestServer::start_client_tls(&str_args(&args));
    let curl = |url: &str, certificate: Option<&str>| {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "10", "--cacert", &pki.path("ca.pem")]);
        if let Some(name) = certificate {
            command.args(["--cert", &pki.path(&format!("{name}.pem"))]);
            command.args(["--key", &pki.path(&format!("{name}-key.pem"))]);
        }
        let out = command
            .arg(url)
            .output()
            .unwrap_or_else(|e| panic!("run curl: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, body) = curl(&format!("{metrics_url}/metrics"), Some("client"));
    assert!(ok, "{body}");
    assert!(
        body.lines().any(|l| l == "etcd_server_has_leader 1"),
        "{body}"
    );
    let (ok, body) = curl(&format!("{metrics_url}/health"), Some("client"));
    assert!(
        ok && body == "{\"health\":\"true\",\"reason\":\"\"}",
        "{body}"
    );
    let (ok, body) = curl(&format!("{metrics_url}/metrics"), None);
    assert!(!ok, "served without a client certificate: {body}");
    let plain = metrics_url.replacen("https://", "http://", 1);
    let (ok, body) = curl(&format!("{plain}/metrics"), Some("client"));
    assert!(!ok, "served without TLS: {body}");
}

#[test]
fn auto_tls_generates_a_certificate_and_reuses_it_after_a_restart() {
    let mut server = TestServer::start_client_tls(&["--auto-tls"]);
    let endpoint = server.endpoint();
    let fixtures = server.data_dir().join("fixtures").join("client");
    let cert_path = fixtures.join("cert.pem");
    let key_path = fixtures.join("key.pem");
    assert!(key_path.is_file(), "no {}", key_path.display());
    let cert = std::fs::read(&cert_path).unwrap_or_else(|e| panic!("{}: {e}", cert_path.display()));
    assert!(
        String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----"),
        "{} is not a PEM certificate",
        cert_path.display()
    );

    etcdctl(&endpoint, &["put", "auto/k", "v1"]).unwrap();
    let got = etcdctl(&endpoint, &["get", "auto/k", "--print-value-only"]).unwrap();
    assert_eq!(got.trim_end(), "v1");

    server.restart();
    let after = std::fs::read(&cert_path).unwrap();
    assert!(after == cert, "the certificate was regenerated on restart");
    let got = etcdctl(&endpoint, &["get", "auto/k", "--print-value-only"]).unwrap();
    assert_eq!(got.trim_end(), "v1");
}

#[test]
fn https_client_url_without_a_certificate_refuses_to_start() {
    let (status, output) = TestServer::start_client_tls_expecting_exit(&[]);
    assert!(!status.success(), "exited with {status}\n{output}");
    assert!(
        output.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url"),
        "{output}"
    );
}

// ---------------------------------------------------------------------------------
// Peer TLS
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn peer_auto_tls_cluster_replicates_over_https() {
    let mut c = TestCluster::start_peer_tls(3, &["--peer-auto-tls"]);
    c.wait_for_leader(LEADER_WAIT).await;

    let mut first = c.member_client(0).await;
    first.put("peer/k", "v1", None).await.expect("put on m1");
    for i in 1..c.len() {
        let mut mc = c.member_client(i).await;
        assert_member_reads(&mut mc, c.name(i), "peer/k", "v1").await;
    }

    let list = first.member_list().await.expect("member list");
    let mut got: Vec<(String, Vec<String>)> = list
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.peer_urls().to_vec()))
        .collect();
    got.sort();
    let want: Vec<(String, Vec<String>)> = (0..c.len())
        .map(|i| (c.name(i).to_string(), vec![c.peer_url(i)]))
        .collect();
    assert!(want.iter().all(|(_, urls)| urls[0].starts_with("https://")));
    assert_eq!(got, want);

    for i in 0..c.len() {
        let cert = c.data_dir(i).join("fixtures").join("peer").join("cert.pem");
        assert!(cert.is_file(), "no {}", cert.display());
    }
}

#[tokio::test]
async fn peer_cert_auth_cluster_survives_the_loss_of_its_leader() {
    let pki = Pki::generate();
    let mut args = pki.server_cert_args("peer-");
    args.push(format!("--peer-trusted-ca-file={}", pki.path("ca.pem")));
    args.push("--peer-client-cert-auth".to_string());
    let mut c = TestCluster::start_peer_tls(3, &str_args(&args));
    let leader = c.wait_for_leader(LEADER_WAIT).await;

    // Written through a follower, so that it also crosses a peer connection on its way to
    // the leader.
    let follower = c.followers(leader)[0];
    let mut fc = c.member_client(follower).await;
    fc.put("peer/a", "1", None)
        .await
        .expect("put through a follower");
    for i in 0..c.len() {
        let mut mc = c.member_client(i).await;
        assert_member_reads(&mut mc, c.name(i), "peer/a", "1").await;
    }

    c.kill9(leader);
    let new_leader = c.wait_for_leader(LEADER_WAIT).await;
    assert_ne!(new_leader, leader);
    let mut nc = c.client_of(&c.running()).await;
    nc.put("peer/b", "2", None)
        .await
        .expect("put after the leader's death");
    for i in c.running() {
        let mut mc = c.member_client(i).await;
        assert_member_reads(&mut mc, c.name(i), "peer/b", "2").await;
    }
    // A prefix read from one survivor: both writes, nothing else.
    let all = kvs(&mut nc, "peer/", false).await;
    assert_eq!(all.len(), 2, "{all:?}");
}
