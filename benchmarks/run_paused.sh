#!/usr/bin/env bash
# Full benchmark run with the background pre-training job paused (SIGSTOP) while measuring.
# The job is resumed (SIGCONT) on every exit path, including failure and Ctrl-C.
# Usage: benchmarks/run_paused.sh [extra `python -m benchmarks` arguments]
# The run is stopped after MAX_SECONDS (default 960) so the job is never paused much longer than 15 minutes.
set -u
cd "$(dirname "$0")/.."
PIDS=$(pgrep -f 'python.*pretrain-shapes' | grep -vx "$$" || true)
resume() {
    for pid in $PIDS; do kill -CONT "$pid" 2>/dev/null && echo "[run_paused] resumed $pid"; done
}
trap resume EXIT
trap 'exit 130' INT TERM
NOTE="no background pre-training job was running"
if [ -n "$PIDS" ]; then
    for pid in $PIDS; do kill -STOP "$pid" && echo "[run_paused] paused $pid"; done
    NOTE="the background pre-training job (pid $(echo $PIDS | tr ' ' ',')) was paused (SIGSTOP) during the run"
fi
timeout "${MAX_SECONDS:-960}" .venv/bin/python -m benchmarks --note "$NOTE" "$@"
