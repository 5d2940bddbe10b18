#!/usr/bin/env bash
# Full-sync benchmark: how long a NEW replica takes to receive a snapshot of KEYS keys
# (default 1,000,000, 16-byte values), and how much memory the replica and the primary use
# meanwhile; the same for Redis (primary + --replicaof replica) when redis-server is there.
#
#   bash bench/full_sync.sh            # 1,000,000 keys
#   KEYS=100000 bash bench/full_sync.sh
#
# Everything runs on 127.0.0.1 with free ports, in a mktemp -d directory that is removed
# at exit together with every process started here. See bench/README.md.
set -euo pipefail

KEYS=${KEYS:-1000000}
BACKLOG=${BACKLOG:-100000} # entries the replica then misses and catches up on (0: skip)
DEADLINE=${DEADLINE:-300} # seconds, for every wait loop

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# cleanup, log, die, alive, proc_kb, mb, free_port, wait_for_line, have_redis,
# install_redis, start_redis
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
positive_ints KEYS DEADLINE
[[ $BACKLOG =~ ^[0-9]+$ ]] || die "BACKLOG must be a whole number (got '$BACKLOG')"
start_work full-sync

now_ns() { date +%s%N; }
# A field of a kv node's INFO replication (PORT: its client port), e.g. master_repl_offset.
kv_offset() {
    redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null | tr -d '\r' |
        awk -F: -v f="$2" '$1 == f { print $2 }'
}
# Seconds between two now_ns readings, 2 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
# Growth in MB from kB readings BEFORE and AFTER, never below 0 (counters are approximate).
growth() { awk -v a="$1" -v b="$2" 'BEGIN { d = b - a; if (d < 0) d = 0; printf "%.1f", d / 1024 }'; }

# --- SQLite access: the sqlite3 CLI, installed if missing and root, else python3 -------
SQL=${BENCH_SQL:-} # "python" forces the python3 fallback
if [[ $SQL == python ]]; then
    :
elif command -v sqlite3 >/dev/null; then
    SQL=cli
