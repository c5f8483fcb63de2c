#!/usr/bin/env bash
# The node-loss cluster test, N times in a row, with B CPU-bound processes beside it (issue 23):
#   bash benchmarks/node_loss_soak.sh 10 > node_loss_soak.log        # B = 2 busy loops it starts
#   bash benchmarks/node_loss_soak.sh 10 0                           # B = 0: the caller brings the load
# Prints one line per run (pass/fail, seconds, load) and a summary; stops the load processes it started.
set -u
cd "$(dirname "$0")/.."
runs=${1:-10}
burners=${2:-2}
python=.venv/bin/python
burn() { "$python" -c "while True: pass" >/dev/null 2>&1 & echo $!; }
load=()
for _ in $(seq 1 "$burners"); do load+=("$(burn)"); done
trap '[[ ${#load[@]} -gt 0 ]] && kill "${load[@]}" 2>/dev/null' EXIT
passed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if "$python" -m pytest -q -p no:cacheprovider tests/test_cluster.py -k killing >/tmp/node_loss_run.log 2>&1; then
    result=pass; passed=$((passed + 1))
  else
    result=FAIL
  fi
  echo "run $i/$runs: $result in $(( $(date +%s) - start )) s, load average $(cut -d' ' -f1 /proc/loadavg)"
  [[ $result == FAIL ]] && tail -n 40 /tmp/node_loss_run.log
done
echo "node-loss test: $passed of $runs passed with $burners busy loops (and whatever else ran) beside it"
