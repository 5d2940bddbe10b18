#!/usr/bin/env bash
# Memory under a flood of large pipelined writes: CLIENTS connections each send SETS SETs
# of V-byte values (default 24 x 10 x 8 MiB) without reading a reply until they are all
# written; the primary's peak RSS, the replies (+OK / -ERR / none), and a check that every
# acknowledged write is stored with its exact value. Then the same against Redis 7 with
# appendonly yes, appendfsync always. See bench/README.md.
#
#   bash bench/flood.sh
#   V=15728640 bash bench/flood.sh          # 15 MiB values
#   CLIENTS=4 SETS=4 V=1048576 bash bench/flood.sh   # a quick look
#
# Everything runs on 127.0.0.1 with free ports, in one mktemp -d directory that is
# removed at exit together with every process started here. Progress and details go to
# stderr, the result table to stdout.
set -euo pipefail

CLIENTS=${CLIENTS:-24}
SETS=${SETS:-10}         # per client
V=${V:-8388608}          # value bytes
REPLICA=${REPLICA:-1}    # 1: kv primary with one replica, Redis primary with one replica
REDIS=${REDIS:-1}        # 0: kv only
DEADLINE=${DEADLINE:-600} # seconds: the flood, every wait, every verification
SAMPLE_MS=${SAMPLE_MS:-100} # RSS sampling period
for var in REPLICA REDIS; do
    [[ ${!var} == 0 || ${!var} == 1 ]] || {
        echo "$var must be 0 or 1 (got '${!var}')" >&2
        exit 2
    }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# cleanup, log, die, alive, proc_kb, mb, free_port, wait_for_line, have_redis,
# install_redis, start_redis
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
positive_ints CLIENTS SETS V DEADLINE SAMPLE_MS
start_work flood
# Stops one process this script started (TERM, KILL after 10 s) and reaps it.
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# One value from an SQLite file (read-only): the sqlite3 CLI, else python3.
sql_value() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 -readonly -cmd '.timeout 5000' "$1" "$2" 2>/dev/null || true
    else
        python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=5)
r = c.execute(sys.argv[2]).fetchone()
print("" if r is None or r[0] is None else r[0])' "$1" "$2" 2>/dev/null || true
    fi
}
# A field of INFO replication from redis on PORT.
info_field() {
    redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null | tr -d '\r' |
        awk -F: -v f="$2" '$1 == f { print $2 }'
}
# key=value lines of FILE into the associative array named by $2.
load_kv() {
    local -n into=$2
    local k v
    while IFS='=' read -r k v; do
        # shellcheck disable=SC2034 # a nameref: the caller's array
        into["$k"]=$v
    done <"$1"
}

# --- disk -----------------------------------------------------------------------------
TOTAL=$((CLIENTS * SETS * V))
# kv writes each value twice (kv table + log) plus up to a batch in its WAL, on each node;
# Redis once into each node's AOF. The two systems run one after the other, each node's
# files removed in between.
NODES=$((1 + REPLICA))
NEED=$((NODES * 3 * TOTAL + (1 << 30)))
AVAIL=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') * 1024))
log "== flood: $CLIENTS clients x $SETS SETs x $V bytes = $(mb $((TOTAL / 1024))) MB of values"
log "   $WORK: $(mb $((AVAIL / 1024))) MB free, about $(mb $((NEED / 1024))) MB needed"
((AVAIL >= NEED)) || die "not enough disk under ${TMPDIR:-/tmp} (set TMPDIR elsewhere, or lower CLIENTS/SETS/V)"

# --- 1. build ------------------------------------------------------------------------------
log "== building (cargo build --release --bins --examples)"
(cd "$ROOT" && cargo build --release --quiet --bins --examples)
KV="$ROOT/target/release/kv"
FLOOD="$ROOT/target/release/examples/flood"
[[ -x $KV && -x $FLOOD ]] || die "the build did not produce $KV and $FLOOD"

