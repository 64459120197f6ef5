"""Image pages in the document-QA recipe: `llama-stack recipe doc-qa` on a folder holding a PNG
and a text file, the PNG described at ingestion by a Llama 3.2 Vision checkpoint served by
`inline::candle` (the random-weight `vision-tiny` preset) and indexed as text under its own
file name.

Random weights describe noise, so the tests assert what ingestion must do: the image goes to the
vision model, its description is inserted under the image's document id and cited from there,
an image over the server's limits is reported by name while the rest go in, and a model that
takes no images leaves the images out with a warning naming --vision-model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from e2e_support import REPO_ROOT, png_claiming
from memory_support import fetch_minilm
from test_recipe import DocQaUpstream, answers, describe, recipe, text_of

FIXTURES = REPO_ROOT / "crates" / "providers" / "inference-candle" / "tests" / "fixtures" / "mllama"
VISION_MODEL = "meta-llama/Llama-3.2-11B-Vision-Instruct"
VISION_IDENTIFIER = f"candle/{VISION_MODEL}"
TEXT_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
TEXT_IDENTIFIER = f"candle/{TEXT_MODEL}"
STUB_MODEL = "doc-qa-stub"
LIGHTHOUSE = "Harbour notes\n\nThe Varnholt lighthouse was painted teal in 1931.\n"
QUESTION = "What colour was the Varnholt lighthouse painted?"






@pytest.fixture(scope="module")
def minilm() -> Path:
    return fetch_minilm()


@pytest.fixture(scope="module")
def upstream():
    up = DocQaUpstream()
    yield up
    up.stop()


def write_run_yaml(path: Path, *, model_dir: Path, model_id: str, minilm: Path,
                   upstream_url: str | None = None) -> Path:
    """The candle model (and the stub LLM first, when given) plus MiniLM, with stores under
    ${env.DOC_QA_STORE}."""
    store = "${env.DOC_QA_STORE}"
    stub = [{"provider_id": "stub", "provider_type": "remote::openai-compat",
             "config": {"url": upstream_url, "resilience": {"max_retries": 0}}}] \
        if upstream_url else []
    stub_model = [{"model_id": STUB_MODEL, "provider_id": "stub", "model_type": "llm"}] \
        if upstream_url else []
    config = {
        "version": 2,
        "image_name": "doc-qa-images-e2e",
        "apis": ["inference", "agents", "vector_io", "tool_runtime"],
        "providers": {
            "inference": stub + [
                {"provider_id": "candle", "provider_type": "inline::candle",
                 "config": {"model_path": str(model_dir), "device": "cpu",
                            "default_max_tokens": 16, "max_batch_size": 2,
                            "prefix_cache_slots": 0}},
                {"provider_id": "sentence-transformers",
                 "provider_type": "inline::sentence-transformers",
                 "config": {"model_path": str(minilm)}},
            ],
            "agents": [{"provider_id": "meta-reference",
                        "provider_type": "inline::meta-reference", "config": {}}],
            "vector_io": [{"provider_id": "sqlite-vec", "provider_type": "inline::sqlite-vec",
                           "config": {"db_path": f"{store}/vec.db"}}],
            "tool_runtime": [{"provider_id": "rag-runtime",
                              "provider_type": "inline::rag-runtime", "config": {}}],
        },
        "metadata_store": {"type": "sqlite", "db_path": f"{store}/registry.db"},
        "models": stub_model + [
            {"model_id": model_id, "provider_id": "candle", "model_type": "llm"},
            {"model_id": "all-MiniLM-L6-v2", "provider_id": "sentence-transformers",
             "model_type": "embedding", "metadata": {"embedding_dimension": 384}},
        ],
        "tool_groups": [{"toolgroup_id": "builtin::rag", "provider_id": "rag-runtime"}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def image_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scans").mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "alpha.png", root / "scans" / "alpha.png")
    (root / "lighthouse.txt").write_text(LIGHTHOUSE)
    return root


def test_the_vision_model_describes_and_answers(
        llama_stack_bin, vision_model_dir, minilm, tmp_path):
    """The answering model is a vision model, so it describes the image pages too."""
    config = write_run_yaml(tmp_path / "run.yaml", model_dir=vision_model_dir,
                            model_id=VISION_MODEL, minilm=minilm)
    docs = image_folder(tmp_path / "docs")
    proc = recipe(llama_stack_bin, config, tmp_path / "store", "--docs", str(docs),
                  "--vision-max-tokens", "24", "--question", QUESTION)
    assert proc.returncode == 0, describe(proc)
    assert f"Described the image `scans/alpha.png` with `{VISION_IDENTIFIER}`" in proc.stderr, \
        describe(proc)
    assert "Ingested 2 documents into `doc-qa-" in proc.stderr, describe(proc)
    assert f"Answering with `{VISION_IDENTIFIER}`" in proc.stderr, describe(proc)
    assert len(answers(proc.stdout)) == 1, describe(proc)

    # The same documents described the same way find their vector DB again.
    again = recipe(llama_stack_bin, config, tmp_path / "store", "--docs", str(docs),
                   "--vision-max-tokens", "24", "--question", QUESTION)
    assert again.returncode == 0, describe(again)
    assert "Using the existing vector DB `doc-qa-" in again.stderr, describe(again)
    assert "Described" not in again.stderr, describe(again)


def test_an_answer_cites_the_image_and_oversized_pages_are_reported(
        llama_stack_bin, vision_model_dir, minilm, upstream, tmp_path):
    """A text LLM answers (the stub searches and quotes); --vision-model describes the pages."""
    config = write_run_yaml(tmp_path / "run.yaml", model_dir=vision_model_dir,
                            model_id=VISION_MODEL, minilm=minilm, upstream_url=upstream.url)
    docs = image_folder(tmp_path / "docs")
    # The header claims 64 million pixels, over the server's 40 million.
    (docs / "huge.png").write_bytes(png_claiming(8000, 8000))
    proc = recipe(llama_stack_bin, config, tmp_path / "store", "--docs", str(docs),
                  "--vision-model", VISION_IDENTIFIER, "--vision-max-tokens", "24",
                  "--question", QUESTION)
    assert proc.returncode == 0, describe(proc)
    assert f"Answering with `stub/{STUB_MODEL}`" in proc.stderr, describe(proc)
    assert f"Described the image `scans/alpha.png` with `{VISION_IDENTIFIER}`" in proc.stderr, \
        describe(proc)
    error = next((line for line in proc.stderr.splitlines()
                  if line.startswith("error: document `huge.png` not ingested:")), None)
    assert error is not None, describe(proc)
    assert "over the limit of 40000000 pixels" in error and "messages[" not in error, error
    assert "Ingested 2 of 3 documents" in proc.stderr, describe(proc)
    [(text, sources)] = answers(proc.stdout)
    assert "painted teal in 1931" in text, describe(proc)
    # Both inserted documents are retrieved (five chunks are asked for); the image is cited by
    # its path in the folder.
    assert sources[0] == "lighthouse.txt" and "scans/alpha.png" in sources, sources
    assert "huge.png" not in sources, sources
    # The passage the answering model read says it came from an image.
    found = [text_of(m["content"]) for r in upstream.requests for m in r["messages"]
             if m["role"] == "tool"]
    assert any("source_image" in t and "image/png" in t and VISION_IDENTIFIER in t
               for t in found), found


def test_a_text_model_leaves_the_images_out_with_a_warning(
        llama_stack_bin, tiny_model_dir, minilm, tmp_path):
    config = write_run_yaml(tmp_path / "run.yaml", model_dir=tiny_model_dir,
                            model_id=TEXT_MODEL, minilm=minilm)
    docs = image_folder(tmp_path / "docs")
    shutil.copy(FIXTURES / "portrait.jpg", docs / "portrait.jpg")
    proc = recipe(llama_stack_bin, config, tmp_path / "store", "--docs", str(docs),
                  "--question", QUESTION)
    assert proc.returncode == 0, describe(proc)
    warning = next((line for line in proc.stderr.splitlines()
                    if line.startswith("warning: the 2 image files are not ingested")), None)
    assert warning is not None, describe(proc)
    assert f"`{TEXT_IDENTIFIER}`" in warning and "--vision-model" in warning, warning
    assert "Ingested 1 of 3 documents" in proc.stderr and "2 image files skipped" in proc.stderr, \
        describe(proc)

    # Named explicitly, the same model is an error of its own.
    named = recipe(llama_stack_bin, config, tmp_path / "store2", "--docs", str(docs),
                   "--vision-model", TEXT_IDENTIFIER, "--question", QUESTION)
    assert named.returncode == 0, describe(named)
    assert f"error: --vision-model {TEXT_IDENTIFIER} did not take the image" in named.stderr, \
        describe(named)


def test_images_alone_with_a_text_model_fail_clearly(
        llama_stack_bin, tiny_model_dir, minilm, tmp_path):
    config = write_run_yaml(tmp_path / "run.yaml", model_dir=tiny_model_dir,
                            model_id=TEXT_MODEL, minilm=minilm)
    page = tmp_path / "page.png"
    shutil.copy(FIXTURES / "alpha.png", page)
    proc = recipe(llama_stack_bin, config, tmp_path / "store", "--docs", str(page),
                  "--question", QUESTION)
    assert proc.returncode != 0, describe(proc)
    assert "warning: the image file is not ingested" in proc.stderr, describe(proc)
    assert "the document could not be ingested" in proc.stderr, describe(proc)
    assert proc.stdout == "", describe(proc)
