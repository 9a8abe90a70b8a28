//! Auth tokens, as etcd's `--auth-token` chooses them.
//!
//! - `simple` (the default): random letters, a dot, and the Raft index of the Authenticate
//!   entry that issued it. Every member learns the token when it applies that entry, keeps
//!   it in memory only (a restart forgets it; clients authenticate again), and forgets it
//!   `--auth-token-ttl` seconds after its last use.
//! - `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`: signed tokens carrying the user name
//!   and the auth revision they were issued at; any member verifies them with the key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::EtcdError;

/// Letters of a simple token's random part, as etcd's.
const SIMPLE_TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SIMPLE_TOKEN_PREFIX_LEN: usize = 16;
/// etcd's JWT lifetime when `ttl=` is not given.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
/// How often expired simple tokens are swept from memory (etcd: every second).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Who a token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    pub user: String,
    /// JWT: the auth revision it was issued at. Simple tokens: None, the current revision
    /// applies (their users' changes remove them).
    pub auth_revision: Option<u64>,
}

pub enum Tokens {
    Simple(Mutex<SimpleTokens>),
    Jwt(Jwt),
}

pub struct SimpleTokens {
    ttl: Duration,
    /// Token → (user, when it expires unless used again).
    live: HashMap<String, (String, Instant)>,
    last_sweep: Instant,
}

pub struct Jwt {
    algorithm: Algorithm,
    /// None: verify-only (etcd: a public key without its private key).
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl Tokens {
    /// Parses etcd's `--auth-token` value and reads the key files it names.
    pub fn from_option(option: &str, simple_ttl: Duration) -> Result<Tokens, String> {
        let mut parts = option.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut options: HashMap<&str, &str> = HashMap::new();
        for part in parts {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!(
                    "invalid --auth-token option {part:?}: want name=value"
                ));
            };
            if options.insert(name, value).is_some() {
                return Err(format!("--auth-token option {name} given twice"));
            }
        }
        match kind {
            "simple" => {
                if let Some(name) = options.keys().next() {
                    return Err(format!("--auth-token=simple takes no options (got {name})"));
                }
                let ttl = if simple_ttl.is_zero() {
                    Duration::from_secs(300)
                } else {
                    simple_ttl
                };
                Ok(Tokens::Simple(Mutex::new(SimpleTokens {
                    ttl,
                    live: HashMap::new(),
                    last_sweep: Instant::now(),
                })))
            }
            "jwt" => Jwt::from_options(&options).map(Tokens::Jwt),
            other => Err(format!(
                "--auth-token={other}: unknown token type (want simple or jwt)"
            )),
        }
    }

    pub fn is_simple(&self) -> bool {
        matches!(self, Tokens::Simple(_))
    }

    /// A fresh random prefix for a simple token, chosen before the Authenticate entry is
    /// proposed (its index completes the token).
    pub fn new_prefix() -> String {
        use ring::rand::SecureRandom;
        let mut random = [0u8; SIMPLE_TOKEN_PREFIX_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .expect("the system's random source works");
        random
            .iter()
            .map(|b| SIMPLE_TOKEN_LETTERS[*b as usize % SIMPLE_TOKEN_LETTERS.len()] as char)
            .collect()
    }

    /// The Raft index a simple token was issued at: a member must have applied it before it
    /// can know the token.
    pub fn issued_at_index(&self, token: &str) -> Option<u64> {
        match self {
            Tokens::Simple(_) => token.rsplit_once('.')?.1.parse().ok(),
            Tokens::Jwt(_) => None,
        }
    }

    /// Records a simple token issued by an applied Authenticate entry; returns it. With JWT,
    /// nothing to record: None.
    pub fn issue_simple(&self, user: &str, prefix: &str, index: u64) -> Option<String> {
        let Tokens::Simple(simple) = self else {
            return None;
        };
        let token = format!("{prefix}.{index}");
        let mut simple = simple.lock().unwrap();
        simple.sweep();
        let expiry = Instant::now() + simple.ttl;
        simple
            .live
            .insert(token.clone(), (user.to_string(), expiry));
        Some(token)
    }

    /// A signed token for `user` at `auth_revision` (JWT only).
    pub fn sign(&self, user: &str, auth_revision: u64) -> Result<String, EtcdError> {
        let Tokens::Jwt(jwt) = self else {
            return Err(EtcdError::InvalidAuthToken);
        };
        let Some(key) = &jwt.signing else {
            // etcd: "auth: token signing attempted with verify-only key".
            return Err(EtcdError::AuthFailed);
        };
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(jwt.ttl)
            .as_secs();
        let claims = Claims {
            username: user.to_string(),
            revision: auth_revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(jwt.algorithm), &claims, key).map_err(|e| {
            tracing::warn!(error = %e, "cannot sign a JWT");
            EtcdError::AuthFailed
        })
    }

    /// Who `token` stands for; `invalid auth token` if it is unknown, expired or forged. A
    /// simple token's life starts again with each use.
    pub fn identify(&self, token: &str) -> Result<TokenIdentity, EtcdError> {
        match self {
            Tokens::Simple(simple) => {
                let mut simple = simple.lock().unwrap();
                let ttl = simple.ttl;
                let now = Instant::now();
                match simple.live.get_mut(token) {
                    Some((user, expiry)) if *expiry > now => {
                        *expiry = now + ttl;
                        Ok(TokenIdentity {
                            user: user.clone(),
                            auth_revision: None,
                        })
                    }
                    Some(_) => {
                        simple.live.remove(token);
                        Err(EtcdError::InvalidAuthToken)
                    }
                    None => Err(EtcdError::InvalidAuthToken),
                }
            }
            Tokens::Jwt(jwt) => {
                let mut validation = Validation::new(jwt.algorithm);
                // etcd's JWT library allows no leeway on expiry.
                validation.leeway = 0;
                let data = jsonwebtoken::decode::<Claims>(token, &jwt.verifying, &validation)
                    .map_err(|_| EtcdError::InvalidAuthToken)?;
                Ok(TokenIdentity {
                    user: data.claims.username,
                    auth_revision: Some(data.claims.revision),
                })
            }
        }
    }

    /// Forgets `user`'s simple tokens (deleted, or a new password).
    pub fn forget_user(&self, user: &str) {
        if let Tokens::Simple(simple) = self {
            simple.lock().unwrap().live.retain(|_, (u, _)| u != user);
        }
    }

    /// Forgets every simple token (auth disabled).
    pub fn forget_all(&self) {
        if let Tokens::Simple(simple) = self {
            simple.lock().unwrap().live.clear();
        }
    }
}

