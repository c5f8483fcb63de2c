"""The files a team starts a cluster with: the Ray cluster launcher YAML and the KubeRay RayJob."""

from pathlib import Path

import yaml

CLUSTER = Path(__file__).parent.parent / "sweeps" / "cluster"


def test_the_cluster_launcher_file_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "local.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's schema, after the local provider's defaults
    assert config["provider"]["type"] == "local" and config["provider"]["worker_ips"]
    assert any(".ci/setup" in command for command in config["setup_commands"])  # the project's own set-up
    assert any("RAY_AUTH_MODE=token" in command for command in config["head_start_ray_commands"])


def test_the_kuberay_rayjob_carries_what_kuberay_requires():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m explore.sweep sweeps/")
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert "rayStartParams" in head and head["template"]["spec"]["containers"][0]["image"]
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and group["replicas"] >= 1 and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["template"]["spec"]["containers"][0]["image"]
    # the entrypoint's sweep file exists and validates
    from explore.spec import load_spec

    sweep = spec["entrypoint"].split()[3]
    assert load_spec(Path(__file__).parent.parent / sweep).name


def test_optuna_dashboard_serves_a_sweeps_journal_on_loopback(tmp_path):
    """The README's `optuna-dashboard results/<name>/study.journal`: the dashboard reads the journal a
    sweep keeps (metric names set) and lists its study and trials over HTTP on 127.0.0.1."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import optuna
    import pytest

    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    if not dashboard.exists():
        pytest.skip("optuna-dashboard not installed (the 'dashboard' extra)")
    journal = tmp_path / "study.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(storage=storage, study_name="tiny", directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy_compensated_val", "energy_pj"])
    for accuracy, energy in ((0.8, 2e5), (0.9, 4e5)):
        trial = study.ask()
        trial.suggest_int("n_kernels", 2, 8)
        study.tell(trial, [accuracy, energy])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(dashboard), str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("optuna-dashboard did not answer on loopback")
        assert [(s["study_name"], s["directions"]) for s in studies] == [("tiny", ["maximize", "minimize"])]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/0", timeout=30) as response:
            detail = json.load(response)
        assert len(detail["trials"]) == 2, sorted(detail)
        assert detail.get("objective_names") == ["accuracy_compensated_val", "energy_pj"], sorted(detail)
    finally:
        server.terminate()
        server.wait(timeout=30)
