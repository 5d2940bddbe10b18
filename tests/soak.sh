#!/usr/bin/env bash
# Soak: the long versions of the crash, fault and fuzz tests, then one summary.
#
#   bash tests/soak.sh              # 20 rounds each, 2,000,000 fuzzed frames
#   ROUNDS=50 FRAMES=5000000 bash tests/soak.sh
#
# Every test prints a `SOAK name: rounds=.. kills=.. faults=.. acknowledged=.. lost=..
# divergent=..` line; this script adds them up. It fails if any test failed, or if any
# acknowledged write was lost or any two nodes diverged.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-20}
FRAMES=${FRAMES:-2000000}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
KV_SOAK_ROUNDS=$ROUNDS KV_FUZZ_FRAMES=$FRAMES cargo test --release \
    --test primary_crash --test replica_crash --test convergence_faults --test fuzz_frames --test failover --test durability --test cluster \
    -- --nocapture --test-threads=1 2>&1 | tee "$log" | grep -E '^(SOAK|test result|test .* FAILED|thread .* panicked)' || true
grep -q 'FAILED\|panicked' "$log" && status=1

echo
echo "soak summary (ROUNDS=$ROUNDS, FRAMES=$FRAMES)"
awk '
/^SOAK / {
    name = $2; sub(":", "", name); names[++n] = name
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[name, kv[1]] = kv[2]; total[kv[1]] += kv[2] }
}
END {
    printf "%-20s %8s %8s %9s %13s %6s %10s\n", "test", "rounds", "kills", "faults", "acknowledged", "lost", "divergent"
    for (j = 1; j <= n; j++) {
        t = names[j]
        printf "%-20s %8d %8d %9d %13d %6d %10d\n", t, v[t,"rounds"], v[t,"kills"], v[t,"faults"], v[t,"acknowledged"], v[t,"lost"], v[t,"divergent"]
    }
    printf "%-20s %8d %8d %9d %13d %6d %10d\n", "total", total["rounds"], total["kills"], total["faults"], total["acknowledged"], total["lost"], total["divergent"]
    if (total["lost"] > 0 || total["divergent"] > 0) exit 1
}' "$log" || status=1
expected=8
found=$(grep -c '^SOAK ' "$log" || true)
if [ "$found" -ne "$expected" ]; then
    echo "expected $expected SOAK lines, found $found" >&2
    status=1
fi
exit $status
