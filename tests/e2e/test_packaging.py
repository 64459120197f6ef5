"""The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes API schemas
(kubernetes-validate, from PyPI), running exactly the shipped `postgres` distribution, and
probing routes the real binary serves. (The image itself cannot be built here: there is no
container runtime; `Containerfile` is built by users with podman or docker.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import requests
import yaml

from e2e_support import REPO_ROOT

MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"


def manifest(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text())


def test_manifests_are_valid_kubernetes_objects():
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS.glob("*.yaml")
                                    if p.name != "kustomization.yaml")
    for name in listed:
        kubernetes_validate.validate(yaml.safe_load((MANIFESTS / name).read_text()),
                                     kubernetes_validate.latest_version(), strict=True)


def test_the_configmap_is_the_postgres_distribution(tmp_path, llama_stack_bin):
    config = manifest("configmap")["data"]["run.yaml"]
    assert config == (REPO_ROOT / "distributions" / "postgres" / "run.yaml").read_text(), \
        "configmap.yaml is stale: run deploy/kubernetes/make-configmap.sh"
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(config)
    env = [f"--env={k}={v}" for k, v in manifest("secret")["stringData"].items()]
    checked = subprocess.run([str(llama_stack_bin), "validate", str(run_yaml), *env],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_probes_hit_routes_the_server_answers(server):
    container = manifest("deployment")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        assert requests.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8321, "grpc": 8322}
