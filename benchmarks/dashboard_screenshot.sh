#!/usr/bin/env bash
# A headless Chromium screenshot of optuna-dashboard serving a sweep's study journal on loopback.
#   bash benchmarks/dashboard_screenshot.sh results/tiny [out.png]
# Starts optuna-dashboard on 127.0.0.1 (a free port), waits for its API to list the study, takes a
# screenshot of the study page (trial history and Pareto front) and of the trial list, then stops
# the server it started.
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:?a sweep results folder, e.g. results/tiny}
out=${2:-benchmarks/figures/optuna_dashboard.png}
journal="$folder/study.journal"
[[ -f $journal ]] || { echo "$journal: no study journal (run the sweep first)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "no Chromium on PATH (bash .ci/setup installs it where apt is available)" >&2; exit 2; }
port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
.venv/bin/optuna-dashboard "$journal" --host 127.0.0.1 --port "$port" --quiet >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null' EXIT
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$port/api/studies" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/api/studies" | .venv/bin/python -c \
  "import json, sys; s = json.load(sys.stdin)['study_summaries']; print('dashboard lists', [(x['study_name'], x['study_id']) for x in s])"
shoot() {  # shoot URL PNG
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1500,1300 \
    --virtual-time-budget=15000 --screenshot="$2" "$1" >/dev/null 2>&1
  echo "wrote $2"
}
shoot "http://127.0.0.1:$port/dashboard/studies/0" "$out"
shoot "http://127.0.0.1:$port/dashboard/studies/0/trials" "${out%.png}_trials.png"
