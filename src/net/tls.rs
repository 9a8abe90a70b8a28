//! TLS on the client and peer ports, as etcd's `--cert-file`/`--peer-cert-file` families
//! and `--auto-tls`/`--peer-auto-tls` configure it: certificates read from files or
//! generated and kept in the data directory, the server side of accepted connections, and
//! the client side of the connections a member makes to its peers (and the load generator
//! to a server).
//!
//! Owns rustls configuration and handshakes; calls nothing else in Cairn.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::CoalescedWrites;
use anyhow::Context as _;
use futures::stream::{BoxStream, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;

/// A client that opens a connection and never finishes the handshake gives up its slot
/// after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress per listener; further connections wait in the kernel's backlog.
/// Each runs on its own, so stalled ones delay others only once this many are stalled
/// (at a few KiB each, 1,024 bound the memory a flood can hold to a few MiB).
const MAX_PENDING_HANDSHAKES: usize = 1024;
/// gRPC is HTTP/2 only; a peer offering other protocols by ALPN only is refused in the
/// handshake rather than after it. The client port also speaks HTTP/1.1 (the JSON gateway,
/// `/health`, `/metrics`).
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// One port's TLS flags, as etcd names them (`--cert-file`, or `--peer-cert-file` for peers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca_file`.
    pub client_cert_auth: bool,
    /// Generate a self-signed certificate when no certificate file is given.
    pub auto_tls: bool,
    /// Client certificates revoked by this PEM list are refused.
    pub crl_file: Option<PathBuf>,
    /// Validity of an auto-generated certificate, in years.
    pub self_signed_cert_validity_years: u32,
    /// What the other side's certificate must also show (peers only).
    pub allowed: Option<AllowedPeer>,
    /// The port serves HTTP/1.1 beside HTTP/2 (the client port).
    pub serves_http1: bool,
    /// `--cipher-suites`: the TLS 1.2 suites offered (IANA names), all when empty.
    pub cipher_suites: Vec<String>,
}

/// `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname`: beyond a trusted signature,
/// a peer's certificate must carry this common name, or be valid for this host name. As
/// etcd, this holds both ways: for peers connecting in and for peers this member dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedPeer {
    CommonName(String),
    Hostname(String),
}

impl AllowedPeer {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let admitted = match self {
            AllowedPeer::CommonName(cn) => common_name(cert).as_deref() == Some(cn.as_str()),
            AllowedPeer::Hostname(host) => ServerName::try_from(host.as_str())
                .ok()
                .zip(webpki::EndEntityCert::try_from(cert).ok())
                .is_some_and(|(name, ee)| ee.verify_is_valid_for_subject_name(&name).is_ok()),
        };
        // Sent as a bad_certificate alert, which etcd's peers report as such.
        admitted
            .then_some(())
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
    }
}

impl TlsSettings {
    /// True when this port has something to serve TLS with.
    pub fn is_configured(&self) -> bool {
        self.cert_file.is_some() || self.auto_tls
    }
}

