#!/usr/bin/env bash
# Client-port benchmark: kv over the Redis protocol against Redis 7 with the same
# durability (appendonly yes, appendfsync always), and Redis appendfsync everysec for
# reference; replication lag under a steady write rate; single-client write latency
# against a floor of one fsync plus one loopback round trip. See bench/README.md.
#
#   bash bench/resp.sh
#   REQUESTS=200000 LAG_SECS=20 bash bench/resp.sh
#
# Everything runs on 127.0.0.1 with free ports, in one mktemp -d directory (kv's and
# Redis's data on the same filesystem) that is removed at exit together with every
# process started here. Progress goes to stderr, results to stdout.
set -euo pipefail

REQUESTS=${REQUESTS:-100000}       # per redis-benchmark row
REQUESTS_C1=${REQUESTS_C1:-$REQUESTS} # SET/GET -c 1 rows (1 fsync per SET: the slow ones)
KEYSPACE=${KEYSPACE:-100000}       # -r: random keys key:000000000000 .. KEYSPACE-1
LAG_RATE=${LAG_RATE:-5000}         # writes/s during the lag measurement
LAG_SECS=${LAG_SECS:-10}
LAG_CONNS=${LAG_CONNS:-16}
LAG_POLL_US=${LAG_POLL_US:-0}      # pause between INFO polls of the replica (0: back to back)
MIXED_PAIRS=${MIXED_PAIRS:-20000}  # SET k / GET k pairs pipelined on one connection
DEADLINE=${DEADLINE:-300}          # seconds, for every wait and every benchmark run
KV_THREADS=${KV_THREADS:-}         # kv's --threads (empty: kv's default, one per core)
SYNC_KEYS=${SYNC_KEYS:-1000000}    # bench/full_sync.sh: keys of the full sync (0: skip it)
SYNC_BACKLOG=${SYNC_BACKLOG:-100000} # ...and entries of the partial resync after it

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# cleanup, log, die, alive, free_port, wait_for_line, install_redis, start_redis
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
positive_ints REQUESTS REQUESTS_C1 KEYSPACE LAG_RATE LAG_SECS LAG_CONNS DEADLINE MIXED_PAIRS
THREADS=()
if [[ -n $KV_THREADS ]]; then
    positive_ints KV_THREADS
    THREADS=(--threads "$KV_THREADS")
fi
[[ $LAG_POLL_US =~ ^[0-9]+$ ]] || {
    echo "LAG_POLL_US must be a whole number (got '$LAG_POLL_US')" >&2
    exit 2
}
start_work resp

command -v python3 >/dev/null || die "python3 is needed (free ports, the fsync floor)"

# --- Redis tools: installed when missing (root, apt-get) --------------------------------
REDIS_WHY=$(install_redis redis-benchmark) || true
HAVE_BENCH=0 HAVE_REDIS=0
command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null && HAVE_BENCH=1
((HAVE_BENCH)) && command -v redis-server >/dev/null && HAVE_REDIS=1
if ((!HAVE_REDIS)); then
    REDIS_WHY=${REDIS_WHY:-"redis-server not found after installing"}
    log "!! Redis rows skipped: $REDIS_WHY"
fi
((HAVE_BENCH)) || log "!! redis-benchmark is not available: no throughput rows at all"

# --- 1. build ------------------------------------------------------------------------------
log "== building (cargo build --release; --example lag)"
(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example lag)
KV="$ROOT/target/release/kv"
LAG="$ROOT/target/release/examples/lag"
[[ -x $KV && -x $LAG ]] || die "the build did not produce $KV and $LAG"

FS_DEV=$(df -PT "$WORK" | awk 'NR == 2 { print $1 " on " $7 }')
FS_TYPE=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
log "   data dirs under $WORK ($FS_DEV, $FS_TYPE), kv and Redis alike"

# --- 2. servers -----------------------------------------------------------------------------
mkdir -p "$WORK/kv"
log "== kv primary and replica"
"$KV" primary --db "$WORK/kv/p.db" --listen 127.0.0.1:0 --resp 127.0.0.1:0 --no-shell \
    ${THREADS[@]+"${THREADS[@]}"} \
    >"$WORK/kv/primary.out" 2>"$WORK/kv/primary.out.err" </dev/null &
