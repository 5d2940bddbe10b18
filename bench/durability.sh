#!/usr/bin/env bash
# What synchronous replication costs: SET -c 1 and SET -c 50 (redis-benchmark, -d 16)
# against a kv primary with one replica, asynchronous (the default) and with
# --sync-replicas 1, and against Redis 7 (appendfsync always) with one replica, which has
# no synchronous mode (WAIT per write is the closest). See bench/README.md.
#
#   bash bench/durability.sh
#   N_C1=10000 N_C50=200000 bash bench/durability.sh
#
# Everything runs on 127.0.0.1 with free ports, in one mktemp -d directory removed at exit
# with every process started here. Progress goes to stderr, the table to stdout.
set -euo pipefail

N_C1=${N_C1:-5000}      # requests of the -c 1 rows (one fsync, or more, each)
N_C50=${N_C50:-100000}  # requests of the -c 50 rows
DEADLINE=${DEADLINE:-300}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
positive_ints N_C1 N_C50 DEADLINE
start_work durability

REDIS_WHY=$(install_redis redis-benchmark) || true
have_redis redis-benchmark || die "redis-server and redis-benchmark are needed: $REDIS_WHY"

log "== building (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
KV="$ROOT/target/release/kv"

# start_kv NAME ARGS...: a kv primary (ARGS added) and one replica, in $WORK/NAME; sets
# PORT to the primary's client port.
start_kv() {
    local name=$1 line repl
    shift
    mkdir -p "$WORK/$name"
    "$KV" primary --db "$WORK/$name/p.db" --listen 127.0.0.1:0 --resp 127.0.0.1:0 --no-shell \
        "$@" >"$WORK/$name/p.out" 2>"$WORK/$name/p.err" </dev/null &
    PIDS+=($!)
    line=$(wait_for_line "$WORK/$name/p.out" '^Primary server ready \(port [0-9]+\)' $! "$name")
    repl=$(sed -E 's/.*\(port ([0-9]+)\).*/\1/' <<<"$line")
    line=$(wait_for_line "$WORK/$name/p.out" '^Clients \(Redis protocol\) on port [0-9]+' \
        "${PIDS[-1]}" "$name")
    PORT=${line##* }
    "$KV" replica --db "$WORK/$name/r.db" --listen 127.0.0.1:0 --join "127.0.0.1:$repl" \
        --no-shell >"$WORK/$name/r.out" 2>"$WORK/$name/r.err" </dev/null &
    PIDS+=($!)
    wait_for_line "$WORK/$name/r.out" '^Snapshot received' $! "$name replica" >/dev/null
}

# rps PORT CLIENTS N: requests/s of redis-benchmark SET.
rps() {
    timeout --kill-after=5 "$DEADLINE" redis-benchmark -h 127.0.0.1 -p "$1" -t set -c "$2" \
        -n "$3" -d 16 -r 100000 --csv 2>/dev/null | grep -v '^"test"' | tail -n 1 |
        tr -d '"' | cut -d, -f2
}

log "== kv, asynchronous replication (default)"
start_kv kv-async
KV_ASYNC=$PORT
log "== kv, --sync-replicas 1"
start_kv kv-sync --sync-replicas 1
KV_SYNC=$PORT
log "== redis $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/'), appendfsync always, one replica"
start_redis redis-primary --appendonly yes --appendfsync always || die "redis did not start"
REDIS=$R_PORT
start_redis redis-replica --appendonly yes --appendfsync always \
    --replicaof 127.0.0.1 "$REDIS" || die "the redis replica did not start"

declare -A RESULT
for row in "1 $N_C1" "50 $N_C50"; do
    read -r clients n <<<"$row"
    for server in KV_ASYNC KV_SYNC REDIS; do
        RESULT[$clients,$server]=$(rps "${!server}" "$clients" "$n")
        log "   SET -c $clients $server: ${RESULT[$clients,$server]} rps"
    done
done

echo "| row | kv async | kv --sync-replicas 1 | sync/async | Redis always + replica |"
echo "|---|---|---|---|---|"
for clients in 1 50; do
    a=${RESULT[$clients,KV_ASYNC]} s=${RESULT[$clients,KV_SYNC]} r=${RESULT[$clients,REDIS]}
    ratio=$(awk -v s="$s" -v a="$a" 'BEGIN { printf "%.2f", s / a }')
    echo "| SET -c $clients | $a | $s | $ratio | $r |"
done
