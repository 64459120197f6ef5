"""Prompts (`/v1/prompts`) with llama-stack-client 0.7 (in its own venv) and over HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import requests

from test_client07 import VENV

SCRIPT = Path(__file__).with_name("client07_prompts_check.py")


def test_prompts_with_the_0_7_client(base_url):
    python = VENV / "bin" / "python"
    assert python.is_file(), f"{python} is missing: run scripts/setup-python.sh"
    proc = subprocess.run([str(python), str(SCRIPT), base_url], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["id"].startswith("pmpt_") and len(seen["id"]) == 53
    assert seen["created"] == [1, True, ["question"]]
    assert seen["updated"] == [2, False]
    assert seen["default_before"] == 1
    assert seen["first_text"] == "Answer {{ question }} briefly."
    assert seen["default_after"] == 2
    assert seen["versions"] == [1, 2]
    assert seen["id"] in seen["listed"]
    assert seen["gone"] == "NotFoundError"


def test_bad_prompts_are_4xx_naming_what_was_wrong(base_url):
    undeclared = requests.post(f"{base_url}/v1/prompts", json={"prompt": "Hi {{ name }}"})
    assert undeclared.status_code == 400 and "name" in undeclared.json()["error"]["message"]
    created = requests.post(f"{base_url}/v1/prompts", json={"prompt": "Hi"}).json()
    pid = created["prompt_id"]
    missing_version = requests.get(f"{base_url}/v1/prompts/{pid}", params={"version": 7})
    assert missing_version.status_code == 404 and ":7" in missing_version.text
    stale = requests.put(f"{base_url}/v1/prompts/{pid}", json={"prompt": "x", "version": 3})
    assert stale.status_code == 400 and "latest" in stale.text
    assert requests.get(f"{base_url}/v1/prompts/pmpt_nope").status_code == 404
    assert requests.delete(f"{base_url}/v1/prompts/{pid}").status_code == 204