KP_PID=$!
PIDS+=("$KP_PID")
line=$(wait_for_line "$WORK/kv/primary.out" '^Primary server ready \(port [0-9]+\)' "$KP_PID" "kv primary")
KP_REPL=$(sed -E 's/.*\(port ([0-9]+)\).*/\1/' <<<"$line")
line=$(wait_for_line "$WORK/kv/primary.out" '^Clients \(Redis protocol\) on port [0-9]+' "$KP_PID" "kv primary")
KP_PORT=${line##* }
"$KV" replica --db "$WORK/kv/r.db" --listen 127.0.0.1:0 --resp 127.0.0.1:0 \
    --join "127.0.0.1:$KP_REPL" --no-shell ${THREADS[@]+"${THREADS[@]}"} \
    >"$WORK/kv/replica.out" 2>"$WORK/kv/replica.out.err" </dev/null &
KR_PID=$!
PIDS+=("$KR_PID")
line=$(wait_for_line "$WORK/kv/replica.out" '^Clients \(Redis protocol\) on port [0-9]+' "$KR_PID" "kv replica")
KR_PORT=${line##* }
wait_for_line "$WORK/kv/replica.out" '^Snapshot received' "$KR_PID" "kv replica" >/dev/null
log "   primary: replication $KP_REPL, clients $KP_PORT; replica: clients $KR_PORT"

RA_PORT="" RE_PORT="" RAR_PORT="" RER_PORT=""
# Waits until the Redis replica on PORT has its link to its primary up.
wait_redis_link() {
    local end=$((SECONDS + DEADLINE))
    while ((SECONDS < end)); do
        redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null | tr -d '\r' |
            grep -q '^master_link_status:up' && return 0
        sleep 0.05
    done
    die "the Redis replica on port $1 did not connect within ${DEADLINE}s"
}
if ((HAVE_REDIS)); then
    REDIS_VERSION=$(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/')
    log "== redis $REDIS_VERSION: appendfsync always, appendfsync everysec"
    start_redis redis-always --appendonly yes --appendfsync always ||
        die "redis (appendfsync always) did not start"
    RA_PORT=$R_PORT
    start_redis redis-everysec --appendonly yes --appendfsync everysec ||
        die "redis (appendfsync everysec) did not start"
    RE_PORT=$R_PORT
    # Each Redis gets a replica configured like its primary, as kv's primary has one.
    start_redis redis-always-replica --appendonly yes --appendfsync always \
        --replicaof 127.0.0.1 "$RA_PORT" || die "the Redis replica (always) did not start"
    RAR_PORT=$R_PORT
    start_redis redis-everysec-replica --appendonly yes --appendfsync everysec \
        --replicaof 127.0.0.1 "$RE_PORT" || die "the Redis replica (everysec) did not start"
    RER_PORT=$R_PORT
    wait_redis_link "$RAR_PORT"
    wait_redis_link "$RER_PORT"
fi

# --- 3. redis-benchmark rows -------------------------------------------------------------------
declare -A RPS P50 # [row,server] -> requests/s, p50 latency (ms)

# bench ROW SERVER PORT TEST N ARGS...: one redis-benchmark run, CSV parsed.
bench() {
    local row=$1 server=$2 port=$3 test=$4 n=$5
    shift 5
    local out="$WORK/bench.csv" t0=$SECONDS
    if ! bounded redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$n" -d 16 --csv "$@" \
        >"$out" 2>"$out.err"; then
        cat "$out.err" >&2
        die "redis-benchmark $test $* against $server failed or passed ${DEADLINE}s"
    fi
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
    local data
    data=$(grep -v '^"test"' "$out" | tail -n 1 | tr -d '"')
    [[ -n $data ]] || die "no CSV result from redis-benchmark against $server: $(cat "$out")"
    RPS[$row,$server]=$(cut -d, -f2 <<<"$data")
    P50[$row,$server]=$(cut -d, -f5 <<<"$data")
    log "   $(printf '%-22s %-15s %10s rps  p50 %s ms  (%d s)' "$row" "$server" \
        "${RPS[$row,$server]}" "${P50[$row,$server]}" $((SECONDS - t0)))"
}

# bench_on WHERE ROW TEST N ARGS...: the same run against kv and both Redis, on their
# primaries (WHERE=primary) or on their replicas (WHERE=replica).
bench_on() {
    local where=$1 row=$2 test=$3 n=$4 kv=$KP_PORT always=$RA_PORT everysec=$RE_PORT
    shift 4
    [[ $where == replica ]] && kv=$KR_PORT always=$RAR_PORT everysec=$RER_PORT
    bench "$row" kv "$kv" "$test" "$n" "$@"
    if ((HAVE_REDIS)); then
        bench "$row" redis-always "$always" "$test" "$n" "$@"
        bench "$row" redis-everysec "$everysec" "$test" "$n" "$@"
    fi
}

info_field() { # PORT FIELD: a numeric field of INFO replication
    redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null | tr -d '\r' |
        awk -F: -v f="$2" '$1 == f { print $2 }'
}
# Waits until the kv replica has applied everything the primary has.
wait_caught_up() {
    local end=$((SECONDS + DEADLINE)) head applied
    while ((SECONDS < end)); do
        head=$(info_field "$KP_PORT" master_repl_offset)
        applied=$(info_field "$KR_PORT" slave_repl_offset)
        if [[ -n $head && $head == "$applied" ]]; then
            log "   replica caught up at seq $applied"
            return 0
        fi
        sleep 0.05
    done
    die "the kv replica did not catch up within ${DEADLINE}s (primary $head, replica $applied)"
}

# p50 (us) of 1,000 x (4 KiB write + fdatasync) on the data filesystem: the fsync floor.
fsync_probe() {
    bounded python3 - "$WORK/fsync.probe" <<'PY'
import os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
size = 4 << 20
os.write(fd, b"\0" * size)  # preallocated: overwrites, as SQLite reuses its WAL
os.fsync(fd)
buf = b"x" * 4096
lat = []
for i in range(1000):
    os.lseek(fd, (i * 4096) % size, 0)
    t = time.perf_counter_ns()
    os.write(fd, buf)
    os.fdatasync(fd)
    lat.append(time.perf_counter_ns() - t)
os.close(fd)
os.unlink(path)
lat.sort()
print(f"{lat[len(lat) // 2] / 1000:.0f}")
PY
}

ROWS=()
FSYNC_BEFORE="" FSYNC_AFTER=""
if ((HAVE_BENCH)); then
    log "== redis-benchmark: -d 16, $REQUESTS requests per row (-c 1 rows: $REQUESTS_C1), -r $KEYSPACE"
    SET_C1="SET -c 1"
    ((REQUESTS_C1 != REQUESTS)) && SET_C1="SET -c 1 (n=$REQUESTS_C1)"
    GET_C1="GET -c 1"
    ((REQUESTS_C1 != REQUESTS)) && GET_C1="GET -c 1 (n=$REQUESTS_C1)"
    # The floor's parts next to kv's single-client SET, as the disk's speed drifts: an
    # fsync probe before and after, and the round trip through kv (PING, one client).
    log "   fsync probe (1,000 x 4 KiB write + fdatasync in $WORK)"
    FSYNC_BEFORE=$(fsync_probe)
    bench "PING -c 1" kv "$KP_PORT" ping_mbulk 20000 -c 1
    bench "$SET_C1" kv "$KP_PORT" set "$REQUESTS_C1" -c 1 -r "$KEYSPACE"
    FSYNC_AFTER=$(fsync_probe)
    log "   fsync p50: $FSYNC_BEFORE us before, $FSYNC_AFTER us after"
    if ((HAVE_REDIS)); then
        bench "$SET_C1" redis-always "$RA_PORT" set "$REQUESTS_C1" -c 1 -r "$KEYSPACE"
        bench "$SET_C1" redis-everysec "$RE_PORT" set "$REQUESTS_C1" -c 1 -r "$KEYSPACE"
    fi
    bench_on primary "SET -c 50" set "$REQUESTS" -c 50 -r "$KEYSPACE"
    bench_on primary "SET -c 50 -P 16" set "$REQUESTS" -c 50 -P 16 -r "$KEYSPACE"
    # GETs read the keys the SET rows wrote (same -r key space).
    bench_on primary "$GET_C1" get "$REQUESTS_C1" -c 1 -r "$KEYSPACE"
    bench_on primary "GET -c 50" get "$REQUESTS" -c 50 -r "$KEYSPACE"
    bench_on primary "GET -c 50 -P 16" get "$REQUESTS" -c 50 -P 16 -r "$KEYSPACE"
    wait_caught_up
    bench_on replica "GET -c 50 replica" get "$REQUESTS" -c 50 -r "$KEYSPACE"
    bench_on replica "GET -c 50 -P 16 replica" get "$REQUESTS" -c 50 -P 16 -r "$KEYSPACE"
    ROWS=("$SET_C1" "SET -c 50" "SET -c 50 -P 16" "$GET_C1" "GET -c 50" "GET -c 50 -P 16"
        "GET -c 50 replica" "GET -c 50 -P 16 replica")
fi

# --- 3b. a pipeline that alternates SET k / GET k on one connection ------------------------------
# Seconds to send MIXED_PAIRS pairs in one go and read every reply (each GET must return
# the value its SET wrote).
mixed_pipeline() {
    bounded python3 - "$1" "$MIXED_PAIRS" <<'PY'
import socket, sys, time
port, pairs = int(sys.argv[1]), int(sys.argv[2])
def cmd(*args):
    return b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in args])
request = b"".join(cmd(b"SET", b"mixed:%d" % i, b"v%d" % i) + cmd(b"GET", b"mixed:%d" % i)
                   for i in range(pairs))
expected = b"".join(b"+OK\r\n$%d\r\nv%d\r\n" % (len(b"v%d" % i), i) for i in range(pairs))
s = socket.create_connection(("127.0.0.1", port))
t = time.perf_counter()
s.sendall(request)
got = bytearray()
while len(got) < len(expected):
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    got += chunk
elapsed = time.perf_counter() - t
if bytes(got) != expected:
    sys.exit("wrong replies from port %d" % port)
print(f"{elapsed:.3f}")
PY
}
MIXED_KV="" MIXED_REDIS=""
log "== $MIXED_PAIRS pipelined SET k / GET k pairs on one connection"
MIXED_KV=$(mixed_pipeline "$KP_PORT") || die "the mixed pipeline against kv failed"
log "   kv: $MIXED_KV s"
if ((HAVE_REDIS)); then
    MIXED_REDIS=$(mixed_pipeline "$RA_PORT") || die "the mixed pipeline against Redis failed"
    log "   redis-always: $MIXED_REDIS s"
fi

# --- 4. replication lag -------------------------------------------------------------------------
wait_caught_up
log "== replication lag: $LAG_RATE writes/s for $LAG_SECS s on $LAG_CONNS connections"
bounded "$LAG" --primary "127.0.0.1:$KP_PORT" --replica "127.0.0.1:$KR_PORT" \
    --primary-db "$WORK/kv/p.db" --rate "$LAG_RATE" --secs "$LAG_SECS" \
    --conns "$LAG_CONNS" --poll-us "$LAG_POLL_US" >"$WORK/lag.out" || die "the lag measurement failed"
declare -A LAGR
while IFS='=' read -r k v; do
    LAGR[$k]=$v
done <"$WORK/lag.out"

# --- 5. the floor: a bare loopback round trip (python echo server in its own process,
# 5,000 pings), for reference next to the round trip through kv ---------------------------
log "== floor: loopback ping-pong"
((HAVE_BENCH)) || FSYNC_BEFORE=$(fsync_probe)
LOOP_P50=$(bounded python3 - <<'PY'
import os, socket, time
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
if os.fork() == 0:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(64)
        if not d:
            os._exit(0)
        c.sendall(d)
srv.close()
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat = []
for _ in range(5000):
    t = time.perf_counter_ns()
    s.sendall(b"PING\r\n")
    s.recv(64)
    lat.append(time.perf_counter_ns() - t)
s.close()
os.wait()
lat.sort()
print(f"{lat[len(lat) // 2] / 1000:.0f}")
PY
)

# --- 5b. full sync of a new replica and catch-up of a stopped one: bench/full_sync.sh,
# after everything above has stopped competing for the disk ------------------------------
SYNC_OUT=""
if [[ $SYNC_KEYS != 0 ]]; then
    log "== full sync of $SYNC_KEYS keys and catch-up on $SYNC_BACKLOG entries (bench/full_sync.sh)"
    SYNC_OUT=$(KEYS=$SYNC_KEYS BACKLOG=$SYNC_BACKLOG DEADLINE=$DEADLINE \
        bash "$ROOT/bench/full_sync.sh" 2>"$WORK/full_sync.err") ||
        { tail -n 20 "$WORK/full_sync.err" >&2; die "bench/full_sync.sh failed"; }
fi

# --- 6. report --------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
us() { awk -v m="$1" 'BEGIN { printf "%.0f", m * 1000 }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "met" : "NOT met" }'; }
rps() { printf '%s' "${RPS[$1,$2]:--}"; }
p50() { printf '%s' "${P50[$1,$2]:--}"; }

echo
echo "kv over the Redis protocol vs Redis $([[ $HAVE_REDIS == 1 ]] && echo "$REDIS_VERSION" || echo "(not run)")"
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -r)"
echo "data: kv and Redis under $WORK ($FS_DEV, $FS_TYPE); loopback only"
echo "redis-benchmark -d 16, -r $KEYSPACE on SET and GET rows, $REQUESTS requests per row ($REQUESTS_C1 for -c 1)"
echo "each system: a primary with one replica configured alike (kv synchronous=FULL; Redis appendonly, appendfsync as named)"
echo "rows named 'replica' read from the replica; the others use the primary"
echo "kv threads per node: ${KV_THREADS:-one per core (the default)}; Redis: one (its default)"
((HAVE_REDIS)) || echo "Redis rows skipped: $REDIS_WHY"
echo
fmt='%-20s | %10s | %16s | %11s | %18s | %10s | %14s | %16s\n'
# shellcheck disable=SC2059
printf "$fmt" row "kv rps" "Redis always rps" "kv/Redis" "Redis everysec rps" "kv p50 ms" "always p50 ms" "everysec p50 ms"
# shellcheck disable=SC2059
printf "$fmt" -------------------- ---------- ---------------- ----------- ------------------ ---------- -------------- ----------------
if ((HAVE_BENCH)); then
    for row in "${ROWS[@]}"; do
        kv_rps=$(rps "$row" kv)
        ra_rps=$(rps "$row" redis-always)
        # shellcheck disable=SC2059
        printf "$fmt" "$row" "$kv_rps" "$ra_rps" \
            "$([[ $ra_rps != - ]] && ratio "$kv_rps" "$ra_rps" || echo -)" \
            "$(rps "$row" redis-everysec)" "$(p50 "$row" kv)" \
            "$(p50 "$row" redis-always)" "$(p50 "$row" redis-everysec)"
    done
