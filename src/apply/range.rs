//! Range: read a key or a range at a revision, with etcd's limit, filter and sort rules.

use std::cmp::Ordering;

use crate::error::EtcdError;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::proto::mvccpb::KeyValue;

pub fn range(view: &impl KvRead, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    let order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let requested_limit = usize::try_from(r.limit).unwrap_or(0);
    // Sorting and filtering need every key; otherwise fetch one extra to learn `more`.
    let fetch_limit = if order != SortOrder::None || filtered || requested_limit == 0 {
        0
    } else {
        requested_limit.saturating_add(1)
    };
    let result = view.range(
        &r.key,
        RangeEnd::from_request(&r.range_end),
        RangeOptions {
            limit: fetch_limit,
            rev: r.revision,
            count_only: r.count_only,
        },
    )?;
    let mut kvs = result.kvs;
    if filtered {
        kvs.retain(|kv| {
            (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
        });
    }
    // etcd: a sort target other than the key with no order means ascending.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    if order != SortOrder::None {
        let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| by(b, a));
        } else {
            kvs.sort_by(by);
        }
    }
    let mut more = false;
    if requested_limit > 0 && kvs.len() > requested_limit {
        kvs.truncate(requested_limit);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(super::header(result.rev)),
        kvs,
        more,
        count: result.count as i64,
    })
}
