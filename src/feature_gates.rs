//! etcd 3.7's server feature gates (`--feature-gates=Name=bool,...`): parsed with etcd's
//! rules and error messages, and checked against what Cairn does.
//!
//! Cairn behaves one way for each gate. A value asking for the other way is either accepted
//! and reported at start-up, with the reason (it changes nothing a client can rely on), or
//! refused (the user asked for behaviour Cairn does not have).
//!
//! Owns parsing only; it calls nothing else in Cairn.

/// What Cairn does about one gate set to a value other than Cairn's own behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stance {
    /// Accepted and reported at start-up: the value makes no difference a client can rely on.
    Reported(&'static str),
    /// Refused: the value would promise behaviour Cairn does not have.
    Refused(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Alpha,
    Beta,
}

/// A gate left unset means etcd's default; Cairn reports nothing then, whatever it does.
struct Gate {
    name: &'static str,
    stage: Stage,
    /// The value Cairn's behaviour corresponds to.
    cairn: bool,
    /// What happens when the gate is set to `!cairn`.
    otherwise: Stance,
}

/// etcd 3.7.3's server gates (`server/features/etcd_features.go`), in its order. etcd's
/// defaults: TxnModeWriteWithSharedBuffer and FastLeaseKeepAlive on, the rest off.
const GATES: &[Gate] = &[
    Gate {
        name: "StopGRPCServiceOnDefrag",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Reported(
            "Cairn's defragmentation (a RocksDB compaction) does not block requests, so there is nothing to stop serving for",
        ),
    },
    Gate {
        name: "TxnModeWriteWithSharedBuffer",
        stage: Stage::Beta,
        cairn: true,
        otherwise: Stance::Reported(
            "a buffering choice of etcd's storage engine; Cairn's transactions read the same either way",
        ),
    },
    Gate {
        name: "InitialCorruptCheck",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Reported(
            "the start-up hash comparison with peers is not built yet (etcd too starts without it when no peer answers)",
        ),
    },
    Gate {
        name: "CompactHashCheck",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Reported(
            "the leader's periodic comparison of compaction hashes is not built yet",
        ),
    },
    Gate {
        name: "LeaseCheckpoint",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Refused(
            "Cairn does not checkpoint remaining TTLs: a new leader gives every lease its full TTL",
        ),
    },
    Gate {
        name: "LeaseCheckpointPersist",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Refused(
            "Cairn does not checkpoint remaining TTLs: a new leader gives every lease its full TTL",
        ),
    },
    Gate {
        name: "SetMemberLocalAddr",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Refused(
            "Cairn does not choose the local address of its connections to peers",
        ),
    },
    Gate {
        name: "FastLeaseKeepAlive",
        stage: Stage::Beta,
        // Cairn's keep-alives always confirm leadership and wait for the leader's applied
        // index first, which is etcd's behaviour with this gate off.
        cairn: false,
        otherwise: Stance::Reported(
            "Cairn's keep-alives always wait until the leader has confirmed its leadership and applied its commit index",
        ),
    },
    Gate {
        name: "PriorityRequest",
        stage: Stage::Alpha,
        cairn: false,
        otherwise: Stance::Refused("Cairn does not prioritise requests under overload yet"),
    },
];

const ALL_ALPHA: &str = "AllAlpha";
const ALL_BETA: &str = "AllBeta";

/// Checks `--feature-gates`. Returns one start-up note per gate whose value Cairn accepts
/// without acting on it, or etcd's error for a malformed value (as `invalid value ... for
/// flag -feature-gates: ...`), or the reason Cairn refuses a gate.
pub fn check(value: &str) -> Result<Vec<String>, String> {
    let invalid = |why: String| format!("invalid value {value:?} for flag -feature-gates: {why}");
    let mut set: Vec<(&str, bool)> = Vec::new();
    for item in value.split(',').filter(|s| !s.is_empty()) {
        let (name, val) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => return Err(invalid(format!("missing bool value for {}", item.trim()))),
        };
        let val = go_parse_bool(val).ok_or_else(|| {
            invalid(format!(
                "invalid value of {name}={val}, err: strconv.ParseBool: parsing {val:?}: invalid syntax"
            ))
        })?;
        if name != ALL_ALPHA && name != ALL_BETA && !GATES.iter().any(|g| g.name == name) {
            return Err(invalid(format!("unrecognized feature gate: {name}")));
        }
        set.retain(|(n, _)| *n != name); // the last value given wins
        set.push((name, val));
    }
    let given = |name: &str| set.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let mut notes = Vec::new();
    for gate in GATES {
        let stage_toggle = match gate.stage {
            Stage::Alpha => given(ALL_ALPHA),
            Stage::Beta => given(ALL_BETA),
        };
        let Some(value) = given(gate.name).or(stage_toggle) else {
            continue;
        };
        if value == gate.cairn {
            continue;
        }
        match gate.otherwise {
            Stance::Reported(why) => {
                notes.push(format!("--feature-gates {}={value}: {why}", gate.name))
            }
            Stance::Refused(why) => {
                return Err(format!(
                    "--feature-gates {}={value} is not supported: {why}",
                    gate.name
                ))
            }
        }
    }
    Ok(notes)
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_get_etcds_errors() {
        // Texts read off etcd 3.7.3.
        assert_eq!(
            check("Bogus=true").unwrap_err(),
            r#"invalid value "Bogus=true" for flag -feature-gates: unrecognized feature gate: Bogus"#
        );
        assert_eq!(
            check("InitialCorruptCheck=maybe").unwrap_err(),
            r#"invalid value "InitialCorruptCheck=maybe" for flag -feature-gates: invalid value of InitialCorruptCheck=maybe, err: strconv.ParseBool: parsing "maybe": invalid syntax"#
        );
        assert_eq!(
            check("InitialCorruptCheck").unwrap_err(),
            r#"invalid value "InitialCorruptCheck" for flag -feature-gates: missing bool value for InitialCorruptCheck"#
        );
    }

    #[test]
    fn values_cairn_acts_the_same_on_are_reported() {
        assert_eq!(check("").unwrap(), Vec::<String>::new());
        assert_eq!(
            check("StopGRPCServiceOnDefrag=false,FastLeaseKeepAlive=false")
                .unwrap()
                .len(),
            0
        );
        let notes = check("InitialCorruptCheck=true,FastLeaseKeepAlive=true").unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("--feature-gates InitialCorruptCheck=true: "));
        assert!(notes[1].starts_with("--feature-gates FastLeaseKeepAlive=true: "));
        // The last value of a gate given twice wins, as in etcd.
        assert_eq!(
            check("InitialCorruptCheck=true,InitialCorruptCheck=0")
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn values_cairn_cannot_honour_are_refused() {
        let err = check("LeaseCheckpoint=true").unwrap_err();
        assert!(
            err.starts_with("--feature-gates LeaseCheckpoint=true is not supported: "),
            "{err}"
        );
        // AllAlpha turns on every alpha gate that is not named, PriorityRequest among them.
        assert!(check("AllAlpha=true").is_err());
        assert!(check("AllAlpha=true,LeaseCheckpoint=false,LeaseCheckpointPersist=false,SetMemberLocalAddr=false,PriorityRequest=false").is_ok());
        assert_eq!(check("AllBeta=true").unwrap().len(), 1); // FastLeaseKeepAlive=true
    }
}
