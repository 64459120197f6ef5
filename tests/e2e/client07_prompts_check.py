"""Drives the prompts API with llama-stack-client 0.7.x; run by test_prompts.py in the client's
own venv. Prints one JSON object with what the client saw."""

import json
import sys

from llama_stack_client import LlamaStackClient

client = LlamaStackClient(base_url=sys.argv[1])
created = client.prompts.create(prompt="Answer {{ question }} briefly.", variables=["question"])
updated = client.prompts.update(created.prompt_id, prompt="Answer {{ question }} in {{ lang }}.",
                                version=1, variables=["question", "lang"], set_as_default=False)
default_before = client.prompts.retrieve(created.prompt_id)
first = client.prompts.retrieve(created.prompt_id, version=1)
client.prompts.set_default_version(created.prompt_id, version=2)
default_after = client.prompts.retrieve(created.prompt_id)
versions = client.prompts.versions.list(created.prompt_id)
listed = client.prompts.list()
client.prompts.delete(created.prompt_id)
gone = None
try:
    client.prompts.retrieve(created.prompt_id)
except Exception as exc:  # the client's NotFoundError
    gone = type(exc).__name__
print(json.dumps({
    "id": created.prompt_id,
    "created": [created.version, created.is_default, created.variables],
    "updated": [updated.version, updated.is_default],
    "default_before": default_before.version,
    "first_text": first.prompt,
    "default_after": default_after.version,
    "versions": sorted(v.version for v in versions),
    "listed": [p.prompt_id for p in listed],
    "gone": gone,
}))
