//! The `--config-file` YAML: etcd's file keys for Cairn's flags, read from one table.
//!
//! Owns `FILE_KEYS`, which says for every flag where etcd's file holds it (or why it has
//! no file key), and the reading of a file into `Flags`. Top-level keys are not written
//! here: they are the flag's own names, taken from clap, so a flag and its key cannot
//! drift. Calls nothing in Cairn but `Flags`.

use std::path::Path;

use clap::{Command, CommandFactory};
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use super::Flags;

const CLIENT: &str = "client-transport-security";
const PEER: &str = "peer-transport-security";

/// Where etcd's config file holds a flag.
// The reasons are for readers and the coverage test; nothing reads them at run time.
#[cfg_attr(not(test), allow(dead_code))]
enum Place {
    /// A top-level key named as the flag, or as one of its aliases (etcd's other names
    /// for it, e.g. `experimental-snapshot-catchup-entries`).
    Top,
    /// A key of a section: `client-transport-security: {cert-file: ...}`.
    Section(&'static str, &'static str),
    /// Not in etcd's file; the reason.
    FlagOnly(&'static str),
}

/// One flag and its place in the file.
struct FileKey {
    /// The `Flags` field; clap names the flag after it (`data_dir`: `--data-dir`).
    field: &'static str,
    place: Place,
    /// Stores the file's value in the field.
    set: fn(&mut Flags, Value) -> Result<(), String>,
}

/// `key!(field, place)` reads the value as the field's own type; `key!(field, place,
/// reader)` converts etcd's file form (a list, nanoseconds) into the flag's text.
macro_rules! key {
    // `FlagOnly`: nothing to set.
    ($field:ident, $unread:ident($reason:literal)) => {
        FileKey {
            field: stringify!($field),
            place: $unread($reason),
            set: |_, _| Ok(()),
        }
    };
    ($field:ident, $place:expr) => {
        key!($field, $place, typed)
    };
    ($field:ident, $place:expr, $read:ident) => {
        FileKey {
            field: stringify!($field),
            place: $place,
            set: |flags, value| {
                flags.$field = $read(value)?;
                Ok(())
            },
        }
    };
}

use Place::{FlagOnly, Section, Top};

/// Every flag, in `Flags`' order. Key names checked against etcd 3.4's `embed/config.go`
/// (`configYAML`, `securityConfig`) and, for newer names, etcd's main branch.
const FILE_KEYS: &[FileKey] = &[
    key!(version, FlagOnly("prints the version and exits")),
    key!(config_file, FlagOnly("names the file itself")),
    key!(name, Top),
    key!(data_dir, Top),
    key!(listen_client_urls, Top),
    key!(advertise_client_urls, Top),
    key!(listen_peer_urls, Top),
    key!(initial_advertise_peer_urls, Top),
    key!(initial_cluster, Top),
    key!(initial_cluster_state, Top),
    key!(initial_cluster_token, Top),
    key!(heartbeat_interval, Top),
    key!(election_timeout, Top),
    key!(snapshot_count, Top),
    key!(snapshot_catchup_entries, Top),
    key!(quota_backend_bytes, Top),
    key!(max_request_bytes, Top),
    key!(max_txn_ops, Top),
    key!(auto_compaction_mode, Top),
    key!(auto_compaction_retention, Top, text),
    key!(log_level, Top),
    key!(logger, Top),
    key!(log_format, Top),
    key!(max_concurrent_streams, Top),
    key!(experimental_watch_progress_notify_interval, Top, duration),
    key!(enable_distributed_tracing, Top),
    key!(distributed_tracing_address, Top),
    key!(distributed_tracing_service_name, Top),
    key!(distributed_tracing_instance_id, Top),
    key!(distributed_tracing_sampling_rate, Top),
    key!(metrics, Top),
    key!(listen_metrics_urls, Top),
    key!(log_outputs, Top, list),
    key!(enable_v2, Top),
    key!(strict_reconfig_check, Top),
    key!(experimental_initial_corrupt_check, Top),
    key!(auth_token, Top),
    key!(auth_token_ttl, Top),
    key!(bcrypt_cost, Top),
    key!(feature_gates, Top),
    key!(cert_file, Section(CLIENT, "cert-file")),
    key!(key_file, Section(CLIENT, "key-file")),
    key!(client_cert_auth, Section(CLIENT, "client-cert-auth")),
    key!(trusted_ca_file, Section(CLIENT, "trusted-ca-file")),
    key!(auto_tls, Section(CLIENT, "auto-tls")),
    key!(
        client_crl_file,
        FlagOnly("etcd's client-transport-security has no CRL key")
    ),
    key!(peer_cert_file, Section(PEER, "cert-file")),
    key!(peer_key_file, Section(PEER, "key-file")),
    key!(peer_client_cert_auth, Section(PEER, "client-cert-auth")),
    key!(peer_trusted_ca_file, Section(PEER, "trusted-ca-file")),
    key!(peer_auto_tls, Section(PEER, "auto-tls")),
    key!(
        peer_crl_file,
        FlagOnly("etcd's peer-transport-security has no CRL key")
    ),
    key!(self_signed_cert_validity, Top),
    key!(peer_cert_allowed_cn, Section(PEER, "allowed-cn"), one_name),
    key!(
        peer_cert_allowed_hostname,
        Section(PEER, "allowed-hostname"),
        one_name
    ),
    key!(cipher_suites, Top, list),
    key!(compaction_batch_limit, Top),
    key!(compaction_sleep_interval, Top, duration),
];

/// Reads `--config-file` into the flags it stands for. Keys Cairn does not know are
/// ignored, as etcd ignores them.
pub(super) fn read(path: &Path) -> Result<Flags, String> {
    let invalid = |e: String| format!("invalid config file {}: {e}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let top = match serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))? {
        // An empty file, or one of comments only.
        Value::Null => Mapping::new(),
        Value::Mapping(top) => top,
        _ => return Err(invalid("expected a mapping of etcd's keys".to_string())),
    };
    let command = Flags::command();
    let mut flags = Flags::default();
    for key in FILE_KEYS {
        if let Some((name, value)) = key.lookup(&command, &top).map_err(invalid)? {
            (key.set)(&mut flags, value).map_err(|e| invalid(format!("{name}: {e}")))?;
        }
    }
    Ok(flags)
}

impl FileKey {
    /// The key the file gives this flag under, and its value, if given.
    fn lookup(&self, command: &Command, top: &Mapping) -> Result<Option<(String, Value)>, String> {
        match self.place {
            FlagOnly(_) => Ok(None),
            Top => {
                let mut found: Option<(String, Value)> = None;
                for name in flag_names(command, self.field) {
                    if let Some(value) = top.get(name) {
                        if let Some((first, _)) = &found {
                            return Err(format!("{first} and {name} are one setting: give one"));
                        }
                        found = Some((name.to_string(), value.clone()));
                    }
                }
                Ok(found)
            }
            Section(section, key) => match top.get(section) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Mapping(keys)) => Ok(keys
                    .get(key)
                    .map(|value| (format!("{section}.{key}"), value.clone()))),
                Some(_) => Err(format!("{section}: expected a mapping")),
            },
        }
    }
}