else
    echo "no rows: redis-benchmark is not available"
fi

echo
echo "$MIXED_PAIRS pipelined SET k / GET k pairs on one connection (every reply checked)"
echo "  kv: $MIXED_KV s; Redis always: ${MIXED_REDIS:--} s; kv/Redis time:" \
    "$([[ -n $MIXED_REDIS ]] && ratio "$MIXED_KV" "$MIXED_REDIS" || echo -)x"

echo
echo "replication lag, ack on the primary -> applied on the replica"
echo "  writes: ${LAGR[writes]} SETs on ${LAGR[conns]} connections, target ${LAGR[target_rate]}/s," \
    "achieved ${LAGR[achieved_rate]}/s (schedule slip p99 ${LAGR[slip_p99_us]} us)"
echo "  lag us (upper bound): p50 ${LAGR[lag_p50_us]}, p99 ${LAGR[lag_p99_us]}, max ${LAGR[lag_max_us]}"
echo "  lag us (lower bound): p50 ${LAGR[lag_low_p50_us]}, p99 ${LAGR[lag_low_p99_us]}, max ${LAGR[lag_low_max_us]}"
echo "  resolution: INFO replication polled $( ((LAG_POLL_US == 0)) && echo "back to back" ||
    echo "every $LAG_POLL_US us + round trip"), ${LAGR[polls]} polls," \
    "round trip p50 ${LAGR[poll_p50_us]} us, p99 ${LAGR[poll_p99_us]} us"

