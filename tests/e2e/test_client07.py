"""The 0.7 generation of llama-stack-client (OpenAI-style routes) against the same server.

It runs in its own venv (`.venv-client07`, made by scripts/setup-python.sh), since a venv holds
one version of the package.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from e2e_support import REPO_ROOT, SERVED_MODEL

VENV = Path(os.environ.get("LLAMA_STACK_VENV_CLIENT07", REPO_ROOT / ".venv-client07"))
SCRIPT = Path(__file__).with_name("client07_check.py")


def test_client_0_7_models_chat_completions_and_inspect(base_url):
    python = VENV / "bin" / "python"
    assert python.is_file(), f"{python} is missing: run scripts/setup-python.sh"
    proc = subprocess.run(
        [str(python), str(SCRIPT), base_url],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["model_ids"] == [f"candle/{SERVED_MODEL}"]
    assert seen["model_types"] == ["llm"]
    assert seen["retrieved"] == f"candle/{SERVED_MODEL}"
    assert seen["chat_tokens"] == 3
    assert seen["chat_finish"] == "length"
    assert seen["stream_finish"] == "length"
    # Greedy by default: the stream and the one-shot answer agree.
    assert seen["stream_text"] == seen["chat_text"]
    assert seen["completion_tokens"] == 2
    # The local distribution's two inference providers (the embedding model itself is absent
    # from this server: it is given no EMBEDDING_MODEL_PATH).
    assert seen["providers"] == ["candle", "sentence-transformers", "sqlite-vec", "rag-runtime",
                                 "model-context-protocol", "localfs", "llama-guard",
                                 "code-scanner", "meta-reference", "builtin", "reference"]
    assert seen["health"] == "OK"
    # Safety through the 0.7 client: the local distribution's code scanner shield.
    assert "CodeScanner" in seen["shields"]
    assert seen["insecure_violation"]["violation_level"] == "error"
    assert seen["insecure_violation"]["user_message"] == (
        "Sorry, I found security concerns in the code.")
    assert seen["moderation_flagged"] == [True, False]
    assert seen["version"]
