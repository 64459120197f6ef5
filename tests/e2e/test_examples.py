"""The shipped examples run against a live server."""

from __future__ import annotations

import subprocess
import sys

from e2e_support import REPO_ROOT, SERVED_MODEL


def test_python_chat_example_runs(base_url):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "python" / "chat.py"), base_url],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"model: candle/{SERVED_MODEL}"
    # The tiny model's replies are newlines, so check the labels rather than whole lines.
    for label in ("classic:", "classic stream:", "openai:"):
        assert any(line.startswith(label) for line in lines), proc.stdout
    assert "completion_tokens=" in proc.stdout
