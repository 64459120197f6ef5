"""Llama 3.2 Vision on the local engine, through every API that takes images: a random-weight
Mllama checkpoint written by `llama-stack model create-test --preset vision-tiny`, served by the
real binary, driven by the official clients.

Random weights answer noise, so the tests assert what the image path must do: the request is
accepted in each API's own image shape, the image reaches the model (another image gives other
log-probabilities), and bad or oversized images, private URLs and images sent to a text model
are refused with a clear 4xx naming the place in the request.
"""

from __future__ import annotations

import base64
import http.server
import threading

import openai
import pytest
import requests
from llama_stack_client import LlamaStackClient

from e2e_support import HTTP_TIMEOUT_S, LOCAL_RUN_YAML, MODEL_IDENTIFIER, REPO_ROOT, png_claiming

FIXTURES = REPO_ROOT / "crates" / "providers" / "inference-candle" / "tests" / "fixtures" / "mllama"
VISION_MODEL = "meta-llama/Llama-3.2-11B-Vision-Instruct"
VISION_IDENTIFIER = f"candle/{VISION_MODEL}"


def data_url(name: str, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode((FIXTURES / name).read_bytes()).decode()






def vision_run_yaml(tmp_path_factory, images_block: str) -> str:
    text = LOCAL_RUN_YAML.read_text()
    anchor = "      default_max_tokens: 512\n"
    assert text.count(anchor) == 1, "the local distribution's candle block moved"
    path = tmp_path_factory.mktemp("vision-config") / "run.yaml"
    path.write_text(text.replace(anchor, anchor + images_block))
    return str(path)


@pytest.fixture(scope="module")
def vision_server(server_factory, vision_model_dir):
    return server_factory("vision", extra_env={
        "LLAMA_MODEL_PATH": str(vision_model_dir), "INFERENCE_MODEL": VISION_MODEL}).start()


@pytest.fixture(scope="module")
def open_vision_server(server_factory, vision_model_dir, tmp_path_factory):
    """Image URLs may point at this machine; images over a million pixels are refused; the
    decoder is quantized to 8 bits at load."""
    config = vision_run_yaml(tmp_path_factory, "      quantize: q8_0\n"
                             "      images:\n"
                             "        allow_private_addresses: true\n"
                             "        max_pixels: 1000000\n")
    return server_factory("vision-open", run_config=config, extra_env={
        "LLAMA_MODEL_PATH": str(vision_model_dir), "INFERENCE_MODEL": VISION_MODEL}).start()


def openai_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", timeout=HTTP_TIMEOUT_S,
                         max_retries=0)


def ask(client: openai.OpenAI, image_url: str | None, **extra):
    content = [{"type": "text", "text": "What is in this picture?"}]
    if image_url is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": image_url}})
    return client.chat.completions.create(
        model=VISION_IDENTIFIER, messages=[{"role": "user", "content": content}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=3, **extra)


def first_logprobs(completion) -> list[float]:
    return [t.logprob for t in completion.choices[0].logprobs.content[0].top_logprobs]


def test_openai_image_url_parts_reach_the_model(vision_server):
    client = openai_client(vision_server)
    models = [m.id for m in client.models.list()]
    assert VISION_IDENTIFIER in models
    jpeg = ask(client, data_url("portrait.jpg", "image/jpeg"))
    gif = ask(client, data_url("wide.gif", "image/gif"))
    text = ask(client, None)
    for completion in (jpeg, gif, text):
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage.completion_tokens == 6
    # An image is 4 tiles of vision tokens behind one prompt token: the prompts are the same
    # length, and only the pixels tell the answers apart.
    assert jpeg.usage.prompt_tokens == gif.usage.prompt_tokens == text.usage.prompt_tokens + 1
    assert first_logprobs(jpeg) != first_logprobs(gif)
    assert first_logprobs(jpeg) != first_logprobs(text)
    # The same image again gives the same answer; its cached prefix is reused, and the last
    # prompt token read again on its own may round differently.
    again = first_logprobs(ask(client, data_url("portrait.jpg", "image/jpeg")))
    assert again == pytest.approx(first_logprobs(jpeg), abs=1e-4)


def test_streaming_with_an_image(vision_server):
    stream = openai_client(vision_server).chat.completions.create(
        model=VISION_IDENTIFIER, stream=True, max_tokens=5, temperature=0,
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url("square.webp", "image/webp")}},
            {"type": "text", "text": "Describe it."}]}])
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 1


def test_classic_chat_completion_takes_base64_image_data(vision_server):
    client = LlamaStackClient(base_url=vision_server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    data = base64.b64encode((FIXTURES / "alpha.png").read_bytes()).decode()
    response = client.inference.chat_completion(
        model_id=VISION_IDENTIFIER,
        messages=[{"role": "user", "content": [
            {"type": "image", "image": {"data": data}},
            {"type": "text", "text": "What is this?"}]}],
        sampling_params={"max_tokens": 4, "strategy": {"type": "greedy"}})
    assert response.completion_message.role == "assistant"
    assert response.completion_message.stop_reason == "out_of_tokens"


def test_responses_input_image(vision_server):
    response = openai_client(vision_server).responses.create(
        model=VISION_IDENTIFIER, max_output_tokens=4, temperature=0,
        input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": data_url("palette.png", "image/png")},
            {"type": "input_text", "text": "What colours are there?"}]}])
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message"


