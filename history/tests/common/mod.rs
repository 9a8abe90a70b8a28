//! Builders for hand-made histories, event logs and watches.
#![allow(dead_code)]

use cairn_history::*;

pub fn kv(value: &str, create_revision: i64, mod_revision: i64, version: i64) -> KeyValue {
    KeyValue {
        value: value.to_string(),
        create_revision,
        mod_revision,
        version,
        lease_id: 0,
    }
}

pub fn kv_lease(
    value: &str,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease_id: i64,
) -> KeyValue {
    KeyValue {
        lease_id,
        ..kv(value, create_revision, mod_revision, version)
    }
}

pub fn op(
    client: u32,
    call_ns: u64,
    return_ns: u64,
    request: Request,
    outcome: Outcome,
) -> Operation {
    Operation {
        client,
        call_ns,
        return_ns,
        request,
        outcome,
    }
}

pub fn get(key: &str) -> Request {
    Request::Get {
        key: key.to_string(),
    }
}

pub fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.to_string(),
        value: value.to_string(),
        lease_id: 0,
    }
}

pub fn put_lease(key: &str, value: &str, lease_id: i64) -> Request {
    Request::Put {
        key: key.to_string(),
        value: value.to_string(),
        lease_id,
    }
}

pub fn delete(key: &str) -> Request {
    Request::Delete {
        key: key.to_string(),
    }
}

pub fn ok(response: Response) -> Outcome {
    Outcome::Ok(response)
}

pub fn got(revision: i64, kv: Option<KeyValue>) -> Outcome {
    Outcome::Ok(Response::Get { revision, kv })
}

pub fn put_ok(revision: i64) -> Outcome {
    Outcome::Ok(Response::Put { revision })
}

pub fn deleted(revision: i64, deleted: i64) -> Outcome {
    Outcome::Ok(Response::Delete { revision, deleted })
}

pub fn unknown() -> Outcome {
    Outcome::Unknown("timeout".to_string())
}

pub fn failed() -> Outcome {
    Outcome::Failed("unavailable".to_string())
}

pub fn put_event(
    key: &str,
    value: &str,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
) -> Event {
    Event {
        key: key.to_string(),
        value: Some(value.to_string()),
        mod_revision,
        create_revision,
        version,
        lease_id: 0,
        prev_kv: None,
    }
}

pub fn delete_event(key: &str, revision: i64) -> Event {
    Event {
        key: key.to_string(),
        value: None,
        mod_revision: revision,
        create_revision: 0,
        version: 0,
        lease_id: 0,
        prev_kv: None,
    }
}

pub fn assert_linearizable(result: LinearizabilityResult) {
    match result {
        LinearizabilityResult::Linearizable => {}
        LinearizabilityResult::NotLinearizable(report) => {
            panic!("expected linearizable, got:\n{report}")
        }
        other => panic!("expected linearizable, got {other:?}"),
    }
}

pub fn assert_not_linearizable(result: LinearizabilityResult) -> NotLinearizableReport {
    match result {
        LinearizabilityResult::NotLinearizable(report) => report,
        other => panic!("expected not linearizable, got {other:?}"),
    }
}