/// The flag's name and aliases, as clap accepts them.
fn flag_names<'a>(command: &'a Command, field: &str) -> Vec<&'a str> {
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_id() == field)
        .expect("every FILE_KEYS field is a flag");
    arg.get_long()
        .into_iter()
        .chain(arg.get_all_aliases().unwrap_or_default())
        .collect()
}

/// The value as the field's type (`max-txn-ops: 7`, `auto-tls: true`).
fn typed<T: DeserializeOwned>(value: Value) -> Result<Option<T>, String> {
    serde_yaml::from_value(value).map_err(|e| e.to_string())
}

/// Any scalar as its text: etcd reads `auto-compaction-retention: 1` as "1".
fn text(value: Value) -> Result<Option<String>, String> {
    Ok(match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(
            serde_yaml::to_string(&other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
    })
}

/// etcd's list keys (`log-outputs: [stderr]`), or one string, as the flag's comma-separated
/// text; an empty list is etcd's default.
fn list(value: Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Sequence(items) if items.is_empty() => Ok(None),
        Value::Sequence(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err("expected a list of strings".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Some(items.join(","))),
        _ => Err("expected a list of strings".to_string()),
    }
}

/// etcd writes a duration in its file as integer nanoseconds; a Go duration string ("10m"),
/// as the flag takes, is read too.
fn duration(value: Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) if n.as_u64().is_some() => Ok(Some(format!("{n}ns"))),
        _ => Err("expected nanoseconds or a duration such as \"10m\"".to_string()),
    }
}