echo
echo "single-client write latency vs the floor (one fsync + one round trip)"
FSYNC_P50=$FSYNC_BEFORE
[[ -n $FSYNC_AFTER && $FSYNC_AFTER -lt $FSYNC_P50 ]] && FSYNC_P50=$FSYNC_AFTER
echo "  fsync (4 KiB write + fdatasync, same filesystem) p50: ${FSYNC_BEFORE} us before kv's SET -c 1," \
    "${FSYNC_AFTER:--} us after; the floor uses the lower, $FSYNC_P50 us"
echo "  bare loopback round trip (python echo) p50: $LOOP_P50 us"
FLOOR="" KV_SET_P50=""
if ((HAVE_BENCH)); then
    PING_P50=$(us "${P50[PING -c 1,kv]}")
    FLOOR=$((FSYNC_P50 + PING_P50))
    KV_SET_P50=$(us "${P50[$SET_C1,kv]}")
    echo "  kv PING -c 1 round trip p50: $PING_P50 us"
    echo "  floor = fsync + kv PING: $FLOOR us; kv SET -c 1 p50: $KV_SET_P50 us;" \
        "ratio $(ratio "$KV_SET_P50" "$FLOOR")" \
        "(vs fsync + bare loopback $((FSYNC_P50 + LOOP_P50)) us: $(ratio "$KV_SET_P50" $((FSYNC_P50 + LOOP_P50))))"
