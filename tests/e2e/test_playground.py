"""The browser playground at /playground, in a real browser: headless Chromium driven by
Selenium, against the real binary on the `local` distribution with the generated random-weight
model and the real all-MiniLM-L6-v2. The model's answers are noise, so each test checks what a
person would see (an answer streams in with its speed, a file reaches `completed` and a citation
names it, an agent turn draws its steps, a shield gives its verdict), not what the text says.

Screenshots of every page go to target/e2e-artifacts/playground/. The browser is Debian's
`chromium` and `chromium-driver` (.ci/run installs them); LLAMA_STACK_SKIP_BROWSER_TESTS=1 skips
the browser tests where they cannot be installed.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
import requests
import yaml
from llama_stack_client import LlamaStackClient

from agents_support import MODEL as STUB_MODEL, ToolCallingUpstream, agents_run_yaml
from auth_support import run_yaml_with_auth
from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT
from memory_support import fetch_minilm

ARTIFACTS = REPO_ROOT / "target" / "e2e-artifacts" / "playground"
SKIP_ENV = "LLAMA_STACK_SKIP_BROWSER_TESTS"
WAIT_S = 60
API_KEY = "playground-key-0123456789abcdef"
ICON = REPO_ROOT / "crates" / "playground" / "assets" / "icon.png"

FILES = {
    "moon.txt": "The Moon orbits the Earth about once every 27 days, and the same side always "
                "faces us because of tidal locking.",
    "reefs.txt": "Coral reefs are built by colonies of tiny animals and shelter a quarter of all "
                 "marine species.",
}


# --- browser -------------------------------------------------------------------------------


def _browser_binaries() -> tuple[str, str]:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: the browser tests are skipped")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(
            "headless Chromium is needed: apt-get install chromium chromium-driver "
            f"(or set {SKIP_ENV}=1)", pytrace=False,
        )
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    chromium, driver = _browser_binaries()
    # Selenium's own driver manager would try to download a browser; the Debian ones are used.
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_ = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver_
    driver_.quit()


def wait(browser, condition, message: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(
            lambda d: condition(d), message
        )
    except TimeoutException:
        # What the person would have seen, to tell a slow answer from a broken page.
        shown = browser.execute_script("return document.body.innerText")
        pytest.fail(f"{message}; the page showed:\n{shown[-3000:]}\n"
                    f"console: {page_errors(browser)}", pytrace=False)


def by_id(browser, element_id: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def all_css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def choose(browser, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    wait(browser, lambda d: any(o.get_attribute("value") == value
                                for o in Select(by_id(d, element_id)).options),
         f"#{element_id} never offered {value}")
    Select(by_id(browser, element_id)).select_by_value(value)


def type_into(browser, element_id: str, text: str) -> None:
    field = by_id(browser, element_id)
    field.clear()
    field.send_keys(text)


def open_page(browser, server, page: str) -> None:
    browser.get(f"{server.url}/playground#{page}")
    wait(browser, lambda d: by_id(d, f"tab-{page}").get_attribute("aria-selected") == "true",
         f"the {page} tab never opened")


def screenshot(browser, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def page_errors(browser) -> list[str]:
    """Script errors the page logged (a refused API call the page shows is not one)."""
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]


# --- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return fetch_minilm()


@pytest.fixture(scope="module")
def stack(server_factory, minilm, tokenizer_model):
    """The local distribution as shipped: the playground is on."""
    server = server_factory("playground", extra_env={
        "EMBEDDING_MODEL_PATH": str(minilm), "LLAMA3_TOKENIZER_MODEL": str(tokenizer_model),
    }).start()
    yield server
    server.stop()


# --- pages ---------------------------------------------------------------------------------


def test_chat_answer_streams_with_its_speed(browser, stack):
    open_page(browser, stack, "chat")
    wait(browser, lambda d: by_id(d, "chat-model").get_attribute("value"),
         "no model in the picker")
    type_into(browser, "chat-system", "You are terse.")
    # Random weights sampled warm give visible (if meaningless) text.
    type_into(browser, "chat-temperature", "1.0")
    type_into(browser, "chat-max-tokens", "24")
    type_into(browser, "chat-input", "Say something about the sea.")
    by_id(browser, "chat-send").click()

    answer = ".message.assistant .content"
    wait(browser, lambda d: [e for e in all_css(d, answer) if e.text.strip()],
         "no answer text appeared")
    wait(browser, lambda d: by_id(d, "chat-send").is_enabled(), "the answer never finished")
    stats = by_id(browser, "chat-stats").text
    assert re.search(r"Time to first token \d+(\.\d+)? m?s · [\d.]+ tok/s · \d+ tokens", stats), stats
    assert [e.text for e in all_css(browser, ".message.user .content")] == [
        "Say something about the sea."]
    screenshot(browser, "chat")

    # The conversation is kept in the browser: a reload shows it again.
    browser.refresh()
    wait(browser, lambda d: len(all_css(d, ".message")) == 2, "the conversation was not kept")

    # Stop ends a long answer early and the page is ready for the next message. Random
    # weights may sample an end-of-turn token early, so an answer that ended on its own before
    # Stop was pressed is asked for again.
    type_into(browser, "chat-max-tokens", "2000")
    for _ in range(3):
        type_into(browser, "chat-input", "Tell me a long story.")
        by_id(browser, "chat-send").click()
        wait(browser, lambda d: all_css(d, answer)[-1].text.strip()
             or by_id(d, "chat-send").is_enabled(), "the long answer never began")
        if by_id(browser, "chat-stop").is_enabled():
            by_id(browser, "chat-stop").click()
        wait(browser, lambda d: by_id(d, "chat-send").is_enabled(), "Stop did not end the answer")
        if all_css(browser, answer)[-1].text.endswith("[stopped]"):
            break
    else:
        pytest.fail("three long answers all ended before Stop was pressed")
    assert not by_id(browser, "chat-error").is_displayed()

    # An image for a text-only model: the server's refusal is shown, and the message goes back
    # to the box instead of staying in the conversation.
    by_id(browser, "chat-image").send_keys(str(ICON))
    wait(browser, lambda d: by_id(d, "chat-image-preview").is_displayed(), "no image preview")
    type_into(browser, "chat-input", "What is in this picture?")
    by_id(browser, "chat-send").click()
    wait(browser, lambda d: by_id(d, "chat-error").is_displayed(), "the refusal is not shown")
    assert "image" in by_id(browser, "chat-error").text
    assert by_id(browser, "chat-input").get_attribute("value") == "What is in this picture?"
    assert "Not sent" in all_css(browser, ".message.user")[-1].text
    assert page_errors(browser) == []


def test_documents_complete_and_answers_cite_them(browser, stack, tmp_path):
    open_page(browser, stack, "documents")
    type_into(browser, "store-name", "playground test")
    by_id(browser, "store-create").click()
    wait(browser, lambda d: "playground test" in by_id(d, "store-select").text,
         "the new store is not offered")

    paths = []
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    # A PDF that is not one: the store reports it failed, with its error.
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    paths.append(str(tmp_path / "broken.pdf"))
    by_id(browser, "doc-files").send_keys("\n".join(paths))

    def statuses(d):
        return {e.get_attribute("data-file"): e.get_attribute("data-status")
                for e in all_css(d, "#doc-list li")}

    wait(browser, lambda d: statuses(d) == {"moon.txt": "completed", "reefs.txt": "completed",
                                            "broken.pdf": "failed"},
         "the files did not all finish")
    failed = [e for e in all_css(browser, "#doc-list li")
              if e.get_attribute("data-file") == "broken.pdf"][0]
    assert "PDF" in failed.find_element("css selector", ".error-text").text

    # A file dropped on the zone goes the same way.
    browser.execute_script("""
        const files = new DataTransfer();
        files.items.add(new File(["Glaciers carve valleys over thousands of years."], "dropped.txt", {type: "text/plain"}));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: files, bubbles: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true}));""")
    wait(browser, lambda d: statuses(d).get("dropped.txt") == "completed",
         "the dropped file did not complete")
    wait(browser, lambda d: "(4 files)" in by_id(d, "store-select").text,
         "the store's file count was not updated")

    type_into(browser, "ask-max-tokens", "24")
    type_into(browser, "ask-input", "How long does the Moon take to orbit the Earth?")
    by_id(browser, "ask-send").click()
    wait(browser, lambda d: all_css(d, "#citations button.cite"), "no citation appeared")
    wait(browser, lambda d: by_id(d, "ask-send").is_enabled(), "the answer never finished")
    citations = all_css(browser, "#citations button.cite")
    first = citations[0]
    assert first.text == "[1] moon.txt", [c.text for c in citations]
    assert {c.get_attribute("data-file") for c in citations} <= {*FILES, "dropped.txt"}
    first.click()
    view = by_id(browser, "citation-view")
    wait(browser, lambda d: view.is_displayed(), "the cited passage is not shown")
    assert "moon.txt" in by_id(browser, "citation-title").text
    assert "tidal locking" in by_id(browser, "citation-text").text
    assert not by_id(browser, "ask-error").is_displayed()
    screenshot(browser, "documents")
    assert page_errors(browser) == []


def test_agent_turn_draws_its_steps(browser, stack):
    open_page(browser, stack, "agents")
    wait(browser, lambda d: by_id(d, "agent-new").get_attribute("open") is not None,
         "a server without agents does not offer to create one")
    type_into(browser, "agent-name", "shielded helper")
    choose(browser, "agent-input-shield", "CodeScanner")
    type_into(browser, "agent-max-tokens", "12")
    by_id(browser, "agent-create").click()
    wait(browser, lambda d: "shielded helper" in by_id(d, "agent-select").text,
         "the new agent is not listed")
    wait(browser, lambda d: by_id(d, "session-select").get_attribute("value"),
         "no session was opened")

    type_into(browser, "turn-input", "Hello there")
    by_id(browser, "turn-send").click()
    wait(browser, lambda d: "Turn finished" in by_id(d, "trace").text, "the turn never finished")
    steps = all_css(browser, "#trace .step")
    kinds = [s.get_attribute("data-step-type") for s in steps]
    assert kinds == ["shield_call", "inference"], kinds
    assert "Passed" in steps[0].text
    assert "user-input" in steps[0].text
    for step in steps:
        assert "done" in step.text
        assert re.search(r"\d+ ms|\d\.\d+ s", step.find_element("css selector", ".timing").text)

    # The shield stops code it does not like, and the trace says why.
    type_into(browser, "turn-input", "Run this: eval(input())")
    by_id(browser, "turn-send").click()
    wait(browser, lambda d: len(all_css(d, "#trace .turn-end")) == 2
         and "Turn finished" in all_css(d, "#trace .turn-end")[1].text,
         "the second turn never finished")
    second = all_css(browser, "#trace .turn")[1]
    assert "Violation (error)" in second.text and "eval-injection" in second.text
    screenshot(browser, "agents")

    # A reload draws the session's stored turns again.
    browser.refresh()
    wait(browser, lambda d: len(all_css(d, "#trace .turn")) == 2, "stored turns are not drawn")
    assert page_errors(browser) == []


def test_tool_calls_are_drawn_and_client_tools_answered_in_a_form(browser, server_factory, minilm, tmp_path_factory):
    """The stub model behind `agents_support` calls the client tool `get_weather` when the
    message says `[[call]]` (the turn pauses for its result, which the person types) and
    `knowledge_search` when it says `[[rag]]`."""
    upstream = ToolCallingUpstream()
    path = tmp_path_factory.mktemp("playground-agents") / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    agents_run_yaml(path, upstream.url, minilm, store)
    config = yaml.safe_load(path.read_text())
    config["server"] = {"playground": True}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = server_factory("playground-agents", run_config=str(path)).start()
    try:
        # An agent made by another client is listed like any other.
        agent = requests.post(f"{server.url}/v1/agents", timeout=HTTP_TIMEOUT_S, json={
            "agent_config": {"model": STUB_MODEL, "instructions": "", "name": "weather",
                             "client_tools": [{
                                 "name": "get_weather", "description": "Weather in a city",
                                 "parameters": [{"name": "city", "parameter_type": "string",
                                                 "description": "the city", "required": True}]}]}})
        agent.raise_for_status()
        open_page(browser, server, "agents")
        wait(browser, lambda d: "weather" in by_id(d, "agent-select").text, "the agent is not listed")
        type_into(browser, "turn-input", "Weather in Paris? [[call]]")
        by_id(browser, "turn-send").click()

        wait(browser, lambda d: by_id(d, "tool-form").is_displayed(), "no form for the tool call")
        form = by_id(browser, "tool-form")
        assert 'get_weather({"city":"Paris"})' in form.text
        assert "Waiting for client tool results" in by_id(browser, "trace").text
        by_id(browser, "tool-result-0").send_keys("sunny")
        form.find_element("css selector", "button[type=submit]").click()

        wait(browser, lambda d: "Turn finished" in by_id(d, "trace").text,
             "the resumed turn never finished")
        kinds = [s.get_attribute("data-step-type") for s in all_css(browser, "#trace .step")]
        assert kinds == ["inference", "tool_execution", "inference"], kinds
        tool_step = all_css(browser, "#trace .step")[1]
        assert "Result of get_weather" in tool_step.text and "sunny" in tool_step.text
        assert "The weather is sunny." in by_id(browser, "trace").text
        assert not by_id(browser, "tool-form").is_displayed()
        screenshot(browser, "agents-client-tool")

        # A server tool: an agent made in the page searches a store, and the trace shows the
        # call with its arguments and the passages it returned.
        client = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
        client.vector_dbs.register(vector_db_id="facts", embedding_model="all-MiniLM-L6-v2",
                                   embedding_dimension=384)
        client.tool_runtime.rag_tool.insert(vector_db_id="facts", chunk_size_in_tokens=128,
                                            documents=[{"document_id": "water", "metadata": {},
                                                        "content": "Water boils at 100 degrees "
                                                                   "Celsius at sea level."}])
        browser.refresh()
        wait(browser, lambda d: by_id(d, "agent-model").get_attribute("value"), "no models")
        by_id(browser, "agent-new").find_element("css selector", "summary").click()
        type_into(browser, "agent-name", "librarian")
        choose(browser, "agent-rag-store", "facts")
        by_id(browser, "agent-create").click()
        wait(browser, lambda d: "librarian" in by_id(d, "agent-select").text, "agent not made")
        wait(browser, lambda d: by_id(d, "session-select").get_attribute("value"), "no session")
        type_into(browser, "turn-input", "When does water boil? [[rag]]")
        by_id(browser, "turn-send").click()
        wait(browser, lambda d: "Turn finished" in by_id(d, "trace").text, "the turn never ended")
        steps = all_css(browser, "#trace .step")
        assert [s.get_attribute("data-step-type") for s in steps] == [
            "inference", "tool_execution", "inference"]
        assert 'knowledge_search({"query":"boiling point"})' in steps[1].text
        assert "Water boils at 100 degrees Celsius" in steps[1].text
        screenshot(browser, "agents-server-tool")
        assert page_errors(browser) == []
    finally:
        server.stop()
        upstream.stop()


def test_shield_and_moderation_verdicts_show(browser, stack):
    open_page(browser, stack, "safety")
    choose(browser, "shield-select", "CodeScanner")
    type_into(browser, "shield-input", "import os\nos.system(input())\neval(input())")
    by_id(browser, "shield-run").click()
    wait(browser, lambda d: "Violation" in by_id(d, "shield-verdict").text, "no verdict shown")
    verdict = by_id(browser, "shield-verdict").text
    assert "Violation (error)" in verdict and "eval-injection" in verdict, verdict
    assert re.search(r"Latency \d+", verdict), verdict

    type_into(browser, "shield-input", "What a lovely day.")
    by_id(browser, "shield-run").click()
    wait(browser, lambda d: "Safe" in by_id(d, "shield-verdict").text, "no safe verdict shown")

    choose(browser, "moderation-model", "CodeScanner")
    type_into(browser, "moderation-input", "eval(input())")
    by_id(browser, "moderation-run").click()
    wait(browser, lambda d: "Flagged" in by_id(d, "moderation-result").text,
         "no moderation result shown")
    assert "eval-injection" in by_id(browser, "moderation-result").text
    screenshot(browser, "safety")
    assert page_errors(browser) == []


def test_server_page_lists_providers_models_and_requests(browser, stack):
    open_page(browser, stack, "server")
    wait(browser, lambda d: "version" in by_id(d, "server-version").text, "no version shown")
    tables = by_id(browser, "server-tables")
    wait(browser, lambda d: "inline::candle" in tables.text, "providers are not listed")
    text = tables.text
    for expected in ("Providers", "Models", "Shields", "Vector stores", "Requests", "Routes",
                     "OK", "CodeScanner", "all-MiniLM-L6-v2", "/v1/chat/completions"):
        assert expected in text, expected
    screenshot(browser, "server")
    assert page_errors(browser) == []


def test_tabs_follow_the_keyboard_and_every_field_has_a_label(browser, stack):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, stack, "chat")
    by_id(browser, "tab-chat").send_keys(Keys.ARROW_RIGHT)
    wait(browser, lambda d: by_id(d, "tab-documents").get_attribute("aria-selected") == "true",
         "ArrowRight did not move to the next tab")
    assert browser.switch_to.active_element == by_id(browser, "tab-documents")
    assert by_id(browser, "page-documents").is_displayed()
    assert not by_id(browser, "page-chat").is_displayed()
    browser.switch_to.active_element.send_keys(Keys.END)
    wait(browser, lambda d: by_id(d, "tab-server").get_attribute("aria-selected") == "true",
         "End did not move to the last tab")
    unlabelled = browser.execute_script("""
        return [...document.querySelectorAll("input, select, textarea")]
          .filter((f) => f.type !== "hidden" && !f.labels.length && !f.getAttribute("aria-label"))
          .map((f) => f.id || f.outerHTML);""")
    assert unlabelled == []


def test_phone_width_keeps_every_page_on_screen(browser, stack):
    # A phone's viewport, emulated: desktop Chrome does not shrink its window this far.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        for page in ("chat", "documents", "agents", "safety", "server"):
            open_page(browser, stack, page)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{page} is {overflow}px wider than a phone"
            screenshot(browser, f"{page}-phone")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_token_is_asked_for_and_sent(browser, server_factory, tmp_path_factory):
    config = run_yaml_with_auth(tmp_path_factory, "playground-auth", {
        "provider_config": {"type": "api_keys",
                            "keys": [{"principal": "alice", "key": API_KEY}]}})
    secured = server_factory("playground-auth", run_config=config).start()
    try:
        # The page itself loads without a token; the API does not answer without one.
        assert requests.get(f"{secured.url}/playground", timeout=HTTP_TIMEOUT_S).status_code == 200
        assert requests.get(f"{secured.url}/v1/models", timeout=HTTP_TIMEOUT_S).status_code == 401
        open_page(browser, secured, "chat")
        wait(browser, lambda d: by_id(d, "auth-dialog").is_displayed(), "no token was asked for")
        type_into(browser, "auth-token", API_KEY)
        by_id(browser, "auth-save").click()
        wait(browser, lambda d: by_id(d, "chat-model").get_attribute("value"),
             "the models did not load with the token")
        assert not by_id(browser, "auth-dialog").is_displayed()
        assert by_id(browser, "forget-token").is_displayed()
        screenshot(browser, "auth")
        by_id(browser, "forget-token").click()
    finally:
        secured.stop()


# --- switched off --------------------------------------------------------------------------


def test_off_answers_404_like_any_unknown_route(server_factory):
    off = server_factory("playground-off", extra_env={"LLAMA_STACK_PLAYGROUND": "false"}).start()
    try:
        for path in ("/playground", "/playground/", "/playground/app.js"):
            response = requests.get(f"{off.url}{path}", timeout=HTTP_TIMEOUT_S)
            unknown = requests.get(f"{off.url}/no-such-page", timeout=HTTP_TIMEOUT_S)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == unknown.headers["content-type"]
    finally:
        off.stop()


def test_on_serves_typed_files_outside_the_api(stack):
    for path, media in (("/playground", "text/html"), ("/playground/app.js", "text/javascript"),
                        ("/playground/style.css", "text/css"),
                        ("/playground/icon.png", "image/png")):
        response = requests.get(f"{stack.url}{path}", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media), (path, response.headers)
    # It is a page, not an API route.
    routes = requests.get(f"{stack.url}/v1/inspect/routes", timeout=HTTP_TIMEOUT_S).json()
    assert not [r for r in routes["data"] if "playground" in r["route"]]
    assert "playground" not in requests.get(f"{stack.url}/openapi.json",
                                            timeout=HTTP_TIMEOUT_S).text
