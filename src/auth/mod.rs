//! Auth: users, roles, key-range permissions, tokens, as etcd's auth store.
//!
//! Owns the `auth` column family and its in-memory copy: whether auth is enabled, the auth
//! revision (raised by every change of users or roles, as etcd's), users with their bcrypt
//! password hashes and roles, roles with their permissions, and each user's permissions
//! merged into key ranges (`permissions`). Changes are made only by applied Raft entries,
//! in the entry's storage batch (`apply` calls the `*_applied` methods). Tokens (`tokens`)
//! live in memory. Passwords are hashed and checked here, but never on the apply path:
//! the server hashes before proposing and checks before authenticating, off the runtime.
//!
//! The checks (`check_op`, `check_admin`) answer etcd's errors in etcd's order. Who calls
//! them, and for which request, is `apply::authorize` (writes, when applied) and the server
//! (reads, watches, maintenance).
//!
//! May call `storage`, and `config` for etcd's spelling of durations.

mod permissions;
pub mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message;
use rocksdb::WriteBatch;

use crate::error::EtcdError;
use crate::proto::authpb::{Permission, Role, User, UserAddOptions};
use crate::proto::cairnraftpb::Caller;
use crate::storage::{Storage, StorageError, StorageResult};
use permissions::UserPermissions;
pub use tokens::{TokenIdentity, Tokens};

/// etcd's names: the user that must exist to enable auth, and the role that may do all.
pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";
/// etcd's bcrypt cost when `--bcrypt-cost` is not given or out of bcrypt's range.
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// The costs bcrypt can use.
const MIN_BCRYPT_COST: u32 = 4;
const MAX_BCRYPT_COST: u32 = 31;

/// Record keys in the `auth` family. Users and roles are encoded `authpb` messages, as etcd
/// stores them.
const KEY_ENABLED: &[u8] = b"enabled";
const KEY_REVISION: &[u8] = b"revision";
const USER_PREFIX: &[u8] = b"user/";
const ROLE_PREFIX: &[u8] = b"role/";

/// Whether a key-range operation reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Default)]
struct State {
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Per user: their roles' permissions merged (rebuilt on each change, as etcd's cache).
    permissions: HashMap<String, UserPermissions>,
}

impl State {
    fn rebuild_permissions(&mut self) {
        let roles = &self.roles;
        self.permissions = self
            .users
            .iter()
            .map(|(name, user)| {
                let granted = user
                    .roles
                    .iter()
                    .filter_map(|r| roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                (name.clone(), UserPermissions::merge(granted))
            })
            .collect();
    }
}

pub struct AuthStore {
    storage: Arc<Storage>,
    /// Read without the lock on every request: with auth off, nothing else is looked at.
    enabled: AtomicBool,
    state: RwLock<State>,
    tokens: Tokens,
    bcrypt_cost: u32,
}

/// How `AuthStore::open` is configured: etcd's `--auth-token`, `--auth-token-ttl` and
/// `--bcrypt-cost`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub token: String,
    pub token_ttl: Duration,
    pub bcrypt_cost: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token: "simple".into(),
            token_ttl: Duration::from_secs(300),
            bcrypt_cost: DEFAULT_BCRYPT_COST,
        }
    }
}

fn corrupt(_: prost::DecodeError) -> StorageError {
    StorageError::Corrupt("an undecodable auth record")
}

impl AuthStore {
    /// Loads users and roles from storage; checks the token settings.
    pub fn open(storage: Arc<Storage>, settings: &AuthSettings) -> anyhow::Result<Arc<AuthStore>> {
        let tokens =
            Tokens::from_option(&settings.token, settings.token_ttl).map_err(anyhow::Error::msg)?;
        let bcrypt_cost = if (MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&settings.bcrypt_cost) {
            settings.bcrypt_cost
        } else {
            // As etcd: a cost bcrypt cannot use is replaced by the default, with a warning.
            tracing::warn!(
                given = settings.bcrypt_cost,
                default = DEFAULT_BCRYPT_COST,
                "use default bcrypt cost instead of the invalid given cost"
            );
            DEFAULT_BCRYPT_COST
        };
        let store = AuthStore {
            storage,
            enabled: AtomicBool::new(false),
            state: RwLock::default(),
            tokens,
            bcrypt_cost,
        };
        store.reload()?;
        Ok(Arc::new(store))
    }

