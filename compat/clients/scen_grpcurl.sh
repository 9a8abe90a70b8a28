#!/usr/bin/env bash
# grpcurl scenarios. Usage: GRPCURL=... KIND=etcd|cairn PROTO_DIR=... scen_grpcurl.sh HOST:PORT
# Cairn is queried through gRPC reflection only. etcd 3.4 does not serve
# reflection, so for etcd the schema comes from PROTO_DIR/rpc.proto instead
# (a known asymmetry, printed as "~ " info lines, not compared). `list` is
# compared on the etcdserverpb.* services (the ones rpc.proto defines); other
# services appear as "~ " lines.
set -u
EP="$1"
if [ "$KIND" = etcd ]; then
  SCHEMA=(-import-path "$PROTO_DIR" -proto rpc.proto)
  echo "## scenario 00 schema-source"
  echo "~ etcd 3.4: schema from rpc.proto (no reflection); reflection probe:"
  "$GRPCURL" -plaintext "$EP" list 2>&1 | sed 's/^/~ /'
else
  SCHEMA=()
  echo "## scenario 00 schema-source"
  echo "~ cairn: schema from gRPC reflection"
fi
g() { timeout -k 5 30 "$GRPCURL" -plaintext "${SCHEMA[@]}" "$@" 2>&1; echo "exit $?"; }
norm() {
  sed -E -e 's/"(clusterId|memberId|raftTerm|leader|ID|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse)": "[0-9]+"/"\1": "<\1>"/' \
         -e 's/"version": "3\.[0-9.]+"/"version": "<VERSION>"/'
}
# etcd 3.6+'s Status fields, which 3.4 lacks, shown but not compared ("~ " lines).
info_36() {
  awk '/"(storageVersion|dbSizeQuota)"/ { print "~ " $0; next }
       /"downgradeInfo"/ { print "~ " $0; inner = ($0 !~ /\}[,]?$/); next }
       inner { print "~ " $0; if ($0 ~ /^  }/) inner = 0; next }
       { sub(/"<dbSizeInUse>",$/, "\"<dbSizeInUse>\""); print }'
}
# lease scenarios keep lease IDs (chosen by the request, not random)
norm_lease() {
  sed -E -e 's/"(clusterId|memberId|raftTerm)": "[0-9]+"/"\1": "<\1>"/'
}
# remaining TTL of lease 7 (granted 30 s in scenario 10, a few seconds earlier)
ttl_norm() { sed -E 's/"TTL": "(2[0-9]|30)"/"TTL": "<20..30>"/'; }
echo "## scenario 01 list"
g "$EP" list | while IFS= read -r l; do
  case "$l" in etcdserverpb.*|exit*) echo "$l" ;; *) echo "~ $l" ;; esac
done
echo "## scenario 02 describe etcdserverpb.KV"
g "$EP" describe etcdserverpb.KV
echo "## scenario 03 describe etcdserverpb.RangeRequest"
g "$EP" describe etcdserverpb.RangeRequest
echo "## scenario 04 KV/Put"
g -d '{"key":"Zm9v","value":"YmFy"}' "$EP" etcdserverpb.KV/Put | norm
echo "## scenario 05 KV/Range"
g -d '{"key":"Zm9v"}' "$EP" etcdserverpb.KV/Range | norm
echo "## scenario 06 KV/Txn"
g -d '{"compare":[{"key":"Zm9v","target":"VALUE","result":"EQUAL","value":"YmFy"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmF6","prevKv":true}}]}' "$EP" etcdserverpb.KV/Txn | norm
echo "## scenario 07 KV/Range bad revision"
g -d '{"key":"Zm9v","revision":"99"}' "$EP" etcdserverpb.KV/Range | norm
echo "## scenario 08 Maintenance/Status"
g "$EP" etcdserverpb.Maintenance/Status | norm | info_36
echo "## scenario 09 Cluster/MemberList"
g "$EP" etcdserverpb.Cluster/MemberList | norm
echo "## scenario 10 Lease/LeaseGrant needs=lease"
g -d '{"TTL":"30","ID":"7"}' "$EP" etcdserverpb.Lease/LeaseGrant | norm
echo "## scenario 11 Lease/LeaseTimeToLive granted ID 7"
g -d '{"ID":"7","keys":true}' "$EP" etcdserverpb.Lease/LeaseTimeToLive | norm_lease | ttl_norm
echo "## scenario 12 Lease/LeaseTimeToLive unknown ID"
g -d '{"ID":"12345","keys":true}' "$EP" etcdserverpb.Lease/LeaseTimeToLive | norm_lease
echo "## scenario 13 Lease/LeaseLeases"
g "$EP" etcdserverpb.Lease/LeaseLeases | norm_lease
echo "## scenario 14 Lease/LeaseKeepAlive ID 7"
g -d '{"ID":"7"}' "$EP" etcdserverpb.Lease/LeaseKeepAlive | norm_lease
echo "## scenario 15 Lease/LeaseKeepAlive unknown ID"
g -d '{"ID":"12345"}' "$EP" etcdserverpb.Lease/LeaseKeepAlive | norm_lease
echo "## scenario 16 Lease/LeaseRevoke unknown ID"
g -d '{"ID":"12345"}' "$EP" etcdserverpb.Lease/LeaseRevoke | norm_lease
echo "## scenario 17 Lease/LeaseGrant ID 7 again"
g -d '{"TTL":"30","ID":"7"}' "$EP" etcdserverpb.Lease/LeaseGrant | norm_lease
echo "## scenario 18 KV/Put with lease 7, LeaseTimeToLive keys, LeaseRevoke, KV/Range"
g -d '{"key":"bGVhc2Vk","value":"dg==","lease":"7"}' "$EP" etcdserverpb.KV/Put | norm_lease
g -d '{"ID":"7","keys":true}' "$EP" etcdserverpb.Lease/LeaseTimeToLive | norm_lease | ttl_norm
g -d '{"ID":"7"}' "$EP" etcdserverpb.Lease/LeaseRevoke | norm_lease
g -d '{"key":"bGVhc2Vk"}' "$EP" etcdserverpb.KV/Range | norm_lease
echo "## scenario 19 Lease/LeaseLeases after revoke"
g "$EP" etcdserverpb.Lease/LeaseLeases | norm_lease