/// The TLS configuration of one port (client or peer), server and client sides.
#[derive(Clone)]
pub struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Builds the configuration from `settings`. With auto TLS and no certificate file, a
    /// self-signed certificate for `hosts` is generated in `auto_dir` on first start and
    /// reused afterwards, so clients that pinned it keep working.
    pub fn load(settings: &TlsSettings, auto_dir: &Path, hosts: &[String]) -> anyhow::Result<Tls> {
        let provider = Arc::new(with_cipher_suites(
            rustls::crypto::ring::default_provider(),
            &settings.cipher_suites,
        ));
        let (cert_file, key_file, self_signed) = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!(
                    "a certificate file needs its key file, and a key file its certificate"
                )
            }
            (None, None) if settings.auto_tls => {
                let (cert, key) = self_signed_files(
                    auto_dir,
                    hosts,
                    settings.self_signed_cert_validity_years.max(1),
                )?;
                (cert, key, true)
            }
            (None, None) => {
                anyhow::bail!("no certificate: give a certificate and key file, or auto TLS")
            }
        };
        let chain = read_certs(&cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&key_file)
            .with_context(|| format!("cannot read a private key from {}", key_file.display()))?;
        let trusted = match &settings.trusted_ca_file {
            Some(path) => Some(read_roots(path)?),
            None => None,
        };

        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        // As etcd: a trusted CA file alone also makes client certificates required.
        let server = if settings.client_cert_auth || trusted.is_some() {
            let roots = trusted.clone().context(
                "client certificate authentication needs a trusted CA file to check certificates against",
            )?;
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if let Some(crl_file) = &settings.crl_file {
                // etcd checks only the client's own certificate against the list, and a
                // certificate the list does not cover is good.
                verifier = verifier
                    .with_crls(read_crls(crl_file)?)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            let verifier = verifier.build()?;
            // A CRL may list the anchor itself: then only the WebPKI verifier decides.
            let verifier: Arc<dyn ClientCertVerifier> =
                match (&settings.crl_file, &settings.trusted_ca_file) {
                    (None, Some(path)) => Arc::new(AnchorAsClient {
                        inner: verifier,
                        anchors: read_certs(path)?,
                        algorithms: provider.signature_verification_algorithms,
                    }),
                    _ => verifier,
                };
            server.with_client_cert_verifier(match &settings.allowed {
                Some(allowed) => Arc::new(AllowedClient {
                    inner: verifier,
                    allowed: allowed.clone(),
                    algorithms: provider.signature_verification_algorithms,
                }),
                None => verifier,
            })
        } else {
            server.with_no_client_auth()
        };
        let mut server = server
            .with_single_cert(chain.clone(), key.clone_key())
            .context("the certificate does not match its key")?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        if settings.serves_http1 {
            server.alpn_protocols.push(ALPN_HTTP1.to_vec());
        }

        // As a client, a member checks servers against the trusted CA when one is given.
        // Without one (auto TLS, or certificates from a CA the member was not told about) it
        // accepts any certificate, as etcd's members do: peer URLs come from the cluster's
        // own membership, agreed through Raft, not from the network.
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let verifier: Arc<dyn ServerCertVerifier> = match (&trusted, self_signed) {
            (Some(roots), false) => {
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()?
            }
            _ => Arc::new(AnyServerCertificate {
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let verifier = match &settings.allowed {
            Some(allowed) => Arc::new(AllowedServer {
                inner: verifier,
                allowed: allowed.clone(),
                algorithms: provider.signature_verification_algorithms,
            }),
            None => verifier,
        };
        let client = client
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut client = client
            .with_client_auth_cert(chain, key)
            .context("the certificate does not match its key")?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];

        Ok(Tls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// Wraps accepted connections in TLS. Handshakes run beside the accept loop, at most
    /// `MAX_PENDING_HANDSHAKES` at a time; a failed one only drops that connection.
    pub fn accept<S, I>(&self, connections: I) -> BoxStream<'static, io::Result<Accepted<S>>>
    where
        I: Stream<Item = io::Result<S>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        let (ready, ready_rx) = tokio::sync::mpsc::channel(MAX_PENDING_HANDSHAKES);
        tokio::spawn(async move {
            let mut connections = std::pin::pin!(connections);
            loop {
                // A slot is taken before accepting, so a flood of slow handshakes waits in
                // the kernel's backlog instead of in memory.
                let Ok(slot) = ready.clone().reserve_owned().await else {
                    return;
                };
                let stream = tokio::select! {
                    next = connections.next() => match next {
                        Some(Ok(stream)) => stream,
                        Some(Err(e)) => {
                            slot.send(Err(e));
                            continue;
                        }
                        None => return,
                    },
                    // The server stopped: release the listener.
                    () = ready.closed() => return,
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            slot.send(Ok(Accepted::Tls(Box::new(tls))));
                        }
                        // As etcd, which logs each rejected connection: a client or peer
                        // with the wrong certificate is a configuration error to see.
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "rejected a TLS connection: {}",
                                refusal(&e, Side::Server)
                            )
                        }
                        Err(_) => tracing::warn!(
                            "rejected a TLS connection: no handshake within {HANDSHAKE_TIMEOUT:?}"
                        ),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(ready_rx).boxed()
    }

    /// A tonic connector that dials `host:port` over TCP and TLS.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector {
            connector: tokio_rustls::TlsConnector::from(self.client.clone()),
        }
    }
}

/// Connections that are accepted as they are, when a port serves plaintext.
pub fn plain<S, I>(connections: I) -> BoxStream<'static, io::Result<Accepted<S>>>
where
    I: Stream<Item = io::Result<S>> + Send + 'static,
    S: Send + 'static,
{
    connections
        .map(|accepted| accepted.map(Accepted::Plain))
        .boxed()
}

/// A connection accepted on a client or peer port: as it came, or after a TLS handshake.
pub enum Accepted<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
}

