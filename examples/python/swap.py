"""One client script for every distribution: only the server behind the URL changes.

Start any distribution, then run this unchanged against it:

    llama-stack run local                                  # candle on this machine
    python examples/python/swap.py http://localhost:8321 meta-llama/Llama-3.2-1B-Instruct

    VLLM_URL=http://gpu-box:8000/v1 INFERENCE_MODEL=meta-llama/Llama-3.2-1B-Instruct \
        llama-stack run remote-vllm                        # your own vLLM
    python examples/python/swap.py http://localhost:8321 meta-llama/Llama-3.2-1B-Instruct

    TOGETHER_API_KEY=... llama-stack run together          # a cloud API
    python examples/python/swap.py http://localhost:8321 meta-llama/Llama-3.2-3B-Instruct-Turbo

Arguments: the server's base URL (default http://localhost:8321) and a model id (default: the
first LLM the server lists). Sampling is greedy, so two servers running the same weights print
the same text. Replies are printed as JSON strings, one per line, so any text compares line by
line.

    pip install llama-stack-client==0.2.23 openai   (see scripts/setup-python.sh)
"""

import json
import sys

from llama_stack_client import LlamaStackClient
from openai import OpenAI

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]
MAX_TOKENS = 16


def pick_model(client: LlamaStackClient) -> str:
    models = [m for m in client.models.list() if m.model_type == "llm"]
    if not models:
        sys.exit("the server has no LLM registered")
    return models[0].identifier


def ask(base_url: str, model: str | None = None) -> dict[str, str]:
    """The same questions through the classic API (plain and streamed) and the OpenAI API."""
    client = LlamaStackClient(base_url=base_url)
    model = model or pick_model(client)
    greedy = {"strategy": {"type": "greedy"}, "max_tokens": MAX_TOKENS}

    reply = client.inference.chat_completion(
        model_id=model, messages=MESSAGES, sampling_params=greedy
    )
    streamed = "".join(
        chunk.event.delta.text
        for chunk in client.inference.chat_completion(
            model_id=model, messages=MESSAGES, sampling_params=greedy, stream=True
        )
        if chunk.event.delta.type == "text"
    )
    openai = OpenAI(base_url=f"{base_url}/v1/openai/v1", api_key="none")
    completion = openai.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0
    )
    return {
        "model": model,
        "classic": reply.completion_message.content,
        "classic stream": streamed,
        "openai": completion.choices[0].message.content or "",
    }


if __name__ == "__main__":
    base_url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8321"
    model = sys.argv[2] if len(sys.argv) > 2 else None
    for label, text in ask(base_url, model).items():
        print(f"{label}: {json.dumps(text)}")
