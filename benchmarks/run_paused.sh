#!/usr/bin/env bash
# Full benchmark run with the background jobs paused (SIGSTOP) while measuring: pre-training, and the
# reproduction's workers (or whatever PAUSE_PATTERN, an extended regex over command lines, names).
# The jobs are resumed (SIGCONT) on every exit path, including failure and Ctrl-C.
# Usage: [PAUSE_PATTERN=...] [MAX_SECONDS=...] benchmarks/run_paused.sh [extra `python -m benchmarks` arguments]
# The run is stopped after MAX_SECONDS (default 960) so the jobs are never paused much longer than 15 minutes.
set -u
cd "$(dirname "$0")/.."
PIDS=$(pgrep -f "${PAUSE_PATTERN:-python.*(pretrain-shapes|mtu reproduce)|multiprocessing.spawn}" | grep -vx "$$" || true)
resume() {
    for pid in $PIDS; do kill -CONT "$pid" 2>/dev/null && echo "[run_paused] resumed $pid"; done
}
trap resume EXIT
trap 'exit 130' INT TERM
NOTE="no background job was running"
if [ -n "$PIDS" ]; then
    for pid in $PIDS; do kill -STOP "$pid" && echo "[run_paused] paused $pid"; done
    NOTE="the background jobs (pid $(echo $PIDS | tr ' ' ',')) were paused (SIGSTOP) during the run"
fi
timeout "${MAX_SECONDS:-960}" .venv/bin/python -m benchmarks --note "$NOTE" "$@"
