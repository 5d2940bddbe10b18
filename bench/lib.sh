# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts in bench/ (full_sync.sh, resp.sh).
# This file is sourced, not run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It only defines functions: it sets no variables, options or traps. The caller provides
#   WORK      its mktemp -d directory (removed by cleanup)
#   PIDS      an array of the PIDs it starts (stopped by cleanup)
#   DEADLINE  seconds, for wait_for_line
# and installs the traps itself, after WORK and PIDS are set:
#
#   trap cleanup EXIT
#   trap 'exit 130' INT
#   trap 'exit 143' TERM

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