/// Newer etcd's `allowed-cn` and `allowed-hostname` are lists (3.4's file has neither);
/// Cairn checks one name, and refuses more rather than drop any.
fn one_name(value: Value) -> Result<Option<String>, String> {
    match list(value)? {
        Some(names) if names.contains(',') => Err(format!("one name is supported, got {names:?}")),
        names => Ok(names),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::FromArgMatches;

    use super::*;
    use crate::config::Config;
    use crate::net::tls::AllowedPeer;
    use crate::telemetry::{LogFormat, TracingSettings};

    /// Flags from a command line alone: `ETCD_*` variables of the test's environment left out.
    fn from_command_line(args: &[String]) -> Result<Flags, clap::Error> {
        let matches = Flags::command()
            .mut_args(|arg| arg.env(None::<&'static str>))
            .try_get_matches_from(
                std::iter::once("cairn".to_string()).chain(args.iter().cloned()),
            )?;
        Flags::from_arg_matches(&matches)
    }

    fn from_file(yaml: &str) -> Result<Flags, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(&path, yaml).unwrap();
        read(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    fn config_from_file(yaml: &str) -> Result<Config, String> {
        Config::from_flags(from_file(yaml)?)
    }

    #[test]
    fn every_flag_has_a_file_key_or_a_reason() {
        let command = Flags::command();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" {
                continue;
            }
            let entries = FILE_KEYS.iter().filter(|k| k.field == id).count();
            assert_eq!(
                entries,
                1,
                "--{}: {entries} FILE_KEYS entries",
                id.replace('_', "-")
            );
        }
        for key in FILE_KEYS {
            assert!(
                command.get_arguments().any(|arg| arg.get_id() == key.field),
                "FILE_KEYS names {}, which is no flag",
                key.field
            );
            if let FlagOnly(reason) = key.place {
                assert!(!reason.is_empty(), "{}: needs its reason", key.field);
            }
        }
    }

    /// Each file key sets exactly what its flag sets, given the same value.
    #[test]
    fn each_file_key_sets_what_its_flag_sets() {
        let command = Flags::command();
        for key in FILE_KEYS {
            let long = flag_names(&command, key.field)[0];
            let yaml_key = match key.place {
                FlagOnly(_) => continue,
                Top => format!("{long}: "),
                Section(section, name) => format!("{section}:\n  {name}: "),
            };
            // The first value of these that the flag takes: a string, a bool, a number.
            let compared = ["a7", "true", "7"].into_iter().find_map(|value| {
                let by_flag = from_command_line(&[format!("--{long}={value}")]).ok()?;
                let by_file = from_file(&format!("{yaml_key}{value}\n"))
                    .unwrap_or_else(|e| panic!("--{long}={value} is taken, the file's {e}"));
                Some((by_flag, by_file))
            });
            let (by_flag, by_file) =
                compared.unwrap_or_else(|| panic!("--{long}: no sample value"));
            assert_eq!(format!("{by_flag:?}"), format!("{by_file:?}"), "--{long}");
        }
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        for yaml in ["", "# comments only\n"] {
            assert_eq!(
                format!("{:?}", from_file(yaml).unwrap()),
                format!("{:?}", Flags::default())
            );
        }
        let err = from_file("- name\n").unwrap_err();
        assert_eq!(
            err,
            "invalid config file FILE: expected a mapping of etcd's keys"
        );
    }

    #[test]
    fn auth_keys_are_honoured() {
        let c = config_from_file(
            "auth-token: jwt,sign-method=HS256,priv-key=/k\n\
             auth-token-ttl: 60\n\
             bcrypt-cost: 4\n",
        )
        .unwrap();
        assert_eq!(c.auth_token, "jwt,sign-method=HS256,priv-key=/k");
        assert_eq!(c.auth_token_ttl, Duration::from_secs(60));
        assert_eq!(c.bcrypt_cost, 4);
        let c = config_from_file("name: x\n").unwrap();
        assert_eq!(
            (c.auth_token.as_str(), c.auth_token_ttl, c.bcrypt_cost),
            ("simple", Duration::from_secs(300), 10)
        );
    }

    #[test]
    fn keys_added_to_the_file_are_honoured() {
        let c = config_from_file(
            "max-concurrent-streams: 32\n\
             experimental-watch-progress-notify-interval: 2000000000\n\
             logger: zap\n\
             log-outputs: [stderr]\n\
             strict-reconfig-check: false\n\
             enable-v2: true\n\
             experimental-initial-corrupt-check: true\n\
             experimental-compaction-batch-limit: 100\n\
             compaction-sleep-interval: 1000000\n\
             peer-transport-security:\n  allowed-cn: [member]\n",
        )
        .unwrap();
        assert_eq!(c.max_concurrent_streams, Some(32));
        assert_eq!(
            (c.compaction_pace.batch_limit, c.compaction_pace.sleep),
            (100, Duration::from_millis(1))
        );
        // etcd's file gives durations in nanoseconds.
        assert_eq!(c.watch_progress_interval, Duration::from_secs(2));
        assert_eq!(
            c.peer_tls.allowed,
            Some(AllowedPeer::CommonName("member".into()))
        );
        // etcd's zap logger writes JSON, and so does Cairn when asked for it.
        assert_eq!(c.log_format, LogFormat::Json);
        for note in [
            "--log-outputs=stderr",
            "--strict-reconfig-check",
            "--enable-v2",
            "--experimental-initial-corrupt-check",
        ] {
            assert!(
                c.ignored.iter().any(|i| i.starts_with(note)),
                "{note} not in {:?}",
                c.ignored
            );
        }
        let c = config_from_file(
            "watch-progress-notify-interval: 500ms\n\
             log-output: stderr\n\
             peer-transport-security:\n  allowed-hostname: member.example\n",
        )
        .unwrap();
        assert_eq!(c.watch_progress_interval, Duration::from_millis(500));
        assert!(
            c.ignored[0].starts_with("--log-outputs=stderr"),
            "{:?}",
            c.ignored
        );
        assert_eq!(
            c.peer_tls.allowed,
            Some(AllowedPeer::Hostname("member.example".into()))
        );
    }

    #[test]
    fn tracing_and_log_format_keys_under_both_of_etcds_names() {
        let c = config_from_file(
            "experimental-enable-distributed-tracing: true\n\
             experimental-distributed-tracing-address: collector:4317\n\
             distributed-tracing-sampling-rate: 100\n\
             log-format: json\n",
        )
        .unwrap();
        assert_eq!(
            c.distributed_tracing,
            Some(TracingSettings {
                address: "collector:4317".into(),
                service_name: "etcd".into(),
                instance_id: String::new(),
                sampling_rate_per_million: 100,
            })
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    /// Settings Cairn cannot apply are refused from the file as from the flags, not silently
    /// dropped.
    #[test]
    fn restrictions_in_the_file_are_refused_as_flags_are() {
        let err = config_from_file("peer-transport-security:\n  allowed-cn: [a, b]\n").unwrap_err();
        assert_eq!(
            err,
            "invalid config file FILE: peer-transport-security.allowed-cn: one name is supported, got \"a,b\""
        );
    }

    #[test]
    fn etcds_sample_file_is_accepted() {
        let c = config_from_file(include_str!("../../compat/e2e/etcd.conf.yml.sample")).unwrap();
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.snapshot_count, 10000);
        assert!(!c.client_tls.is_configured() && !c.peer_tls.is_configured());
    }

    #[test]
    fn a_setting_under_two_of_its_names_is_refused() {
        assert!(from_file("name: a\nname: b\n").is_err());
        let err =
            from_file("snapshot-catchup-entries: 1\nexperimental-snapshot-catchup-entries: 2\n")
                .unwrap_err();
        assert_eq!(
            err,
            "invalid config file FILE: snapshot-catchup-entries and experimental-snapshot-catchup-entries are one setting: give one"
        );
    }

    #[test]
    fn a_wrong_value_names_its_key() {
        let err = from_file("max-txn-ops: abc\n").unwrap_err();
        assert!(
            err.starts_with("invalid config file FILE: max-txn-ops: invalid type: string \"abc\""),
            "{err}"
        );
        let err = from_file("client-transport-security: 3\n").unwrap_err();
        assert_eq!(
            err,
            "invalid config file FILE: client-transport-security: expected a mapping"
        );
    }
}
