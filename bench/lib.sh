# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts in bench/ (full_sync.sh, resp.sh,
# flood.sh). This file is sourced, not run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It only defines functions; sourcing it sets no variables, options or traps. The caller
# sets DEADLINE (seconds, for wait_for_line and bounded), then calls `start_work NAME`,
# which makes $WORK (a mktemp -d directory, removed by cleanup), empties PIDS (the PIDs
# it starts, stopped by cleanup) and installs the traps.
#
# The helpers: start_work, bounded, cleanup, log, die, alive, proc_kb, mb, free_port,
# wait_for_line, positive_ints, and for
# Redis have_redis, install_redis and start_redis (which sets R_PID and R_PORT when
# called).

# Makes the scratch directory WORK ("kv-NAME.XXXXXX" under $TMPDIR), empties PIDS, and
# sets the traps: cleanup at exit, and an exit (running it) on INT or TERM.
start_work() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/kv-$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Runs a command with the deadline (then TERM, and KILL 5 s later).
bounded() { timeout --kill-after=5 "$DEADLINE" "$@"; }

# EXIT trap: stops every process in PIDS (TERM, then KILL after 5 s), removes $WORK and
# exits with the status the script was exiting with.
cleanup() {
    local status=$?
    # Finish the cleanup even if another signal arrives meanwhile (it is bounded).
    trap - EXIT
    trap '' INT TERM
    local pid i
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        for ((i = 0; i < 50; i++)); do # up to 5 s each to stop cleanly, then KILL
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}

log() { printf '%s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
alive() { kill -0 "$1" 2>/dev/null; }

# A field (kB) of /proc/PID/status, e.g. VmRSS or VmHWM; 0 if the process is gone.
proc_kb() {
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' \
        "/proc/$1/status" 2>/dev/null || echo 0
}
# kB -> MB, 1 decimal.
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# A free TCP port on 127.0.0.1 (the kernel's choice; a tiny race before it is bound).
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        local port
        for _ in $(seq 100); do
            port=$((20000 + RANDOM % 30000))
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "$port"
                return
            fi
        done
        die "no free port found"
    fi
}

# Waits until FILE has a line matching REGEX (or PID dies, or the deadline passes);
# prints the matching line.
wait_for_line() {
    local file=$1 regex=$2 pid=$3 what=$4
    local end=$((SECONDS + DEADLINE)) line
    while ((SECONDS < end)); do
        if line=$(grep -m1 -E "$regex" "$file" 2>/dev/null); then
            printf '%s\n' "$line"
            return 0
        fi
        alive "$pid" || {
            tail -n 20 "$file" "$file.err" >&2 2>/dev/null || true
            die "$what exited before printing /$regex/"
        }
        sleep 0.01
    done
    die "$what: no /$regex/ within ${DEADLINE}s"
}

# positive_ints VAR...: exits with status 2, naming the variable and its value, unless every
# named variable holds a whole number of at least 1 (the scripts' numeric settings).
positive_ints() {
    local var
    for var in "$@"; do
        [[ ${!var} =~ ^[1-9][0-9]*$ ]] || {
            echo "$var must be a positive integer (got '${!var}')" >&2
            exit 2
        }
    done
}

# --- Redis ---------------------------------------------------------------------------------

# have_redis [TOOL...]: true when redis-server, redis-cli and every TOOL (e.g.
# redis-benchmark) are on PATH.
have_redis() {
    local tool
    for tool in redis-server redis-cli "$@"; do
        command -v "$tool" >/dev/null || return 1
    done
}

# install_redis [TOOL...]: when `have_redis TOOL...` is false, installs the system's
# redis-server and redis-tools (apt-get install -y, non-interactive; only as root; its
# output in $WORK/apt.log). Status 0 when nothing was missing or apt-get succeeded (check
# have_redis afterwards); otherwise 1, with the reason on stdout.
install_redis() {
    have_redis "$@" && return 0
    if [[ $(id -u) != 0 ]]; then
        echo "redis-server/redis-tools missing and not root (cannot apt-get install)"
        return 1
    fi
    if ! command -v apt-get >/dev/null; then
        echo "redis-server/redis-tools missing and no apt-get"
        return 1
    fi
    log "== installing redis-server redis-tools (apt-get)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools \
        >"$WORK/apt.log" 2>&1; then
        echo "apt-get install redis-server redis-tools failed: $(tail -n 1 "$WORK/apt.log")"
        return 1
    fi
}

# start_redis NAME [ARGS...]: starts redis-server on a free 127.0.0.1 port (up to 3
# tries), in its own directory $WORK/NAME (log in $WORK/NAME/redis.log), with --save '',
# no daemon, then ARGS (later arguments override earlier ones, e.g. --appendonly yes);
# waits up to 30 s for PING. Adds it to PIDS and sets R_PID and R_PORT; status 1 if it
# never answered.
start_redis() {
    local name=$1 attempt end
    shift
    for attempt in 1 2 3; do
        R_PORT=$(free_port)
        mkdir -p "$WORK/$name"
        redis-server --bind 127.0.0.1 --port "$R_PORT" --protected-mode yes \
            --dir "$WORK/$name" --save '' --daemonize no \
            --logfile "$WORK/$name/redis.log" "$@" </dev/null >/dev/null 2>&1 &
        R_PID=$!
        PIDS+=("$R_PID")
        end=$((SECONDS + 30))
        while ((SECONDS < end)) && alive "$R_PID"; do
            if [[ $(redis-cli -h 127.0.0.1 -p "$R_PORT" PING 2>/dev/null) == PONG ]]; then
                return 0
            fi
            sleep 0.05
        done
        kill -KILL "$R_PID" 2>/dev/null || true
        wait "$R_PID" 2>/dev/null || true
        log "   redis $name did not start on port $R_PORT (attempt $attempt)"
        tail -n 5 "$WORK/$name/redis.log" >&2 2>/dev/null || true
    done
    return 1
}