# flood_run NAME SERVER_PID PORT: the flood against PORT while sampling SERVER_PID's
# memory; sets PEAK_KB (VmHWM at the end, or the highest sampled VmRSS if the server is
# gone) and fills FLOOD_OUT (the client's key=value lines).
declare -A FLOOD_OUT
flood_run() {
    local name=$1 server=$2 port=$3 pid rss max_rss=0 hwm end rc=0
    log "== $name: flood"
    "$FLOOD" run --addr "127.0.0.1:$port" --status "$WORK/$name.status" \
        --clients "$CLIENTS" --sets "$SETS" --value-bytes "$V" --deadline-secs "$DEADLINE" \
        >"$WORK/$name.flood" </dev/null &
    pid=$!
    PIDS+=("$pid")
    end=$((SECONDS + DEADLINE + 30))
    local tick
    tick=$(awk -v ms="$SAMPLE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
    while alive "$pid" && ((SECONDS < end)); do
        rss=$(proc_kb "$server" VmRSS)
        ((rss > max_rss)) && max_rss=$rss
        sleep "$tick"
    done
    if alive "$pid"; then
        log "   the flood client outlived its deadline; stopping it"
        stop "$pid"
    else
        wait "$pid" 2>/dev/null || rc=$?
    fi
    hwm=$(proc_kb "$server" VmHWM)
    if alive "$server"; then
        PEAK_KB=$hwm
        ((PEAK_KB >= max_rss)) || PEAK_KB=$max_rss
        log "   $name: VmHWM $(mb "$hwm") MB, highest sampled VmRSS $(mb "$max_rss") MB," \
            "VmRSS now $(mb "$(proc_kb "$server" VmRSS)") MB"
    else
        PEAK_KB=$max_rss
        log "   !! $name: the server is gone; highest sampled VmRSS $(mb "$max_rss") MB"
    fi
    FLOOD_OUT=()
    [[ -s $WORK/$name.flood ]] || die "$name: the flood client failed (status $rc)"
    load_kv "$WORK/$name.flood" FLOOD_OUT
}

declare -A ROW # [system,field]
# record SYSTEM: keeps FLOOD_OUT, CHECK and PEAK_KB for the table.
record() {
    local f
    for f in acknowledged refused other no_reply first_error first_write_error elapsed_s; do
        ROW[$1,$f]=${FLOOD_OUT[$f]-}
    done
    ROW[$1,lost]=${CHECK[lost]--}
    ROW[$1,unacked_present]=${CHECK[unacked_present]--}
    ROW[$1,peak]=$(mb "$PEAK_KB")
}

# --- 2. kv ----------------------------------------------------------------------------------
mkdir -p "$WORK/kv"
log "== kv: primary$( ((REPLICA)) && echo " and one replica")"
"$KV" primary --db "$WORK/kv/p.db" --listen 127.0.0.1:0 --resp 127.0.0.1:0 --no-shell \
    >"$WORK/kv/primary.out" 2>"$WORK/kv/primary.out.err" </dev/null &
KP_PID=$!
PIDS+=("$KP_PID")
line=$(wait_for_line "$WORK/kv/primary.out" '^Primary server ready \(port [0-9]+\)' "$KP_PID" "kv primary")
KP_REPL=$(sed -E 's/.*\(port ([0-9]+)\).*/\1/' <<<"$line")
line=$(wait_for_line "$WORK/kv/primary.out" '^Clients \(Redis protocol\) on port [0-9]+' "$KP_PID" "kv primary")
KP_PORT=${line##* }
KR_PID=""
if ((REPLICA)); then
    "$KV" replica --db "$WORK/kv/r.db" --listen 127.0.0.1:0 --join "127.0.0.1:$KP_REPL" \
        --no-shell >"$WORK/kv/replica.out" 2>"$WORK/kv/replica.out.err" </dev/null &
    KR_PID=$!
    PIDS+=("$KR_PID")
    wait_for_line "$WORK/kv/replica.out" '^Snapshot received' "$KR_PID" "kv replica" >/dev/null
fi
sleep 0.5
log "   primary: replication port $KP_REPL, clients $KP_PORT; VmRSS before $(mb "$(proc_kb "$KP_PID" VmRSS)") MB"

flood_run kv "$KP_PID" "$KP_PORT"
declare -A CHECK=()
if alive "$KP_PID" && ((REPLICA)); then
    head=$(sql_value "$WORK/kv/p.db" 'SELECT coalesce(max(seq), 0) FROM log')
    log "   kv: waiting for the replica to apply up to seq ${head:-?}"
    t0=$SECONDS end=$((SECONDS + DEADLINE)) applied=""
    while ((SECONDS < end)) && alive "$KR_PID"; do
        applied=$(sql_value "$WORK/kv/r.db" \
            "SELECT coalesce((SELECT value FROM meta WHERE name = 'applied_seq'), 0)")
        [[ -n $head && $applied == "$head" ]] && break
        sleep 0.2
    done
    log "   kv replica: applied seq ${applied:-?} of ${head:-?} ($((SECONDS - t0)) s after the flood);" \
        "VmHWM $(mb "$(proc_kb "$KR_PID" VmHWM)") MB"
    alive "$KR_PID" || log "   !! kv replica exited: $(tail -n 3 "$WORK/kv/replica.out.err" 2>/dev/null)"
fi
grep -E 'WARN|ERROR' "$WORK/kv/primary.out.err" | head -n 5 | sed 's/^/   primary log: /' >&2 || true
log "== kv: verifying the acknowledged writes in $WORK/kv/p.db"
bounded "$FLOOD" verify-db --db "$WORK/kv/p.db" --status "$WORK/kv.status" --value-bytes "$V" \
    --deadline-secs "$DEADLINE" >"$WORK/kv.check" || die "verifying kv's database failed"
load_kv "$WORK/kv.check" CHECK
record kv
log "   kv files (MB): $(cd "$WORK/kv" && du -m -- *.db* | awk '{ printf "%s %s  ", $2, $1 }')"
[[ -n $KR_PID ]] && stop "$KR_PID"
stop "$KP_PID"
rm -rf "$WORK/kv" # free the disk before Redis

# --- 3. Redis -------------------------------------------------------------------------------
REDIS_NOTE=""
if ((!REDIS)); then
    REDIS_NOTE="not run (REDIS=0)"
else
    # shellcheck disable=SC2119 # no tools needed beyond redis-server and redis-cli
    REDIS_NOTE=$(install_redis) || true
    have_redis || REDIS_NOTE=${REDIS_NOTE:-"redis-server not found after installing"}
    have_redis && REDIS_NOTE=""
fi
if [[ -z $REDIS_NOTE ]]; then
    REDIS_VERSION=$(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/')
    log "== redis $REDIS_VERSION: appendonly yes, appendfsync always$( ((REPLICA)) && echo ", one replica")"
    start_redis redis-primary --appendonly yes --appendfsync always ||
        die "redis primary did not start"
    RP_PID=$R_PID RP_PORT=$R_PORT
    RR_PID="" RR_PORT=""
    if ((REPLICA)); then
        start_redis redis-replica --appendonly yes --appendfsync always \
            --replicaof 127.0.0.1 "$RP_PORT" || die "redis replica did not start"
        RR_PID=$R_PID RR_PORT=$R_PORT
        end=$((SECONDS + DEADLINE))
        until [[ $(info_field "$RR_PORT" master_link_status) == up ]]; do
            ((SECONDS < end)) || die "redis replica: no link within ${DEADLINE}s"
            sleep 0.05
        done
    fi
    sleep 0.5
    log "   primary: port $RP_PORT; VmRSS before $(mb "$(proc_kb "$RP_PID" VmRSS)") MB"

    flood_run redis "$RP_PID" "$RP_PORT"
    CHECK=()
    if [[ -n $RR_PID ]] && alive "$RP_PID"; then
        t0=$SECONDS end=$((SECONDS + DEADLINE))
        while ((SECONDS < end)) && alive "$RR_PID"; do
            head=$(info_field "$RP_PORT" master_repl_offset)
            applied=$(info_field "$RR_PORT" slave_repl_offset)
            [[ -n $head && $head == "$applied" ]] && break
            sleep 0.2
        done
        log "   redis replica: offset ${applied:-?} of ${head:-?} ($((SECONDS - t0)) s after the flood);" \
            "VmHWM $(mb "$(proc_kb "$RR_PID" VmHWM)") MB;" \
            "$(grep -c 'overcoming of output buffer limits' "$WORK/redis-primary/redis.log" || true)" \
            "replica disconnections for output buffer limits"
    fi
    if alive "$RP_PID"; then
        log "== redis: verifying the acknowledged writes with GET"
        bounded "$FLOOD" verify-get --addr "127.0.0.1:$RP_PORT" --status "$WORK/redis.status" \
            --value-bytes "$V" --deadline-secs "$DEADLINE" >"$WORK/redis.check" ||
            die "verifying Redis failed"
        load_kv "$WORK/redis.check" CHECK
    else
        log "   !! redis primary is gone: cannot verify"
    fi
    record redis
    log "   redis files: $(du -sm "$WORK/redis-primary" | cut -f1) MB (primary)"
    [[ -n $RR_PID ]] && stop "$RR_PID"
    stop "$RP_PID"
fi

# --- 4. table -------------------------------------------------------------------------------
echo
echo "flood: $CLIENTS clients x $SETS pipelined SETs x $V-byte values ($(nproc) cores," \
    "$(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo) RAM)"
echo "kv: primary$( ((REPLICA)) && echo " + 1 replica"); Redis${REDIS_VERSION:+ $REDIS_VERSION}:" \
    "appendonly yes, appendfsync always$( ((REPLICA)) && echo ", + 1 replica")"
fmt='%-6s | %7s | %11s | %11s | %12s | %7s | %8s | %4s | %11s | %9s\n'
# shellcheck disable=SC2059
printf "$fmt" system clients sets/client "value bytes" acknowledged refused "no reply" lost \
    "peak RSS MB" "elapsed s"
# shellcheck disable=SC2059
printf "$fmt" ------ ------- ----------- ----------- ------------ ------- -------- ---- \
    ----------- ---------
LOST=0
for sys in kv redis; do
    if [[ $sys == redis && -n $REDIS_NOTE ]]; then
        # shellcheck disable=SC2059
        printf "$fmt" redis "$CLIENTS" "$SETS" "$V" - - - - - -
        echo "redis: $REDIS_NOTE"
        continue
    fi
    # shellcheck disable=SC2059
    printf "$fmt" "$sys" "$CLIENTS" "$SETS" "$V" "${ROW[$sys,acknowledged]}" \
        "${ROW[$sys,refused]}" "${ROW[$sys,no_reply]}" \
        "${ROW[$sys,lost]}" "${ROW[$sys,peak]}" "${ROW[$sys,elapsed_s]}"
    [[ ${ROW[$sys,lost]} == 0 ]] || LOST=1
done
for sys in kv redis; do
    if [[ -n ${ROW[$sys,first_error]-} ]]; then
        echo "$sys first error reply: ${ROW[$sys,first_error]}"
    fi
    if [[ -n ${ROW[$sys,first_write_error]-} ]]; then
        echo "$sys first write error: ${ROW[$sys,first_write_error]}"
    fi
    if [[ ${ROW[$sys,other]:-0} =~ ^[1-9] ]]; then
        echo "$sys: ${ROW[$sys,other]} replies were neither +OK nor -ERR (see stderr)"
    fi
    if [[ ${ROW[$sys,unacked_present]:-0} =~ ^[1-9] ]]; then
        echo "$sys: ${ROW[$sys,unacked_present]} writes without +OK were stored anyway"
    fi
done
((LOST == 0)) || die "acknowledged writes were lost (see 'lost')"