def test_an_agent_turn_with_an_image(vision_server):
    client = LlamaStackClient(base_url=vision_server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    agent_id = client.agents.create(agent_config={
        "model": VISION_IDENTIFIER, "instructions": "Describe images.",
        "sampling_params": {"max_tokens": 4, "strategy": {"type": "greedy"}}}).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="pics").session_id
    turn = client.agents.turn.create(
        agent_id=agent_id, session_id=session_id, stream=False,
        messages=[{"role": "user", "content": [
            {"type": "image", "image": {"url": {"uri": data_url("gray.png", "image/png")}}},
            {"type": "text", "text": "What is this?"}]}])
    assert turn.steps[0].step_type == "inference"
    assert turn.output_message.role == "assistant"


def post_chat(server, content, model=VISION_IDENTIFIER) -> requests.Response:
    return requests.post(f"{server.url}/v1/chat/completions", timeout=HTTP_TIMEOUT_S, json={
        "model": model, "max_tokens": 2, "messages": [{"role": "user", "content": content}]})


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def error_message(response: requests.Response) -> str:
    body = response.json()
    return body["error"]["message"] if "error" in body else str(body.get("detail"))


def test_bad_images_are_clear_client_errors(vision_server):
    garbage = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    response = post_chat(vision_server, [{"type": "text", "text": "hi"}, image_part(garbage)])
    assert response.status_code == 400, response.text
    assert "messages[0].content[1]" in error_message(response)

    two = [image_part(data_url("alpha.png", "image/png")),
           image_part(data_url("gray.png", "image/png"))]
    response = post_chat(vision_server, two)
    assert response.status_code == 400, response.text
    assert "one image per message" in error_message(response)

    response = post_chat(vision_server, [image_part("http://127.0.0.1:9/cat.png")])
    assert response.status_code == 403, response.text
    assert "images.allow_private_addresses" in error_message(response)


def test_an_image_sent_to_a_text_model_is_refused(server):
    response = post_chat(server, [image_part(data_url("alpha.png", "image/png"))],
                         model=MODEL_IDENTIFIER)
    assert response.status_code == 400, response.text
    assert "text only" in error_message(response)


def test_pixel_limit_and_url_fetch(open_vision_server):
    huge = "data:image/png;base64," + base64.b64encode(png_claiming(5000, 5000)).decode()
    response = post_chat(open_vision_server, [image_part(huge)])
    assert response.status_code == 400, response.text
    assert "pixels" in error_message(response)

    class Images(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(FIXTURES), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        fetched = ask(openai_client(open_vision_server), f"{base}/portrait.jpg")
        inline = ask(openai_client(open_vision_server), data_url("portrait.jpg", "image/jpeg"))
        assert first_logprobs(fetched) == pytest.approx(first_logprobs(inline), abs=1e-4)
        response = post_chat(open_vision_server, [image_part(f"{base}/missing.png")])
        assert 400 <= response.status_code < 600 and response.status_code != 500, response.text
        assert "missing.png" in error_message(response)
    finally:
        httpd.shutdown()


GUARD_VISION_MODEL = "meta-llama/Llama-Guard-3-11B-Vision"


@pytest.fixture(scope="module")
def vision_guard_server(server_factory, vision_model_dir):
    """The `llama-guard` shield on a vision checkpoint named as Llama Guard 3 Vision."""
    return server_factory("vision-guard", extra_env={
        "SAFETY_MODEL": GUARD_VISION_MODEL, "SAFETY_MODEL_PATH": str(vision_model_dir)}).start()


def run_guard(server, image: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/safety/run-shield", timeout=HTTP_TIMEOUT_S, json={
        "shield_id": "llama-guard", "params": {},
        "messages": [{"role": "user", "content": [image, {"type": "text", "text": "Is this ok?"}]}]})


def test_llama_guard_vision_reads_the_image(vision_guard_server):
    png = base64.b64encode((FIXTURES / "alpha.png").read_bytes()).decode()
    response = run_guard(vision_guard_server, {"type": "image", "image": {"data": png}})
    # Random weights say whatever they say: a verdict, or the clear unreadable-reply error.
    if response.status_code == 200:
        violation = response.json()["violation"]
        assert violation is None or violation["metadata"]["violation_type"].startswith("S")
    else:
        assert response.status_code == 400, response.text
        assert "Unexpected response from guard model" in response.text
    # The image itself reaches the guard model: a broken one is refused by the image decoder.
    broken = base64.b64encode(b"\x89PNG\r\n\x1a\n broken").decode()
    response = run_guard(vision_guard_server, {"type": "image", "image": {"data": broken}})
    assert response.status_code == 400, response.text
    assert "image could not be read" in response.json()["error"]["detail"], response.text