impl<S: Connected> Connected for Accepted<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Accepted::Plain(s) => s.connect_info(),
            Accepted::Tls(tls) => tls.get_ref().0.connect_info(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Accepted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Accepted::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Accepted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Accepted::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Accepted::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Accepted::Plain(s) => s.is_write_vectored(),
            Accepted::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_flush(cx),
            Accepted::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Accepted::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Dials `host:port` over TLS for tonic's `Endpoint::connect_with_connector`.
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
}

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let invalid = |what: &str| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in {uri}"))
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            // An IPv6 host comes bracketed in a URI.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = ServerName::try_from(host.clone()).map_err(|_| invalid("bad host name"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await.inspect_err(|e| {
                tracing::warn!(
                    "TLS handshake with {host}:{port} failed: {}",
                    refusal(e, Side::Client)
                );
            })?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// Which end of a handshake this member was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// How a failed handshake reads in the log, worded as etcd's logs word it: a refusal by
/// the other side as Go's TLS stack ("remote error: tls: bad certificate"), and a peer
/// certificate this member's server turned down for `--peer-cert-allowed-*` as etcd's
/// listener ("client certificate authentication failed").
fn refusal(e: &io::Error, side: Side) -> String {
    use rustls::AlertDescription as A;
    let alert = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => alert,
        // A server checks no names on client certificates: only `AllowedPeer` does.
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            if side == Side::Server =>
        {
            return "client certificate authentication failed".to_string();
        }
        _ => return e.to_string(),
    };
    let text = match alert {
        A::BadCertificate => "bad certificate",
        A::UnknownCA => "unknown certificate authority",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::CertificateRequired => "certificate required",
        A::HandshakeFailure => "handshake failure",
        A::AccessDenied => "access denied",
        other => return format!("remote error: tls: {other:?}"),
    };
    format!("remote error: tls: {text}")
}

fn read_roots(path: &Path) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("bad CA certificate in {}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

fn read_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read revocation list {}", path.display()))?;
    // etcd reads the list as DER; PEM is accepted too.
    let pem = CertificateRevocationListDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>();
    match pem {
        Ok(crls) if !crls.is_empty() => Ok(crls),
        _ => Ok(vec![CertificateRevocationListDer::from(bytes)]),
    }
}

/// The certificate and key of auto TLS in `dir` (`cert.pem`, `key.pem`, as etcd names
/// them), generated when missing: ECDSA P-256, valid for `hosts`.
fn self_signed_files(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())?;
    // As etcd's: organization "etcd", no common name.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// The handshake-signature half of a certificate verifier, the same for every verifier
/// here: checked with the crypto provider's algorithms (`self.algorithms`), as rustls's own
/// WebPKI verifiers check it.
macro_rules! provider_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// The client-auth policy half of a client-certificate verifier that wraps another
/// (`self.inner`): whether and which certificates to ask for is the inner one's.
macro_rules! inner_client_auth_policy {
    () => {
        fn offer_client_auth(&self) -> bool {
            self.inner.offer_client_auth()
        }

        fn client_auth_mandatory(&self) -> bool {
            self.inner.client_auth_mandatory()
        }

        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.inner.root_hint_subjects()
        }
    };
}

/// Accepts any server certificate, still checking that the server holds its key.
#[derive(Debug)]
struct AnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    provider_signatures!();
}

/// A lazily connecting channel to `url`: over TLS through `tls` when the URL is `https`;
/// as it is otherwise (`http`, `unix`).
pub fn channel(
    url: &str,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = |url: String| {
        tonic::transport::Endpoint::from_shared(url.clone())
            .map(|e| e.connect_timeout(connect_timeout).tcp_nodelay(true))
            .map_err(|e| format!("bad URL {url}: {e}"))
    };
    match url.strip_prefix("https://") {
        Some(authority) => {
            let tls =
                tls.ok_or_else(|| format!("{url} is https, but no TLS is configured to reach it"))?;
            // tonic is handed an http URL: TLS is this connector's, and tonic, when built
            // with its own TLS, refuses an https URL that its TLS is not configured for.
            Ok(endpoint(format!("http://{authority}"))?.connect_with_connector_lazy(tls))
        }
        None => Ok(endpoint(url.to_string())?.connect_lazy()),
    }
}

