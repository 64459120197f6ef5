"""Drives a server with llama-stack-client 0.7.x; run by test_client07.py in its own venv.

Prints one JSON object with what the client saw; exits non-zero on any client error.
"""

import json
import sys

from llama_stack_client import LlamaStackClient

client = LlamaStackClient(base_url=sys.argv[1])
models = client.models.list()
model_id = models[0].id
retrieved = client.models.retrieve(model_id)
chat = client.chat.completions.create(
    model=model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=3
)
stream = client.chat.completions.create(
    model=model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
)
chunks = [c for c in stream]
completion = client.completions.create(model=model_id, prompt="Once upon", max_tokens=2)
shields = client.shields.list()
# 0.7 sends OpenAI messages and no `params`.
insecure = client.safety.run_shield(
    shield_id="CodeScanner",
    messages=[{"role": "user", "content": "import hashlib\nhashlib.md5(data).hexdigest()"}],
)
moderation = client.moderations.create(
    model="CodeScanner", input=["import hashlib\nhashlib.md5(data).hexdigest()", "print(1)"]
)


def field(obj, name):
    # The 0.7 client types some nested objects as plain dicts.
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


print(
    json.dumps(
        {
            "model_ids": [m.id for m in models],
            "model_types": [m.custom_metadata.get("model_type") for m in models],
            "retrieved": retrieved.identifier,
            "chat_tokens": field(chat.usage, "completion_tokens"),
            "chat_finish": chat.choices[0].finish_reason,
            "stream_finish": [c.choices[0].finish_reason for c in chunks if c.choices][-1],
            "stream_text": "".join(
                c.choices[0].delta.content or "" for c in chunks if c.choices
            ),
            "chat_text": chat.choices[0].message.content,
            "completion_tokens": field(completion.usage, "completion_tokens"),
            "providers": [p.provider_id for p in client.providers.list()],
            "health": client.inspect.health().status,
            "version": client.inspect.version().version,
            "shields": [s.identifier for s in shields],
            "insecure_violation": insecure.violation.to_dict(),
            "moderation_flagged": [r.flagged for r in moderation.results],
        }
    )
)
