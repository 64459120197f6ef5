"""Writes the retrieval-quality corpus: docstrings of Python standard library modules and
functions, one plain-text document each, under stdlib_docs/, plus stdlib_docs/manifest.json
naming the source of every document.

The docstrings are part of CPython, distributed under the PSF License Agreement
(https://docs.python.org/3/license.html), which allows copying and redistribution with the
copyright notice kept; see README.md next to this script.

Run with the Python the corpus should come from (the committed files came from 3.11.7):
    python tests/e2e/data/make_stdlib_corpus.py
"""

from __future__ import annotations

import importlib
import inspect
import json
import platform
from pathlib import Path

# Modules, classes and functions whose docstrings say what they are for in prose (a few
# words of reference text would be no fair test of retrieval).
NAMES = [
    "json", "csv", "heapq", "itertools.groupby", "itertools.chain", "functools.lru_cache",
    "collections.Counter", "collections.deque", "collections.namedtuple", "shutil.copytree",
    "shutil.rmtree", "shutil.which", "shutil.disk_usage", "os.walk", "subprocess.run",
    "statistics.median", "statistics.stdev", "textwrap.dedent", "textwrap.wrap", "re.sub",
    "datetime.timedelta", "tempfile.NamedTemporaryFile", "zipfile.ZipFile", "gzip", "zlib.compress",
    "hashlib", "base64.b64encode", "urllib.parse.urlparse", "glob.glob", "fnmatch",
    "difflib.get_close_matches", "pickle", "copy", "struct", "time.sleep", "math.isclose", "uuid",
    "secrets", "argparse", "logging.basicConfig", "threading.Event", "sched",
    "contextlib.contextmanager", "dataclasses.dataclass", "timeit", "socket.create_connection",
    "http.server", "html.escape", "unicodedata.normalize", "getpass.getpass", "io.StringIO",
]


def resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def main() -> None:
    out = Path(__file__).resolve().parent / "stdlib_docs"
    out.mkdir(exist_ok=True)
    version = platform.python_version()
    manifest = []
    for name in NAMES:
        doc = inspect.getdoc(resolve(name))
        assert doc and len(doc) > 100, f"{name} has no useful docstring"
        path = out / f"{name}.txt"
        # A title line and the docstring, the way a reference page reads.
        path.write_text(f"{name}\n\n{doc.strip()}\n", encoding="utf-8")
        manifest.append({
            "document_id": name,
            "file": path.name,
            "source": f"docstring of `{name}` in the CPython {version} standard library "
                      f"(inspect.getdoc)",
            "license": "PSF-2.0",
        })
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(manifest)} documents to {out}")


if __name__ == "__main__":
    main()
