"""Chat with a llama-stack server through both official clients.

    pip install llama-stack-client==0.2.23 openai   (see scripts/setup-python.sh)
    python examples/python/chat.py [http://localhost:8321]
"""

import sys

from llama_stack_client import LlamaStackClient
from openai import OpenAI

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8321"
client = LlamaStackClient(base_url=base_url)

models = [m for m in client.models.list() if m.model_type == "llm"]
if not models:
    sys.exit("the server has no LLM registered")
model = models[0].identifier
print(f"model: {model}")

reply = client.inference.chat_completion(
    model_id=model,
    messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colours."},
    ],
    sampling_params={"max_tokens": 32},
)
print("classic:", reply.completion_message.content)

print("classic stream: ", end="")
for chunk in client.inference.chat_completion(
    model_id=model,
    messages=[{"role": "user", "content": "Count to five."}],
    sampling_params={"max_tokens": 32},
    stream=True,
):
    if chunk.event.delta.type == "text":
        print(chunk.event.delta.text, end="", flush=True)
print()

openai = OpenAI(base_url=f"{base_url}/v1/openai/v1", api_key="none")
completion = openai.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Say hello."}],
    max_tokens=32,
)
print("openai:", completion.choices[0].message.content, completion.usage)
