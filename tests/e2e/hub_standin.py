"""A local HTTP server answering the Hugging Face Hub routes that `hf-hub` uses, so that
`llama-stack model download` can be tested with HF_ENDPOINT pointing at it.

Routes (as huggingface.co serves them):
  GET /api/models/{owner}/{name}/revision/{rev}[?blobs=true]
      model info: `sha` (the commit) and `siblings` with `rfilename`, `size`, `blobId` and
      `lfs.sha256` (the etag of an LFS file, hence its blob name in the cache).
  GET /{owner}/{name}/resolve/{rev}/{path}
      the file; `Range: bytes=a-b` or `bytes=a-` answers 206 with `Content-Range`, and every
      answer carries `ETag` and `X-Repo-Commit`. hf-hub first asks for `bytes=0-0` to learn the
      etag, commit and size, then for `bytes=<stored>-` (0, or where a `.part` file stopped).
Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`,
`GatedRepo`) like the Hub's.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

INFO_ROUTE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
RESOLVE_ROUTE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class HubRepo:
    files: dict[str, bytes]
    commit: str
    # A gated repository: no token answers 401, another token 403.
    token: str | None = None

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    range: str | None


@dataclass
class StandInHub:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # Files whose transfers stop halfway through, as a dropped connection would.
    interrupt: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None
    # HF_HOME for the clients under test, so that no token file of this machine is read.
    home: Path | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def publish(self, repo_id: str, folder: Path, token: str | None = None, **extra: bytes) -> HubRepo:
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        files.update(extra)
        commit = hashlib.sha1(repo_id.encode() + b"".join(files.values())).hexdigest()
        repo = HubRepo(files=files, commit=commit, token=token)
        self.repos[repo_id] = repo
        return repo

    def file_requests(self, name: str | None = None) -> list[Request]:
        """Requests for file contents (not the `bytes=0-0` probes), optionally of one file."""
        return [
            r for r in self.requests
            if "/resolve/" in r.path and r.range != "bytes=0-0"
            and (name is None or r.path.endswith("/" + name))
        ]

    def start(self) -> "StandInHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(Request(
                    "GET", path, self.headers.get("Authorization"), self.headers.get("Range")
                ))
                if m := INFO_ROUTE.match(path):
                    return self.info(m["repo"], m["rev"])
                if m := RESOLVE_ROUTE.match(path):
                    return self.resolve(m["repo"], m["rev"], m["path"])
                self.error(404, "RepoNotFound", "no such route")

            def error(self, status: int, code: str, message: str):
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def repo(self, repo_id: str, rev: str) -> HubRepo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self.error(404, "RepoNotFound", "Repository not found")
                    return None
                if repo.token is not None:
                    auth = self.headers.get("Authorization")
                    if auth is None:
                        self.error(401, "GatedRepo", "Access to this model is restricted")
                        return None
                    if auth != f"Bearer {repo.token}":
                        self.error(403, "GatedRepo", "Your request to access this model is pending")
                        return None
                if rev not in ("main", repo.commit):
                    self.error(404, "RevisionNotFound", "Invalid rev id")
                    return None
                return repo

            def info(self, repo_id: str, rev: str):
                repo = self.repo(repo_id, rev)
                if repo is None:
                    return
                siblings = [
                    {
                        "rfilename": name,
                        "size": len(data),
                        "blobId": hashlib.sha1(data).hexdigest(),
                        "lfs": {"sha256": repo.sha256(name), "size": len(data), "pointerSize": 134},
                    }
                    for name, data in sorted(repo.files.items())
                ]
                body = json.dumps(
                    {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "siblings": siblings}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def resolve(self, repo_id: str, rev: str, name: str):
                repo = self.repo(repo_id, rev)
                if repo is None:
                    return
                data = repo.files.get(name)
                if data is None:
                    return self.error(404, "EntryNotFound", f"{name} does not exist")
                start, end = 0, len(data) - 1
                wanted = self.headers.get("Range")
                if wanted:
                    m = RANGE.match(wanted)
                    if not m or int(m[1]) >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    start = int(m[1])
                    end = min(int(m[2]), end) if m[2] else end
                chunk = data[start:end + 1]
                self.send_response(206 if wanted else 200)
                self.send_header("ETag", f'"{repo.sha256(name)}"')
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("Accept-Ranges", "bytes")
                if wanted:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if name in hub.interrupt and wanted != "bytes=0-0":
                    # Half the promised bytes, then the connection drops.
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