impl SimpleTokens {
    fn sweep(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) < SWEEP_INTERVAL {
            return;
        }
        self.last_sweep = now;
        self.live.retain(|_, (_, expiry)| *expiry > now);
    }
}

impl Jwt {
    fn from_options(options: &HashMap<&str, &str>) -> Result<Jwt, String> {
        const KNOWN: [&str; 4] = ["sign-method", "pub-key", "priv-key", "ttl"];
        if let Some(unknown) = options.keys().find(|k| !KNOWN.contains(k)) {
            return Err(format!("--auth-token=jwt: unknown option {unknown}"));
        }
        let method = options.get("sign-method").copied().unwrap_or_default();
        let algorithm: Algorithm = match method {
            "HS256" | "HS384" | "HS512" | "RS256" | "RS384" | "RS512" | "PS256" | "PS384"
            | "PS512" | "ES256" | "ES384" => method.parse().map_err(|_| method.to_string())?,
            // ring, Cairn's cryptography, has no P-521 curve.
            "ES512" => {
                return Err(
                    "--auth-token=jwt: sign-method ES512 is not supported; use ES256 or ES384"
                        .into(),
                )
            }
            other => return Err(format!("--auth-token=jwt: invalid sign-method {other:?}")),
        };
        let ttl = match options.get("ttl") {
            Some(ttl) => crate::config::parse_go_duration(ttl)
                .ok_or_else(|| format!("--auth-token=jwt: invalid ttl {ttl:?}"))?,
            None => DEFAULT_JWT_TTL,
        };
        let read = |name: &str| -> Result<Option<Vec<u8>>, String> {
            match options.get(name) {
                Some(path) if !path.is_empty() => std::fs::read(Path::new(path))
                    .map(Some)
                    .map_err(|e| format!("--auth-token=jwt: cannot read {name} {path}: {e}")),
                _ => Ok(None),
            }
        };
        let (private, public) = (read("priv-key")?, read("pub-key")?);
        let bad = |what: &str, e: jsonwebtoken::errors::Error| {
            format!("--auth-token=jwt: {what} is not a valid key for {method}: {e}")
        };
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or("--auth-token=jwt: HMAC needs priv-key")?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let signing = private
                    .as_deref()
                    .map(|k| EncodingKey::from_ec_pem(k).map_err(|e| bad("priv-key", e)))
                    .transpose()?;
                let verifying = match (&public, &private) {
                    (Some(public), _) => {
                        DecodingKey::from_ec_pem(public).map_err(|e| bad("pub-key", e))?
                    }
                    (None, Some(private)) => ec_public_key(private, algorithm)?,
                    (None, None) => return Err("--auth-token=jwt: no pub-key or priv-key".into()),
                };
                (signing, verifying)
            }
            _ => {
                let signing = private
                    .as_deref()
                    .map(|k| EncodingKey::from_rsa_pem(k).map_err(|e| bad("priv-key", e)))
                    .transpose()?;
                let verifying = match (&public, &private) {
                    (Some(public), _) => {
                        DecodingKey::from_rsa_pem(public).map_err(|e| bad("pub-key", e))?
                    }
                    (None, Some(private)) => rsa_public_key(private)?,
                    (None, None) => return Err("--auth-token=jwt: no pub-key or priv-key".into()),
                };
                (signing, verifying)
            }
        };
        Ok(Jwt {
            algorithm,
            signing,
            verifying,
            ttl,
        })
    }
}