fi

if [[ -n $SYNC_OUT ]]; then
    echo
    echo "$SYNC_OUT" | sed '/^$/d'
fi

echo
echo "targets (issue 13; ratios against Redis appendfsync always, both with a replica)"
tfmt='  %-52s %-10s %s\n'
# target NAME VALUE LIMIT [max]: one line; "max" when VALUE must stay at or under LIMIT.
target() {
    local v=$2 verdict
    if [[ -z $v || $v == - ]]; then
        verdict="not measured"
    elif [[ ${4:-} == max ]]; then
        verdict=$(verdict "$3" "$v")
    else
        verdict=$(verdict "$v" "$3")
    fi
    # shellcheck disable=SC2059
    printf "$tfmt" "$1" "${v:--}" "$verdict"
}
vs_redis() { # ROW: kv/Redis-always requests/s, or "-"
    [[ -n ${RPS[$1,kv]:-} && -n ${RPS[$1,redis-always]:-} ]] &&
        ratio "${RPS[$1,kv]}" "${RPS[$1,redis-always]}" || echo -
}
if ((HAVE_BENCH)); then
    target "SET -c 50 >= 1.0x (goal 1.5x)" "$(vs_redis "SET -c 50")" 1.0
    target "$SET_C1 >= 0.9x" "$(vs_redis "$SET_C1")" 0.9
    target "GET -c 50 on the replica >= 0.9x" "$(vs_redis "GET -c 50 replica")" 0.9
    target "GET -c 50 -P 16 on the replica >= 0.5x" "$(vs_redis "GET -c 50 -P 16 replica")" 0.5
fi
if [[ -n $MIXED_REDIS ]]; then
    target "mixed SET/GET pipeline, time <= 2x Redis's" "$(ratio "$MIXED_KV" "$MIXED_REDIS")" 2 max
fi
target "replication lag p99 <= 1000 us (upper bound)" "${LAGR[lag_p99_us]}" 1000 max
if [[ -n $SYNC_OUT ]]; then
    r=$(sed -nE "s/.*that is ([0-9.]+) of the full sync's time.*/\1/p" <<<"$SYNC_OUT")
    target "partial resync of $SYNC_BACKLOG / full sync of $SYNC_KEYS <= 0.20" "$r" 0.20 max
fi
if [[ -n $FLOOR ]]; then
    target "single-client write p50 <= 1.3x the floor" "$(ratio "$KV_SET_P50" "$FLOOR")" 1.3 max
fi
