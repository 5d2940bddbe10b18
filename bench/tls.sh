#!/usr/bin/env bash
# The cost of TLS, side by side: kv and Redis 7, each once in plain text and once over TLS.
# Both use the same certificate (P-256, made here with openssl) and the same durability:
# kv's default (every write fsynced), and Redis with appendonly yes, appendfsync always.
# Rows (redis-benchmark, -d 16, random keys):
#   - SET -c 50, GET -c 50, GET -c 50 -P 16;
#   - GET -c 50 with a new connection per request (-k 0): the handshake's cost;
#   - the replication link: a new replica's full sync of the kv primary's keys, plain
#     against TLS (mutual, as kv's links are).
#
#   bash bench/tls.sh
#   REQUESTS=200000 SYNC_KEYS=500000 bash bench/tls.sh
#
# Everything runs on 127.0.0.1 with free ports, in one mktemp -d directory that is removed
# at exit together with every process started here. Progress goes to stderr, results to
# stdout.
set -euo pipefail

REQUESTS=${REQUESTS:-100000}    # per redis-benchmark row
HANDSHAKES=${HANDSHAKES:-5000}  # requests of the -k 0 row (one handshake each)
KEYSPACE=${KEYSPACE:-100000}    # -r
SYNC_KEYS=${SYNC_KEYS:-1000000} # keys loaded into each kv primary for the full-sync row
DEADLINE=${DEADLINE:-300}       # seconds, for every wait and every benchmark run

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
positive_ints REQUESTS HANDSHAKES KEYSPACE SYNC_KEYS DEADLINE
start_work tls

command -v openssl >/dev/null || die "openssl is needed to make the certificates"
REDIS_WHY=$(install_redis redis-benchmark) || true
have_redis redis-benchmark || die "Redis is needed: ${REDIS_WHY:-not installed}"

log "== building (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
KV="$ROOT/target/release/kv"

# --- certificates: one CA, one certificate for 127.0.0.1 used by every server --------------
CERTS="$WORK/certs"
mkdir -p "$CERTS"
(
    cd "$CERTS"
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench" \
        -addext "subjectAltName=IP:127.0.0.1" \
        -addext "extendedKeyUsage=serverAuth,clientAuth" \
        -keyout node.key -out node.csr 2>/dev/null
    openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -copy_extensions copy -days 30 -out node.pem 2>/dev/null
) || die "openssl could not make the certificates"
KV_TLS=(--tls-cert "$CERTS/node.pem" --tls-key "$CERTS/node.key" --tls-ca "$CERTS/ca.pem")

