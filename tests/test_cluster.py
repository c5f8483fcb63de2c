"""The sweep on a real multi-node Ray cluster on loopback (ENVIRONMENT.md recipe).

A head on 127.0.0.2 and a worker on 127.0.0.3, each started with `ray start`, with token auth.
Every process a node starts inherits a marker in its environment, so the test stops exactly the
processes it started (never other Ray instances on the machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from explore.rows import row_schema
from explore.spec import load_spec
from explore.store import read_trials

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).parent.parent
RAY = str(Path(sys.executable).parent / "ray")
MARKER = "EXPLORE_TEST_RAY_NODE"


def node_env(tmp_path, tag: str) -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", MARKER: tag,
            "ONN_CACHE_DIR": str(tmp_path / "cache")}


def marked_pids(tag: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if f"{MARKER}={tag}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_marked(tag: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_pids(tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1)


def start_cluster(tmp_path, *, dashboard: bool):
    """A head on 127.0.0.2 and a worker on 127.0.0.3; yields what the tests need, stops only them."""
    if not Path(RAY).exists():
        pytest.skip("ray CLI not found beside the interpreter")
    run_id = uuid.uuid4().hex[:8]
    port = 6390 + int(run_id, 16) % 500  # a fresh GCS port per test: nothing of an earlier cluster answers
    dashboard_port = 8300 + int(run_id, 16) % 500
    # Each node's dashboard agent serves HTTP on its own address and on 127.0.0.1, at 52365 unless told:
    # the head's and the worker's would collide there, and so would a previous test's agent that is
    # still winding down (it outlives its raylet by seconds). Without its HTTP server the head takes no
    # job. A fresh pair of ports per test, as for the GCS.
    agent_port = 53000 + 2 * (int(run_id, 16) % 400)
    head, worker = f"head-{run_id}", f"worker-{run_id}"
    try:
        # Ray notices a lost node by health checks (default: tens of seconds); retries spent before
        # then go back to the dead node. Detect within ~3 s so the retries land on the living head.
        head_env = {**node_env(tmp_path, head), "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "2"}
        dashboard_flags = ([f"--include-dashboard=true", "--dashboard-host=127.0.0.2",
                            f"--dashboard-port={dashboard_port}"] if dashboard else ["--include-dashboard=false"])
        subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.2", f"--port={port}", "--num-cpus=1",
                        *dashboard_flags, f"--dashboard-agent-listen-port={agent_port}", "--disable-usage-stats"],
                       env=head_env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3", "--num-cpus=1",
                        f"--dashboard-agent-listen-port={agent_port + 1}"],
                       env=node_env(tmp_path, worker), check=True, capture_output=True, timeout=120)
        yield {"head": head, "worker": worker, "port": port, "dashboard": f"http://127.0.0.2:{dashboard_port}",
               "env": node_env(tmp_path, f"driver-{run_id}")}
    finally:
        kill_marked(worker)
        kill_marked(head)


@pytest.fixture
def cluster(tmp_path):
    yield from start_cluster(tmp_path, dashboard=False)


@pytest.fixture
def cluster_with_jobs(tmp_path):
    pytest.importorskip("aiohttp", reason="ray job submit needs ray[default] (the 'cluster' extra)")
    yield from start_cluster(tmp_path, dashboard=True)


def start_sweep(tmp_path, cluster, *overrides) -> subprocess.Popen:
    command = [sys.executable, "-m", "explore.sweep", str(ROOT / "sweeps" / "tiny.yaml"), f"output={tmp_path}",
               "--no-report", *overrides]
    return subprocess.Popen(command, cwd=ROOT, env={**cluster["env"], "RAY_ADDRESS": f"127.0.0.2:{cluster['port']}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout_s: float) -> str:
    """The sweep's output once it exits 0; on a timeout or an error, fail with the output's tail."""
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        pytest.fail(f"the sweep did not finish in {timeout_s} s; its output ends:\n{out[-4000:]}")
    assert process.returncode == 0, out[-4000:]
    return out


def rows(tmp_path, *overrides):
    spec = load_spec(ROOT / "sweeps" / "tiny.yaml", [f"output={tmp_path}", *overrides])
    folder = tmp_path / "tiny" / "trials"
    return read_trials(folder, row_schema(spec)) if folder.exists() else None


def test_the_same_sweep_file_runs_on_both_nodes(cluster, tmp_path):
    process = start_sweep(tmp_path, cluster, "budget.trials=6")
    finish(process, timeout_s=1800)
    frame = rows(tmp_path, "budget.trials=6")
    assert len(frame) == 6 and frame["trial_id"].n_unique() == 6
    assert set(frame["node_ip"].drop_nulls()) == {"127.0.0.2", "127.0.0.3"}, frame.select("trial_index", "node_ip")


def test_killing_the_worker_node_mid_sweep_loses_no_trial(cluster, tmp_path):
    overrides = ("budget.trials=6", "budget.max_retries=3")
    process = start_sweep(tmp_path, cluster, *overrides)
    # Wait until a trial runs on the worker node. Bounded by the sweep's own progress, not a short
    # clock: on a loaded machine the driver's start (teacher, dry run) alone can take minutes.
    deadline = time.time() + 1200
    while not any("ImplicitFunc" in _name(p) for p in marked_pids(cluster["worker"])):
        if process.poll() is not None or time.time() > deadline:
            out = process.communicate()[0] if process.poll() is not None else ""
            pytest.fail(f"no trial was scheduled on the worker node; the sweep's output ends:\n{out[-4000:]}")
        time.sleep(0.2)
    kill_marked(cluster["worker"])
    finish(process, timeout_s=1800)
    frame = rows(tmp_path, *overrides)
    assert len(frame) == 6 and frame["trial_id"].n_unique() == 6, frame.select("trial_index", "status", "reason")
    assert set(frame["status"]) <= {"complete", "pruned", "infeasible", "failed"}
    hit = frame.filter((frame["attempts"] > 1) | (frame["status"] == "failed"))
    assert len(hit) >= 1, frame.select("trial_index", "status", "attempts", "node_ip")  # the killed trial
    assert (frame.filter(frame["status"] == "complete")["node_ip"] == "127.0.0.2").any(), \
        frame.select("trial_index", "status", "attempts", "node_ip", "reason")  # the head took over


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_ray_job_submit_runs_the_sweep_on_the_cluster(cluster_with_jobs, tmp_path):
    """The README's `ray job submit` walk-through: the job runs the sweep on the cluster's dashboard
    job manager; the driver's environment variables make way for the job's own (no runtime-env clash)."""
    job_env = json.dumps({"env_vars": {"ONN_COMPILE": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184"}})  # both the driver sets too
    command = [RAY, "job", "submit", "--address", cluster_with_jobs["dashboard"], "--runtime-env-json", job_env, "--",
               sys.executable, "-m", "explore.sweep", str(ROOT / "sweeps" / "tiny.yaml"), f"output={tmp_path}",
               "budget.trials=2", "--no-report"]
    # A freshly started head's job agent registers with its dashboard a while after `ray start` returns
    # (minutes on a loaded machine); until then a submission is refused and nothing runs: try again.
    deadline = time.time() + 600
    while True:
        done = subprocess.run(command, cwd=ROOT, env=cluster_with_jobs["env"], capture_output=True, text=True,
                              timeout=1800)
        if "No available agent to submit job" not in done.stdout + done.stderr or time.time() > deadline:
            break
        time.sleep(5)
    assert done.returncode == 0 and "succeeded" in done.stdout + done.stderr, (done.stdout + done.stderr)[-4000:]
    frame = rows(tmp_path, "budget.trials=2")
    assert len(frame) == 2 and frame["trial_id"].n_unique() == 2
