//! The alarms raised, as etcd's alarm store: a set of (alarm type, member ID), changed only
//! by applying `AlarmRequest`s, so every member holds the same set. Kept in `meta`
//! (`MetaKey::Alarm`), so the set survives restarts and travels in snapshots.
//!
//! What an alarm does is decided elsewhere: `apply` refuses writes while NOSPACE or
//! CORRUPT is raised, `server` raises NOSPACE when a write would pass the space quota.
//! May call `storage`.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use prost::Message;

use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use crate::storage::{MetaKey, Storage, StorageError, WriteBatch};

pub struct AlarmStore {
    storage: Arc<Storage>,
    /// (alarm type, member ID), in the order etcd's Get lists them by type.
    raised: RwLock<BTreeSet<(i32, u64)>>,
}

impl AlarmStore {
    pub fn open(storage: Arc<Storage>) -> Result<AlarmStore, StorageError> {
        let store = AlarmStore {
            storage,
            raised: RwLock::default(),
        };
        store.reload()?;
        Ok(store)
    }

    /// Reads the set again from storage (after a snapshot was installed).
    pub fn reload(&self) -> Result<(), StorageError> {
        let mut raised = BTreeSet::new();
        for record in self.storage.meta().alarms() {
            let member = AlarmMember::decode(&*record?)
                .map_err(|_| StorageError::Corrupt("an unreadable alarm record"))?;
            raised.insert((member.alarm, member.member_id));
        }
        *self.raised.write().expect("alarm lock") = raised;
        Ok(())
    }

    /// The alarms of one type; of every type for `AlarmType::None`, as etcd's Get.
    pub fn list(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.raised
            .read()
            .expect("alarm lock")
            .iter()
            .filter(|(raised, _)| alarm == AlarmType::None || *raised == alarm as i32)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    pub fn is_raised(&self, alarm: AlarmType) -> bool {
        let raised = self.raised.read().expect("alarm lock");
        raised.iter().any(|(raised, _)| *raised == alarm as i32)
    }

    /// Applies a committed request, staging the change in `batch`. As etcd 3.7: ACTIVATE
    /// answers the alarm (also one already raised), but raises no alarm of type NONE;
    /// DEACTIVATE answers the alarm it cleared, nothing when there was none; GET lists.
    /// An action etcd does not know changes nothing and answers no alarms.
    pub fn apply(&self, batch: &mut WriteBatch, request: &AlarmRequest) -> AlarmResponse {
        let member = AlarmMember {
            member_id: request.member_id,
            alarm: request.alarm,
        };
        let key = MetaKey::Alarm {
            member_id: request.member_id,
            alarm: request.alarm,
        };
        let mut raised = self.raised.write().expect("alarm lock");
        let alarms = match AlarmAction::try_from(request.action) {
            Ok(AlarmAction::Get) => {
                drop(raised);
                let alarm = AlarmType::try_from(request.alarm).unwrap_or(AlarmType::None);
                return AlarmResponse {
                    header: None,
                    alarms: self.list(alarm),
                };
            }
            Ok(AlarmAction::Activate) if request.alarm != AlarmType::None as i32 => {
                if raised.insert((request.alarm, request.member_id)) {
                    tracing::warn!(
                        alarm = alarm_name(request.alarm),
                        from = format!("{:x}", request.member_id),
                        "alarm raised"
                    );
                    self.storage.meta().put(batch, key, &member.encode_to_vec());
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) if raised.remove(&(request.alarm, request.member_id)) => {
                tracing::warn!(
                    alarm = alarm_name(request.alarm),
                    from = format!("{:x}", request.member_id),
                    "alarm disarmed"
                );
                self.storage.meta().delete(batch, key);
                vec![member]
            }
            _ => Vec::new(),
        };
        AlarmResponse {
            header: None,
            alarms,
        }
    }
}

fn alarm_name(alarm: i32) -> &'static str {
    AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name())
}