    /// Reads the state again from storage (after a snapshot was installed).
    pub fn reload(&self) -> StorageResult<()> {
        let family = self.storage.auth();
        let mut state = State {
            // etcd's store starts at revision 1.
            revision: 1,
            ..State::default()
        };
        let mut enabled = false;
        for record in family.iter() {
            let (key, value) = record?;
            if let Some(name) = key.strip_prefix(USER_PREFIX) {
                let user = User::decode(&*value).map_err(corrupt)?;
                state
                    .users
                    .insert(String::from_utf8_lossy(name).into_owned(), user);
            } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
                let role = Role::decode(&*value).map_err(corrupt)?;
                state
                    .roles
                    .insert(String::from_utf8_lossy(name).into_owned(), role);
            } else if &*key == KEY_ENABLED {
                enabled = value.first() == Some(&1);
            } else if &*key == KEY_REVISION {
                let bytes: [u8; 8] = (*value)
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("auth revision is not 8 bytes"))?;
                state.revision = u64::from_be_bytes(bytes);
            }
        }
        state.rebuild_permissions();
        *self.state.write().unwrap() = state;
        if !enabled {
            self.tokens.forget_all();
        }
        self.enabled.store(enabled, Ordering::Release);
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn revision(&self) -> u64 {
        self.state.read().unwrap().revision
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    // ---- Checks ----

    /// Whether `caller` may read or write `key`..`range_end`: etcd's `isOpPermitted`. None is
    /// Cairn itself (lease expiry), which may do anything.
    pub fn check_op(
        &self,
        caller: Option<&Caller>,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let Some(caller) = caller else {
            return Ok(());
        };
        // Revision 0: the request carried no identity.
        if caller.auth_revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        let state = self.state.read().unwrap();
        if caller.auth_revision < state.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let Some(user) = state.users.get(&caller.user) else {
            return Err(EtcdError::PermissionDenied);
        };
        if has_root_role(user) {
            return Ok(());
        }
        let permitted = state
            .permissions
            .get(&caller.user)
            .is_some_and(|p| match access {
                Access::Read => p.read.covers(key, range_end),
                Access::Write => p.write.covers(key, range_end),
            });
        if permitted {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// Whether `caller` has the root role: etcd's `IsAdminPermitted`.
    pub fn check_admin(&self, caller: Option<&Caller>) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let Some(caller) = caller else {
            return Ok(());
        };
        if caller.user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let state = self.state.read().unwrap();
        match state.users.get(&caller.user) {
            None => Err(EtcdError::UserNotFound),
            Some(user) if !has_root_role(user) => Err(EtcdError::PermissionDenied),
            Some(_) => Ok(()),
        }
    }

    /// Whether `user` has been granted `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        let state = self.state.read().unwrap();
        state
            .users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    // ---- Passwords (never on the runtime's threads: bcrypt takes tens of milliseconds) ----

    /// The bcrypt hash of `password`, at `--bcrypt-cost`.
    pub fn hash_password(&self, password: &str) -> Result<Vec<u8>, EtcdError> {
        bcrypt::hash(password, self.bcrypt_cost)
            .map(String::into_bytes)
            .map_err(|e| {
                tracing::warn!(error = %e, "failed to bcrypt hash password");
                EtcdError::AuthFailed
            })
    }

    /// Checks a user's password: the auth revision it was checked at, as etcd's
    /// `CheckPassword`.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, EtcdError> {
        if !self.is_enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let (hash, revision) = {
            let state = self.state.read().unwrap();
            let user = state.users.get(name).ok_or(EtcdError::AuthFailed)?;
            if is_no_password(user) {
                return Err(EtcdError::NoPasswordUser);
            }
            (user.password.clone(), state.revision)
        };
        let hash = std::str::from_utf8(&hash).map_err(|_| EtcdError::AuthFailed)?;
        match bcrypt::verify(password, hash) {
            Ok(true) => Ok(revision),
            _ => Err(EtcdError::AuthFailed),
        }
    }

    // ---- Reads ----

    /// `(enabled, revision)`: what AuthStatus reports.
    pub fn status(&self) -> (bool, u64) {
        (self.is_enabled(), self.revision())
    }

    pub fn user_roles(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        let state = self.state.read().unwrap();
        let user = state.users.get(name).ok_or(EtcdError::UserNotFound)?;
        Ok(user.roles.clone())
    }

    pub fn user_names(&self) -> Vec<String> {
        self.state.read().unwrap().users.keys().cloned().collect()
    }

    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        let state = self.state.read().unwrap();
        let role = state.roles.get(name).ok_or(EtcdError::RoleNotFound)?;
        Ok(role.key_permission.clone())
    }

    pub fn role_names(&self) -> Vec<String> {
        self.state.read().unwrap().roles.keys().cloned().collect()
    }

    // ---- Changes, made by applied entries (etcd's store methods, same checks and order) ----

    pub fn enable_applied(&self, batch: &mut WriteBatch) -> Result<u64, EtcdError> {
        let state = self.state.read().unwrap();
        if self.is_enabled() {
            return Ok(state.revision);
        }
        let root = state
            .users
            .get(ROOT_USER)
            .ok_or(EtcdError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(EtcdError::RootRoleNotExist);
        }
        self.storage.auth().put(batch, KEY_ENABLED, &[1]);
        self.enabled.store(true, Ordering::Release);
        // As etcd: enabling does not raise the revision.
        Ok(state.revision)
    }

    pub fn disable_applied(&self, batch: &mut WriteBatch) -> u64 {
        let mut state = self.state.write().unwrap();
        if !self.is_enabled() {
            return state.revision;
        }
        self.storage.auth().put(batch, KEY_ENABLED, &[0]);
        self.enabled.store(false, Ordering::Release);
        self.tokens.forget_all();
        self.raise_revision(&mut state, batch)
    }

    /// An Authenticate entry: the simple token it issues (None with JWT, which the answering
    /// member signs).
    pub fn authenticate_applied(
        &self,
        name: &str,
        token_prefix: &str,
        index: u64,
    ) -> Result<(u64, Option<String>), EtcdError> {
        if !self.is_enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let state = self.state.read().unwrap();
        let user = state.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if is_no_password(user) {
            return Err(EtcdError::AuthFailed);
        }
        Ok((
            state.revision,
            self.tokens.issue_simple(name, token_prefix, index),
        ))
    }

    pub fn user_add_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        hashed_password: &[u8],
        options: Option<UserAddOptions>,
    ) -> Result<u64, EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let mut state = self.state.write().unwrap();
        if state.users.contains_key(name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let options = options.unwrap_or_default();
        let user = User {
            name: name.as_bytes().to_vec(),
            password: if options.no_password {
                Vec::new()
            } else {
                hashed_password.to_vec()
            },
            roles: Vec::new(),
            options: Some(options),
        };
        self.put_user(&mut state, batch, user);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn user_delete_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
    ) -> Result<u64, EtcdError> {
        if self.is_enabled() && name == ROOT_USER {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut state = self.state.write().unwrap();
        if state.users.remove(name).is_none() {
            return Err(EtcdError::UserNotFound);
        }
        self.storage.auth().delete(batch, &user_key(name));
        state.rebuild_permissions();
        self.tokens.forget_user(name);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn user_change_password_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        hashed_password: &[u8],
    ) -> Result<u64, EtcdError> {
        let mut state = self.state.write().unwrap();
        let mut user = state
            .users
            .get(name)
            .cloned()
            .ok_or(EtcdError::UserNotFound)?;
        user.password = hashed_password.to_vec();
        self.put_user(&mut state, batch, user);
        self.tokens.forget_user(name);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn user_grant_role_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        role: &str,
    ) -> Result<u64, EtcdError> {
        let mut state = self.state.write().unwrap();
        let mut user = state
            .users
            .get(name)
            .cloned()
            .ok_or(EtcdError::UserNotFound)?;
        // As etcd: the root role may be granted before it is added.
        if role != ROOT_ROLE && !state.roles.contains_key(role) {
            return Err(EtcdError::RoleNotFound);
        }
        let at = match user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            Ok(_) => return Ok(state.revision),
            Err(at) => at,
        };
        user.roles.insert(at, role.to_string());
        self.put_user(&mut state, batch, user);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn user_revoke_role_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        role: &str,
    ) -> Result<u64, EtcdError> {
        if self.is_enabled() && name == ROOT_USER && role == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut state = self.state.write().unwrap();
        let mut user = state
            .users
            .get(name)
            .cloned()
            .ok_or(EtcdError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(EtcdError::RoleNotGranted);
        }
        self.put_user(&mut state, batch, user);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn role_add_applied(&self, batch: &mut WriteBatch, name: &str) -> Result<u64, EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        let mut state = self.state.write().unwrap();
        if state.roles.contains_key(name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        let role = Role {
            name: name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        self.put_role(&mut state, batch, role);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn role_delete_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
    ) -> Result<u64, EtcdError> {
        if self.is_enabled() && name == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut state = self.state.write().unwrap();
        if state.roles.remove(name).is_none() {
            return Err(EtcdError::RoleNotFound);
        }
        self.storage.auth().delete(batch, &role_key(name));
        let holders: Vec<User> = state
            .users
            .values()
            .filter(|u| u.roles.iter().any(|r| r == name))
            .cloned()
            .collect();
        for mut user in holders {
            user.roles.retain(|r| r != name);
            self.put_user(&mut state, batch, user);
        }
        state.rebuild_permissions();
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn role_grant_permission_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        permission: Permission,
    ) -> Result<u64, EtcdError> {
        let mut state = self.state.write().unwrap();
        let mut role = state
            .roles
            .get(name)
            .cloned()
            .ok_or(EtcdError::RoleNotFound)?;
        // As etcd: sorted by key; the same key and range end replace the type.
        let same = role
            .key_permission
            .iter_mut()
            .find(|p| p.key == permission.key && p.range_end == permission.range_end);
        match same {
            Some(p) => p.perm_type = permission.perm_type,
            None => {
                let at = role
                    .key_permission
                    .partition_point(|p| p.key <= permission.key);
                role.key_permission.insert(at, permission);
            }
        }
        self.put_role(&mut state, batch, role);
        Ok(self.raise_revision(&mut state, batch))
    }

    pub fn role_revoke_permission_applied(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<u64, EtcdError> {
        let mut state = self.state.write().unwrap();
        let mut role = state
            .roles
            .get(name)
            .cloned()
            .ok_or(EtcdError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| !(p.key == key && p.range_end == range_end));
        if role.key_permission.len() == before {
            return Err(EtcdError::PermissionNotGranted);
        }
        self.put_role(&mut state, batch, role);
        Ok(self.raise_revision(&mut state, batch))
    }

    fn put_user(&self, state: &mut State, batch: &mut WriteBatch, user: User) {
        let name = String::from_utf8_lossy(&user.name).into_owned();
        self.storage
            .auth()
            .put(batch, &user_key(&name), &user.encode_to_vec());
        state.users.insert(name, user);
        state.rebuild_permissions();
    }

    fn put_role(&self, state: &mut State, batch: &mut WriteBatch, role: Role) {
        let name = String::from_utf8_lossy(&role.name).into_owned();
        self.storage
            .auth()
            .put(batch, &role_key(&name), &role.encode_to_vec());
        state.roles.insert(name, role);
        state.rebuild_permissions();
    }

    /// Every change raises the revision: identities resolved before it are re-checked.
    fn raise_revision(&self, state: &mut State, batch: &mut WriteBatch) -> u64 {
        state.revision += 1;
        self.storage
            .auth()
            .put(batch, KEY_REVISION, &state.revision.to_be_bytes());
        state.revision
    }
}

/// etcd's buckets for the `auth` family's records: `auth` (whether auth is enabled, the
/// auth revision), `authUsers` and `authRoles` (by name). Values are the same bytes in
/// both (`[1]`/`[0]`, a big-endian u64, encoded `authpb` messages).
pub const ETCD_BUCKETS: [&str; 3] = ["auth", "authUsers", "authRoles"];

/// Where etcd keeps a record of the `auth` family: its bucket and key. None for a record
/// etcd has no place for.
pub fn etcd_place_of(key: &[u8]) -> Option<(&'static str, &[u8])> {
    if let Some(name) = key.strip_prefix(USER_PREFIX) {
        Some(("authUsers", name))
    } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
        Some(("authRoles", name))
    } else if key == KEY_ENABLED {
        Some(("auth", b"authEnabled"))
    } else if key == KEY_REVISION {
        Some(("auth", b"authRevision"))
    } else {
        None
    }
}

/// The `auth` family's key for a record of etcd's auth buckets (`etcd_place_of`'s inverse).
pub fn record_key_of_etcd(bucket: &str, key: &[u8]) -> Option<Vec<u8>> {
    match (bucket, key) {
        ("authUsers", name) => Some([USER_PREFIX, name].concat()),
        ("authRoles", name) => Some([ROLE_PREFIX, name].concat()),
        ("auth", b"authEnabled") => Some(KEY_ENABLED.to_vec()),
        ("auth", b"authRevision") => Some(KEY_REVISION.to_vec()),
        _ => None,
    }
}

fn user_key(name: &str) -> Vec<u8> {
    [USER_PREFIX, name.as_bytes()].concat()
}

fn role_key(name: &str) -> Vec<u8> {
    [ROLE_PREFIX, name.as_bytes()].concat()
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT_ROLE)
}

fn is_no_password(user: &User) -> bool {
    user.options.as_ref().is_some_and(|o| o.no_password)
}