# kv_node NAME ROLE ARGS...: starts kv; sets K_PID, K_REPL, K_PORT (client port).
kv_node() {
    local name=$1 role=$2 line
    shift 2
    mkdir -p "$WORK/$name"
    "$KV" "$role" --db "$WORK/$name/kv.db" --listen 127.0.0.1:0 --resp 127.0.0.1:0 \
        --no-shell "$@" >"$WORK/$name/out" 2>"$WORK/$name/out.err" </dev/null &
    K_PID=$!
    PIDS+=("$K_PID")
    line=$(wait_for_line "$WORK/$name/out" 'ready \(port [0-9]+\)' "$K_PID" "kv $name")
    K_REPL=$(sed -E 's/.*\(port ([0-9]+)\).*/\1/' <<<"$line")
    line=$(wait_for_line "$WORK/$name/out" '^Clients \(Redis protocol\) on port [0-9]+' \
        "$K_PID" "kv $name")
    K_PORT=${line##* }
}

log "== servers: kv and Redis (appendfsync always), plain and TLS"
kv_node kv-plain primary
KV_PLAIN=$K_PORT KV_PLAIN_REPL=$K_REPL
kv_node kv-tls primary "${KV_TLS[@]}"
KV_TLS_PORT=$K_PORT KV_TLS_REPL=$K_REPL
start_redis redis-plain --appendonly yes --appendfsync always || die "redis did not start"
REDIS_PLAIN=$R_PORT
# Redis serves TLS on a second port; its plain port only answers start_redis's PING.
REDIS_TLS=$(free_port)
start_redis redis-tls --appendonly yes --appendfsync always --tls-port "$REDIS_TLS" \
    --tls-cert-file "$CERTS/node.pem" --tls-key-file "$CERTS/node.key" \
    --tls-ca-cert-file "$CERTS/ca.pem" --tls-auth-clients no || die "redis (TLS) did not start"

declare -A RPS
# bench ROW SERVER PORT TLS TEST N ARGS...
bench() {
    local row=$1 server=$2 port=$3 tls=$4 test=$5 n=$6 out="$WORK/bench.csv" data
    shift 6
    local tls_args=()
    [[ $tls == tls ]] && tls_args=(--tls --cacert "$CERTS/ca.pem")
    bounded redis-benchmark -h 127.0.0.1 -p "$port" ${tls_args[@]+"${tls_args[@]}"} \
        -t "$test" -n "$n" -d 16 --csv "$@" >"$out" 2>"$out.err" ||
        { cat "$out.err" >&2; die "redis-benchmark $row against $server failed"; }
    data=$(grep -v '^"test"' "$out" | tail -n 1 | tr -d '"')
    [[ -n $data ]] || die "no result from redis-benchmark against $server"
    RPS[$row,$server]=$(cut -d, -f2 <<<"$data")
    log "   $(printf '%-26s %-12s %10s rps' "$row" "$server" "${RPS[$row,$server]}")"
}
# row NAME TEST N ARGS...: the run against all four servers, one after another.
row() {
    local name=$1 test=$2 n=$3
    shift 3
    bench "$name" kv "$KV_PLAIN" plain "$test" "$n" "$@"
    bench "$name" kv-tls "$KV_TLS_PORT" tls "$test" "$n" "$@"
    bench "$name" redis "$REDIS_PLAIN" plain "$test" "$n" "$@"
    bench "$name" redis-tls "$REDIS_TLS" tls "$test" "$n" "$@"
}

log "== redis-benchmark: -d 16, $REQUESTS requests a row, -r $KEYSPACE"
ROWS=("SET -c 50" "GET -c 50" "GET -c 50 -P 16" "GET -c 50 -k 0 (n=$HANDSHAKES)")
row "${ROWS[0]}" set "$REQUESTS" -c 50 -r "$KEYSPACE"
row "${ROWS[1]}" get "$REQUESTS" -c 50 -r "$KEYSPACE"
row "${ROWS[2]}" get "$REQUESTS" -c 50 -P 16 -r "$KEYSPACE"
row "${ROWS[3]}" get "$HANDSHAKES" -c 50 -k 0 -r "$KEYSPACE"

# --- the replication link: full sync of SYNC_KEYS keys, plain and TLS ------------------------
# load PORT TLS: writes keys 0..SYNC_KEYS-1 (pipelined) into a kv primary.
load() {
    local tls_args=()
    [[ $2 == tls ]] && tls_args=(--tls --cacert "$CERTS/ca.pem")
    seq 0 $((SYNC_KEYS - 1)) | awk '{ printf "SET sync:%012d value-%d\n", $1, $1 }' |
        bounded redis-cli -h 127.0.0.1 -p "$1" ${tls_args[@]+"${tls_args[@]}"} --pipe \
            >"$WORK/load.out" 2>&1 || { cat "$WORK/load.out" >&2; die "loading keys failed"; }
}
# sync_secs NAME UPSTREAM ARGS...: seconds until a new replica has its snapshot.
sync_secs() {
    local name=$1 upstream=$2 t0 t1
    shift 2
    t0=$(date +%s.%N)
    kv_node "$name" replica --join "$upstream" "$@"
    wait_for_line "$WORK/$name/out" '^Snapshot received' "$K_PID" "kv $name" >/dev/null
    t1=$(date +%s.%N)
    kill "$K_PID"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
log "== full sync of $SYNC_KEYS keys to a new replica"
load "$KV_PLAIN" plain
load "$KV_TLS_PORT" tls
SYNC_PLAIN=$(sync_secs replica-plain "127.0.0.1:$KV_PLAIN_REPL")
log "   plain: $SYNC_PLAIN s"
SYNC_TLS=$(sync_secs replica-tls "127.0.0.1:$KV_TLS_REPL" "${KV_TLS[@]}")
log "   TLS:   $SYNC_TLS s"

# --- results ---------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "TLS cost, $(date -u +%Y-%m-%d), $(nproc) cores; Redis $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/')"
echo
echo "| row | kv | kv TLS | kv TLS/plain | Redis | Redis TLS | Redis TLS/plain | kv TLS / Redis TLS |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do
    kp=${RPS[$r,kv]} kt=${RPS[$r,kv-tls]} rp=${RPS[$r,redis]} rt=${RPS[$r,redis-tls]}
    printf '| %s | %.0f | %.0f | %s | %.0f | %.0f | %s | %s |\n' "$r" "$kp" "$kt" \
        "$(ratio "$kt" "$kp")" "$rp" "$rt" "$(ratio "$rt" "$rp")" "$(ratio "$kt" "$rt")"
done
echo
echo "Full sync of $SYNC_KEYS keys: plain $SYNC_PLAIN s, TLS $SYNC_TLS s ($(ratio "$SYNC_TLS" "$SYNC_PLAIN")x the time)"
