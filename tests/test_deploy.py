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