/// The DER of a PEM file's first block.
fn pem_der(pem: &[u8]) -> Result<(String, Vec<u8>), String> {
    let block = pem::parse(pem).map_err(|e| format!("--auth-token=jwt: priv-key: {e}"))?;
    Ok((block.tag().to_string(), block.into_contents()))
}

/// The verifying key of an RSA private key (PKCS#1 or PKCS#8 PEM), as etcd derives it.
fn rsa_public_key(private_pem: &[u8]) -> Result<DecodingKey, String> {
    let (tag, der) = pem_der(private_pem)?;
    let pair = match tag.as_str() {
        "RSA PRIVATE KEY" => ring::rsa::KeyPair::from_der(&der),
        _ => ring::rsa::KeyPair::from_pkcs8(&der),
    }
    .map_err(|e| format!("--auth-token=jwt: priv-key is not an RSA key: {e}"))?;
    use ring::signature::KeyPair;
    Ok(DecodingKey::from_rsa_der(pair.public_key().as_ref()))
}

/// The verifying key of an EC private key (PKCS#8 PEM).
fn ec_public_key(private_pem: &[u8], algorithm: Algorithm) -> Result<DecodingKey, String> {
    let (_, der) = pem_der(private_pem)?;
    let curve = match algorithm {
        Algorithm::ES384 => &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    let pair =
        ring::signature::EcdsaKeyPair::from_pkcs8(curve, &der, &ring::rand::SystemRandom::new())
            .map_err(|e| {
                format!("--auth-token=jwt: priv-key is not a PKCS#8 EC key for the method: {e}")
            })?;
    use ring::signature::KeyPair;
    Ok(DecodingKey::from_ec_der(pair.public_key().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_options_are_checked() {
        assert!(Tokens::from_option("simple", Duration::ZERO)
            .unwrap()
            .is_simple());
        for bad in [
            "bogus",
            "simple,ttl=1s",
            "jwt,sign-method=RS256,sign-method=RS256",
            "jwt,sign-method",
            "jwt,sign-method=XX256",
            "jwt,sign-method=HS256",
            "jwt,sign-method=ES512,priv-key=/nonexistent",
            "jwt,sign-method=HS256,priv-key=/nonexistent",
            "jwt,sign-method=HS256,colour=blue",
        ] {
            assert!(Tokens::from_option(bad, Duration::ZERO).is_err(), "{bad}");
        }
    }

    #[test]
    fn simple_tokens_expire_unless_used_and_are_forgotten_with_their_user() {
        let tokens = Tokens::from_option("simple", Duration::from_millis(50)).unwrap();
        let t = tokens
            .issue_simple("alice", &Tokens::new_prefix(), 7)
            .unwrap();
        assert_eq!(tokens.issued_at_index(&t), Some(7));
        assert_eq!(tokens.identify(&t).unwrap().user, "alice");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(tokens.identify(&t), Err(EtcdError::InvalidAuthToken));
        let t = tokens
            .issue_simple("alice", &Tokens::new_prefix(), 8)
            .unwrap();
        tokens.forget_user("alice");
        assert_eq!(tokens.identify(&t), Err(EtcdError::InvalidAuthToken));
        assert_eq!(tokens.identify("garbage"), Err(EtcdError::InvalidAuthToken));
    }

    #[test]
    fn hmac_jwts_carry_user_and_revision_and_refuse_forgery() {
        let dir = std::env::temp_dir().join(format!("cairn-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("hmac.key");
        std::fs::write(&key, b"secret").unwrap();
        let option = format!("jwt,sign-method=HS256,priv-key={}", key.display());
        let tokens = Tokens::from_option(&option, Duration::ZERO).unwrap();
        let token = tokens.sign("bob", 9).unwrap();
        assert_eq!(token.split('.').count(), 3);
        let who = tokens.identify(&token).unwrap();
        assert_eq!((who.user.as_str(), who.auth_revision), ("bob", Some(9)));
        let forged = format!("{}x", token);
        assert_eq!(tokens.identify(&forged), Err(EtcdError::InvalidAuthToken));
        std::fs::remove_dir_all(dir).ok();
    }
}