elif [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null 2>&1 &&
    command -v sqlite3 >/dev/null; then
    SQL=cli
elif command -v python3 >/dev/null && python3 -c 'import sqlite3' 2>/dev/null; then
    SQL=python
else
    die "need the sqlite3 CLI or python3 with its sqlite3 module"
fi
# run_sql DB < script
run_sql() {
    if [[ $SQL == cli ]]; then
        sqlite3 -bail "$1"
    else
        python3 -c '
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
script = sys.stdin.read()
if script.lstrip().upper().startswith("SELECT"):
    for row in conn.execute(script):
        print("|".join(str(v) for v in row))
else:
    conn.executescript(script)
conn.close()
' "$1"
    fi
}

# --- 1. build ------------------------------------------------------------------------
log "== building (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
KV="$ROOT/target/release/kv"
[[ -x $KV ]] || die "$KV was not built"

# --- 2. seed a primary database ------------------------------------------------------
WIDTH=${#KEYS}
((WIDTH < 7)) && WIDTH=7
PDB="$WORK/p.db"
RDB="$WORK/r.db"
log "== seeding $PDB with $KEYS keys (sqlite via $SQL)"
t0=$(now_ns)
# Creating it through kv gives it the schema, the role and a history id.
printf '' | "$KV" primary --db "$PDB" --listen 127.0.0.1:0 >/dev/null
run_sql "$PDB" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -262144;
BEGIN IMMEDIATE;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $KEYS)
INSERT INTO kv (key, value)
SELECT printf('key:%0${WIDTH}d', i), printf('val:%012d', i) FROM n;
INSERT INTO log (seq, op, key, value)
SELECT row_number() OVER (ORDER BY key), 'put', key, value FROM kv;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
seeded=$(run_sql "$PDB" <<<"SELECT count(*) FROM kv;")
head_seq=$(run_sql "$PDB" <<<"SELECT max(seq) FROM log;")
[[ $seeded == "$KEYS" && $head_seq == "$KEYS" ]] ||
    die "seeding gave $seeded keys and head seq $head_seq, expected $KEYS"
t1=$(now_ns)
log "   seeded in $(secs "$t0" "$t1") s; file $(du -m "$PDB" | cut -f1) MB"

# --- 3. kv: primary, then a new replica ------------------------------------------------
log "== kv: full sync of a new replica"
# Keep the whole seeded log, so that background log trimming (by default the newest
# 1,000,000 entries are kept) does not run during the measurement when KEYS is larger.
RETAIN=()
if "$KV" primary --help 2>/dev/null | grep -q -- '--log-retain'; then
    RETAIN=(--log-retain "$((KEYS + BACKLOG))")
fi
"$KV" primary --db "$PDB" --listen 127.0.0.1:0 --resp 127.0.0.1:0 --no-shell \
    ${RETAIN[@]+"${RETAIN[@]}"} \
    >"$WORK/primary.out" 2>"$WORK/primary.out.err" </dev/null &
PPID_KV=$!
PIDS+=("$PPID_KV")
banner=$(wait_for_line "$WORK/primary.out" '^Primary server ready \(port [0-9]+\)' "$PPID_KV" "kv primary")
PPORT=$(sed -E 's/.*\(port ([0-9]+)\).*/\1/' <<<"$banner")
banner=$(wait_for_line "$WORK/primary.out" '^Clients \(Redis protocol\) on port [0-9]+' "$PPID_KV" "kv primary")
PRESP=${banner##* }
sleep 0.5 # let the primary settle before its "before" reading
p_rss_before=$(proc_kb "$PPID_KV" VmRSS)
p_hwm_before=$(proc_kb "$PPID_KV" VmHWM)

start=$(now_ns)
"$KV" replica --db "$RDB" --listen 127.0.0.1:0 --join "127.0.0.1:$PPORT" --no-shell \
    >"$WORK/replica.out" 2>"$WORK/replica.out.err" </dev/null &
RPID_KV=$!
PIDS+=("$RPID_KV")
r_hwm=0
end=$((SECONDS + DEADLINE))
done_ns=""
while ((SECONDS < end)); do
    if grep -q '^Snapshot received' "$WORK/replica.out" 2>/dev/null; then
        done_ns=$(now_ns)
        break
    fi
    alive "$RPID_KV" || {
        tail -n 20 "$WORK/replica.out.err" >&2 || true
        die "kv replica exited before 'Snapshot received'"
    }
    hwm=$(proc_kb "$RPID_KV" VmHWM)
    ((hwm > r_hwm)) && r_hwm=$hwm
    sleep 0.01
done
[[ -n $done_ns ]] || die "kv replica: no 'Snapshot received' within ${DEADLINE}s"
hwm=$(proc_kb "$RPID_KV" VmHWM)
((hwm > r_hwm)) && r_hwm=$hwm
r_rss_after=$(proc_kb "$RPID_KV" VmRSS)
p_rss_after=$(proc_kb "$PPID_KV" VmRSS)
p_hwm_after=$(proc_kb "$PPID_KV" VmHWM)
KV_TIME=$(secs "$start" "$done_ns")

# --- 4. verify -------------------------------------------------------------------------
replica_keys=$(run_sql "$RDB" <<<"SELECT count(*) FROM kv;")
[[ $replica_keys == "$KEYS" ]] || die "kv replica has $replica_keys keys, expected $KEYS"
KV_RSS=$(mb "$r_hwm")
KV_GROWTH=$(growth "$p_rss_before" "$p_hwm_after")
log "   synced in $KV_TIME s; replica has $replica_keys keys (file $(du -m "$RDB" | cut -f1) MB)"
log "   replica: VmHWM $(mb "$r_hwm") MB, VmRSS after $(mb "$r_rss_after") MB"
log "   primary: VmRSS before $(mb "$p_rss_before") MB (VmHWM $(mb "$p_hwm_before")), after $(mb "$p_rss_after") MB, VmHWM after $(mb "$p_hwm_after") MB"
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
stop "$RPID_KV"

# --- 4b. kv: the same replica, stopped, catches up on a backlog (partial resync) ----------
CATCHUP_TIME="" CATCHUP_NOTE=""
# shellcheck disable=SC2119
((BACKLOG > 0)) && { install_redis redis-benchmark >/dev/null || true; }
if ((BACKLOG == 0)); then
    CATCHUP_NOTE="skipped (BACKLOG=0)"
elif ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
    CATCHUP_NOTE="skipped: redis-benchmark and redis-cli are needed to write the backlog"
else
    log "== kv: $BACKLOG writes while the replica is stopped, then its catch-up"
    redis-benchmark -h 127.0.0.1 -p "$PRESP" -t set -n "$BACKLOG" -c 10 -P 16 -d 16 \
        -r "$KEYS" -q >/dev/null 2>&1 || die "writing the backlog failed"
    head=$(kv_offset "$PRESP" master_repl_offset)
    [[ $head == $((KEYS + BACKLOG)) ]] || die "primary head $head, expected $((KEYS + BACKLOG))"
    start=$(now_ns)
    "$KV" replica --db "$RDB" --listen 127.0.0.1:0 --resp 127.0.0.1:0 \
        --join "127.0.0.1:$PPORT" --no-shell \
        >"$WORK/replica2.out" 2>"$WORK/replica2.out.err" </dev/null &
    RPID_KV=$!
    PIDS+=("$RPID_KV")
    banner=$(wait_for_line "$WORK/replica2.out" '^Clients \(Redis protocol\) on port [0-9]+' "$RPID_KV" "kv replica")
    RRESP=${banner##* }
    end=$((SECONDS + DEADLINE))
    done_ns="" resumed_ns=""
    while ((SECONDS < end)) && alive "$RPID_KV"; do
        [[ -z $resumed_ns ]] && grep -q '^Resumed after seq' "$WORK/replica2.out" &&
            resumed_ns=$(now_ns)
        if [[ $(kv_offset "$RRESP" slave_repl_offset) == "$head" ]]; then
            done_ns=$(now_ns)
            break
        fi
        sleep 0.005
    done
    [[ -n $done_ns ]] || die "kv replica did not catch up to seq $head within ${DEADLINE}s"
    grep -q '^Resumed after seq' "$WORK/replica2.out" ||
        die "the replica did not resume by partial resync: $(cat "$WORK/replica2.out")"
    CATCHUP_TIME=$(secs "$start" "$done_ns")
    log "   caught up on $BACKLOG entries in $CATCHUP_TIME s (partial resync; resumed" \
        "$(secs "$start" "${resumed_ns:-$done_ns}") s after the start)"
    stop "$RPID_KV"
fi
stop "$PPID_KV"
rm -f "$RDB" "$RDB-wal" "$RDB-shm" # free the disk before Redis runs

# --- 5. Redis ----------------------------------------------------------------------------
REDIS_TIME="" REDIS_RSS="" REDIS_GROWTH="" REDIS_NOTE=""
# shellcheck disable=SC2119 # no tools needed beyond redis-server and redis-cli
install_redis >/dev/null || true

if ! have_redis; then
    echo "redis: not available"
    REDIS_NOTE="not available"
else
    log "== redis: $(redis-server --version | head -n1)"
    # No delay before a diskless full sync (default 5 s, to wait for more replicas).
    start_redis primary --appendonly no --repl-diskless-sync-delay 0 ||
        die "redis primary did not start"
    RP_PID=$R_PID RP_PORT=$R_PORT
    log "   loading $KEYS keys with redis-cli --pipe"
    awk -v n="$KEYS" -v w="$WIDTH" 'BEGIN {
        for (i = 1; i <= n; i++) {
            k = sprintf("key:%0" w "d", i); v = sprintf("val:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
        }
    }' | redis-cli -h 127.0.0.1 -p "$RP_PORT" --pipe >"$WORK/pipe.out" 2>&1 ||
        { cat "$WORK/pipe.out" >&2; die "redis-cli --pipe failed"; }
    size=$(redis-cli -h 127.0.0.1 -p "$RP_PORT" DBSIZE)
    [[ $size == "$KEYS" ]] || die "redis primary has $size keys, expected $KEYS"
    sleep 0.5
    rp_rss_before=$(proc_kb "$RP_PID" VmRSS)

    log "== redis: full sync of a new replica"
    start=$(now_ns)
    RR_PORT=$(free_port)
    mkdir -p "$WORK/replica"
    redis-server --bind 127.0.0.1 --port "$RR_PORT" --protected-mode yes \
        --dir "$WORK/replica" --save '' --appendonly no --daemonize no \
        --logfile "$WORK/replica/redis.log" --replicaof 127.0.0.1 "$RP_PORT" \
        </dev/null >/dev/null 2>&1 &
    RR_PID=$!
    PIDS+=("$RR_PID")
    rr_hwm=0
    end=$((SECONDS + DEADLINE))
    done_ns=""
    while ((SECONDS < end)); do
        alive "$RR_PID" || {
            tail -n 20 "$WORK/replica/redis.log" >&2 || true
            die "redis replica exited"
        }
        hwm=$(proc_kb "$RR_PID" VmHWM)
        ((hwm > rr_hwm)) && rr_hwm=$hwm
        info=$(redis-cli -h 127.0.0.1 -p "$RR_PORT" INFO replication 2>/dev/null | tr -d '\r' || true)
        if grep -qx 'master_link_status:up' <<<"$info" &&
            grep -qx 'master_sync_in_progress:0' <<<"$info" &&
            [[ $(redis-cli -h 127.0.0.1 -p "$RR_PORT" DBSIZE 2>/dev/null) == "$KEYS" ]]; then
            done_ns=$(now_ns)
            break
        fi
        sleep 0.01
    done
    [[ -n $done_ns ]] || die "redis replica not in sync within ${DEADLINE}s"
    hwm=$(proc_kb "$RR_PID" VmHWM)
    ((hwm > rr_hwm)) && rr_hwm=$hwm
    rr_rss_after=$(proc_kb "$RR_PID" VmRSS)
    rp_rss_after=$(proc_kb "$RP_PID" VmRSS)
    rp_hwm_after=$(proc_kb "$RP_PID" VmHWM)
    REDIS_TIME=$(secs "$start" "$done_ns")
    REDIS_RSS=$(mb "$rr_hwm")
    REDIS_GROWTH=$(growth "$rp_rss_before" "$rp_hwm_after")
    log "   synced in $REDIS_TIME s; replica DBSIZE $KEYS"
    log "   replica: VmHWM $(mb "$rr_hwm") MB, VmRSS after $(mb "$rr_rss_after") MB"
    log "   primary: VmRSS before $(mb "$rp_rss_before") MB, after $(mb "$rp_rss_after") MB, VmHWM after $(mb "$rp_hwm_after") MB (its fork for the RDB is not counted)"
fi

# --- 6. table ------------------------------------------------------------------------------
echo
echo "full sync of a new replica, $KEYS keys, 16-byte values ($(nproc) cores)"
row() { printf '%-8s | %18s | %21s | %24s\n' "$@"; }
row system "full sync time (s)" "replica peak RSS (MB)" "primary RSS growth (MB)"
row "--------" "------------------" "---------------------" "------------------------"
row kv "$KV_TIME" "$KV_RSS" "$KV_GROWTH"
if [[ -n $REDIS_TIME ]]; then
    row redis "$REDIS_TIME" "$REDIS_RSS" "$REDIS_GROWTH"
else
    row redis "$REDIS_NOTE" "-" "-"
fi

echo
if [[ -n $CATCHUP_TIME ]]; then
    echo "partial resync: the replica, stopped while $BACKLOG writes (random keys) went to the" \
        "primary, catches up in $CATCHUP_TIME s; that is $(awk -v a="$CATCHUP_TIME" -v b="$KV_TIME" \
            'BEGIN { printf "%.2f", a / b }') of the full sync's time (target <= 0.20)"
else
    echo "partial resync: $CATCHUP_NOTE"
fi