/// A connector for a client that is not a member (such as cairn-bench): checks servers
/// against the CA certificates in `ca_file` and, when given, presents `identity`
/// (certificate and key files).
pub fn client_connector(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(read_roots(ca_file)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                read_certs(cert)?,
                PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("cannot read a private key from {}", key.display()))?,
            )
            .context("the certificate does not match its key")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(TlsConnector {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
    })
}

/// Loads one port's TLS when its flags configure any: certificates valid for the hosts of
/// `listen_urls`, auto TLS kept under `<data-dir>/fixtures/<port>` as etcd keeps it.
pub fn load_for_port(
    settings: &TlsSettings,
    data_dir: &Path,
    port: &str,
    listen_urls: &[url::Url],
) -> anyhow::Result<Option<Tls>> {
    if !settings.is_configured() {
        return Ok(None);
    }
    let hosts: Vec<String> = listen_urls
        .iter()
        .filter_map(|u| u.host_str())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    let auto_dir = data_dir.join("fixtures").join(port);
    Tls::load(settings, &auto_dir, &hosts)
        .map(Some)
        .with_context(|| format!("{port} TLS"))
}

/// The connections accepted on `listeners`, each paired with whether its URL is `https`:
/// those through a TLS handshake with `tls`, the others as they come. Every connection gets
/// TCP_NODELAY: small replies (heartbeats, single-key reads) must not wait for Nagle's
/// algorithm to meet the other side's delayed ACK (~40 ms); and its writes are coalesced
/// (`net::CoalescedWrites`).
pub fn incoming(
    listeners: Vec<(tokio::net::TcpListener, bool)>,
    tls: Option<&Tls>,
) -> anyhow::Result<BoxStream<'static, io::Result<CoalescedWrites<Accepted<TcpStream>>>>> {
    let mut streams = Vec::with_capacity(listeners.len());
    for (listener, secure) in listeners {
        let connections =
            tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
                accepted.inspect(|stream| {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                })
            });
        streams.push(match (secure, tls) {
            (false, _) => plain(connections),
            (true, Some(tls)) => tls.accept(connections),
            (true, None) => anyhow::bail!("an https URL needs a certificate"),
        });
    }
    Ok(futures::stream::select_all(streams)
        .map(|accepted| accepted.map(CoalescedWrites::new))
        .boxed())
}

/// A client-certificate verifier that also applies `--peer-cert-allowed-*`.
#[derive(Debug)]
struct AllowedClient {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: AllowedPeer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AllowedClient {
    inner_client_auth_policy!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    provider_signatures!();
}

/// A client-certificate verifier that also accepts a client presenting one of the trusted
/// CA certificates themselves, as Go's TLS (and so etcd) does. WebPKI refuses any CA
/// certificate as an end entity; etcd's own test fixtures use one self-signed certificate
/// as CA, server and client certificate. Nothing else is let through: the certificate must
/// be byte for byte a trusted one, in its validity period (WebPKI checks that first), with
/// no extended key usage or one allowing client auth, and the handshake still proves its
/// key is held. Not with `--client-crl-file`, where WebPKI alone decides (stricter than Go).
#[derive(Debug)]
struct AnchorAsClient {
    inner: Arc<dyn ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnchorAsClient {
    inner_client_auth_policy!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e)
                if is_ca_used_as_end_entity(&e)
                    && self.anchors.contains(end_entity)
                    && allows_client_auth(end_entity) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            outcome => outcome,
        }
    }

    provider_signatures!();
}

/// Whether a certificate may authenticate a TLS client, as Go decides it for a certificate
/// in its roots: no extended key usage at all, or one that lists client auth or any usage.
fn allows_client_auth(cert: &[u8]) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return false;
    };
    match parsed.extended_key_usage() {
        Ok(None) => true,
        Ok(Some(usage)) => usage.value.client_auth || usage.value.any,
        Err(_) => false,
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = e else {
        return false;
    };
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

/// A server-certificate verifier that also applies `--peer-cert-allowed-*`.
#[derive(Debug)]
struct AllowedServer {
    inner: Arc<dyn ServerCertVerifier>,
    allowed: AllowedPeer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AllowedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    provider_signatures!();
}

/// The subject common name of a certificate (DER), when it has one as a string.
///
/// A few lines of DER walking rather than an X.509 crate: the one that would do it changes
/// the features of a crate RocksDB's build script uses, and so rebuilds RocksDB. Only
/// certificates that webpki has already verified, so well-formed, reach here.
fn common_name(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xa0;
    const COMMON_NAME_OID: [u8; 3] = [0x55, 0x04, 0x03]; // 2.5.4.3
    let (certificate, _) = der_expect(cert, SEQUENCE)?;
    let (tbs, _) = der_expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = der_next(rest)?.2;
    }
    // Serial number, signature algorithm, issuer, validity; then the subject.
    for _ in 0..4 {
        rest = der_next(rest)?.2;
    }
    let (mut names, _) = der_expect(rest, SEQUENCE)?;
    while !names.is_empty() {
        let (mut attributes, next) = der_expect(names, SET)?;
        while !attributes.is_empty() {
            let (attribute, after) = der_expect(attributes, SEQUENCE)?;
            let (oid, value) = der_expect(attribute, OID)?;
            if oid == COMMON_NAME_OID {
                // UTF8String, PrintableString or IA5String: bytes that are text.
                return String::from_utf8(der_next(value)?.1.to_vec()).ok();
            }
            attributes = after;
        }
        names = next;
    }
    None
}

