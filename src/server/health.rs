//! What the health endpoints report: etcd's `/health` (alarms, a leader, a read served in
//! time) and the checks of `/livez` and `/readyz` (etcd 3.6).

use std::fmt;
use std::time::Duration;

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::proto::etcdserverpb::{AlarmType, RangeRequest};

/// etcd 3.4's `/health` gives its read this long.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Why `/health` answers `false`, worded as etcd 3.5+ gives the reason.
#[derive(Debug)]
pub enum Unhealthy {
    Alarm(String),
    NoLeader,
    Read(EtcdError),
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Alarm(name) => write!(f, "ALARM {name}"),
            Unhealthy::NoLeader => f.write_str("RAFT NO LEADER"),
            Unhealthy::Read(e) => write!(f, "RANGE ERROR:{e}"),
        }
    }
}

/// `/livez` (is the process serving at all) or `/readyz` (may it take traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

impl Probe {
    /// The checks of each probe, in the order etcd reports them.
    pub fn checks(self) -> &'static [&'static str] {
        match self {
            Probe::Live => &["serializable_read"],
            Probe::Ready => &[
                "data_corruption",
                "serializable_read",
                "linearizable_read",
                "non_learner",
            ],
        }
    }
}

/// One check's outcome: its error's text if it failed.
pub type CheckResult = Result<(), String>;

impl Server {
    /// etcd's `/health`: no alarm raised (but those in `excluded_alarms`), a leader known
    /// (unless `serializable`), and a read served within a second (linearizable unless
    /// `serializable`).
    pub async fn health(
        &self,
        serializable: bool,
        excluded_alarms: &[String],
    ) -> Result<(), Unhealthy> {
        let result = self.check_health(serializable, excluded_alarms).await;
        if let Err(e) = &result {
            tracing::warn!(reason = %e, "serving /health false");
        }
        result
    }

    async fn check_health(
        &self,
        serializable: bool,
        excluded_alarms: &[String],
    ) -> Result<(), Unhealthy> {
        if let Some(alarm) = self
            .raised_alarms()
            .into_iter()
            .find(|alarm| !excluded_alarms.iter().any(|e| e == alarm))
        {
            return Err(Unhealthy::Alarm(alarm));
        }
        if !serializable && self.leader_id().is_none() {
            return Err(Unhealthy::NoLeader);
        }
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, self.health_read(serializable)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Unhealthy::Read(e)),
            Err(_) => Err(Unhealthy::Read(EtcdError::Timeout)),
        }
    }

    /// Runs `probe`'s checks (only the one named `only` when given), but those named in
    /// `excluded`. Each is as etcd's: reads as Cairn's own (auth cannot refuse them),
    /// without a deadline but the server's own.
    pub async fn probe(
        &self,
        probe: Probe,
        only: Option<&str>,
        excluded: &[String],
    ) -> Vec<(&'static str, CheckResult)> {
        let mut results = Vec::new();
        for &check in probe.checks() {
            if only.is_some_and(|only| only != check) {
                continue;
            }
            if excluded.iter().any(|e| e == check) {
                continue;
            }
            let outcome = match check {
                "data_corruption" => match self.raised_alarms().iter().any(|a| a == "CORRUPT") {
                    true => Err("alarm activated: CORRUPT".to_string()),
                    false => Ok(()),
                },
                "serializable_read" => self.health_read(true).await.map_err(|e| e.to_string()),
                "linearizable_read" => self.health_read(false).await.map_err(|e| e.to_string()),
                _ => match self.is_learner() {
                    true => Err("not supported for learner".to_string()),
                    false => Ok(()),
                },
            };
            results.push((check, outcome));
        }
        results
    }

    /// The names of the alarms raised on any member (`NOSPACE`, `CORRUPT`).
    fn raised_alarms(&self) -> Vec<String> {
        self.alarm_list()
            .iter()
            .filter_map(|a| AlarmType::try_from(a.alarm).ok())
            .map(|a| a.as_str_name().to_string())
            .collect()
    }

    /// A one-key read as Cairn's own, so that auth cannot refuse it.
    async fn health_read(&self, serializable: bool) -> Result<(), EtcdError> {
        let request = RangeRequest {
            key: b"health".to_vec(),
            keys_only: true,
            limit: 1,
            serializable,
            ..RangeRequest::default()
        };
        self.range(&RequestContext::internal(), request)
            .await
            .map(drop)
    }
}