/// One DER element: its tag, its content, and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = usize::from(*input.get(1)?);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let bytes = first & 0x7f;
        if bytes == 0 || bytes > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..bytes {
            len = (len << 8) | usize::from(*input.get(2 + i)?);
        }
        (len, 2 + bytes)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = der_next(input)?;
    (found == tag).then_some((content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(common_name: Option<&str>, names: &[&str]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "etcd");
        if let Some(cn) = common_name {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn common_name_is_read_from_the_subject() {
        let cert = certificate(Some("example.com"), &["localhost"]);
        assert_eq!(common_name(&cert).as_deref(), Some("example.com"));
        assert_eq!(common_name(&certificate(None, &["localhost"])), None);
        assert_eq!(common_name(&cert[..cert.len() / 2]), None);
    }

    #[test]
    fn allowed_peer_checks_common_name_or_host_name() {
        let cert = certificate(Some("example.com"), &["localhost", "127.0.0.1"]);
        assert!(AllowedPeer::CommonName("example.com".into())
            .check(&cert)
            .is_ok());
        assert!(AllowedPeer::CommonName("example2.com".into())
            .check(&cert)
            .is_err());
        assert!(AllowedPeer::Hostname("localhost".into())
            .check(&cert)
            .is_ok());
        assert!(AllowedPeer::Hostname("127.0.0.1".into())
            .check(&cert)
            .is_ok());
        assert!(AllowedPeer::Hostname("example2.com".into())
            .check(&cert)
            .is_err());
    }
}

/// Go's names of the TLS 1.2 cipher suites `--cipher-suites` may list, with the IANA name
/// of each (Go also spells two ChaCha20 suites without their hash).
const GO_CIPHER_SUITES: &[(&str, &str)] = &[
    ("TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_RC4_128_SHA"),
    (
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    ),
    (
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
    ),
    (
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
    ),
    (
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    ),
    (
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    ),
    (
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// `--cipher-suites` (comma-separated Go names) as IANA names; a name Go does not know is
/// refused with etcd's words.
pub fn go_cipher_suites(names: &str) -> Result<Vec<String>, String> {
    names
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            GO_CIPHER_SUITES
                .iter()
                .find(|(go, _)| *go == name)
                .map(|(_, iana)| iana.to_string())
                .ok_or_else(|| format!("unexpected TLS cipher suite {name:?}"))
        })
        .collect()
}

/// The provider with only the TLS 1.2 suites in `names` (all when empty); TLS 1.3's stay,
/// as Go keeps them whatever the list says. Listed suites the provider lacks (CBC, RC4,
/// 3DES, RSA key exchange) are reported, not silently dropped.
fn with_cipher_suites(
    mut provider: rustls::crypto::CryptoProvider,
    names: &[String],
) -> rustls::crypto::CryptoProvider {
    if names.is_empty() {
        return provider;
    }
    let offered = |suite: &rustls::SupportedCipherSuite| format!("{:?}", suite.suite());
    let unavailable: Vec<&String> = names
        .iter()
        .filter(|name| !provider.cipher_suites.iter().any(|s| &offered(s) == *name))
        .collect();
    if !unavailable.is_empty() {
        tracing::warn!(
            ?unavailable,
            "--cipher-suites lists suites Cairn's TLS does not implement; they are not offered"
        );
    }
    provider.cipher_suites.retain(|suite| {
        suite.version() == &rustls::version::TLS13 || names.contains(&offered(suite))
    });
    provider
}
