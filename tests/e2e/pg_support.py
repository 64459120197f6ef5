"""A throwaway PostgreSQL cluster with pgvector for the end-to-end tests, the Python twin of
crates/pg-test-server.

    server = PostgresServer.start()          # initdb + pg_ctl on a free port of 127.0.0.1
    env = server.create_database("rag")      # POSTGRES_HOST/PORT/DB/USER/PASSWORD
    ...
    server.stop()                            # also done at interpreter exit

The cluster runs from the local PostgreSQL installation (scripts/setup-postgres.sh installs
PostgreSQL 15 and pgvector), with password authentication for the superuser `llama`. Tests
run as root here and PostgreSQL refuses to, so as root the cluster runs as the `postgres` user
(or `nobody`) through runuser. A watchdog shell stops the cluster and deletes its folder when
this process ends in any way, even when killed.

When PostgreSQL or pgvector is missing, start() raises PostgresUnavailable, whose message names
scripts/setup-postgres.sh; callers skip only when LLAMA_STACK_SKIP_PG_TESTS=1.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SKIP_ENV = "LLAMA_STACK_SKIP_PG_TESTS"
HOST = "127.0.0.1"
USER = "llama"
PASSWORD = "llama-test-password"
SETUP_HINT = (
    "run scripts/setup-postgres.sh to install PostgreSQL 15 and pgvector "
    f"(or set {SKIP_ENV}=1 to skip the PostgreSQL-backed tests)"
)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL or pgvector is not installed here."""


def find_bin_dir() -> Path:
    """PostgreSQL's bin folder: $PG_BIN_DIR, else the newest /usr/lib/postgresql/*/bin, else
    initdb on PATH; pgvector must be installed beside it."""
    configured = os.environ.get("PG_BIN_DIR")
    if configured:
        bin_dir = Path(configured)
        if not (bin_dir / "initdb").is_file():
            raise PostgresUnavailable(f"PG_BIN_DIR={configured} holds no initdb; {SETUP_HINT}")
    else:
        versions = sorted(
            (int(p.name), p / "bin")
            for p in Path("/usr/lib/postgresql").glob("*")
            if p.name.isdigit() and (p / "bin" / "initdb").is_file()
        ) if Path("/usr/lib/postgresql").is_dir() else []
        if versions:
            bin_dir = versions[-1][1]
        elif shutil.which("initdb"):
            bin_dir = Path(os.path.realpath(shutil.which("initdb"))).parent
        else:
            raise PostgresUnavailable(f"PostgreSQL is not installed (no initdb found); {SETUP_HINT}")
    try:
        share = subprocess.run(
            [str(bin_dir / "pg_config"), "--sharedir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        raise PostgresUnavailable(f"cannot run pg_config in {bin_dir}: {err}; {SETUP_HINT}") from err
    control = Path(share) / "extension" / "vector.control"
    if not control.is_file():
        raise PostgresUnavailable(f"the pgvector extension is not installed ({control} is missing); {SETUP_HINT}")
    return bin_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _unprivileged_user() -> str:
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        return "nobody"


class PostgresServer:
    """A running throwaway cluster; see the module docs."""

    _names = itertools.count()

    def __init__(self, bin_dir: Path, root: Path, run_as: str | None):
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.run_as = run_as
        self.host = HOST
        self.port = 0
        self.user = USER
        self.password = PASSWORD
        self._watchdog: subprocess.Popen | None = None

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> "PostgresServer":
        """initdb and start a cluster; `settings` are extra postgresql.conf lines."""
        bin_dir = find_bin_dir()
        root = Path(tempfile.mkdtemp(prefix="llama-stack-pg-"))
        run_as = _unprivileged_user() if os.geteuid() == 0 else None
        server = cls(bin_dir, root, run_as)
        try:
            server._initdb(settings or {})
            server._start_postmaster()
            server._start_watchdog()
        except Exception:
            server.stop()
            raise
        atexit.register(server.stop)
        return server

    def _command(self, program: str) -> list[str]:
        path = str(self.bin_dir / program)
        return ["runuser", "-u", self.run_as, "--", path] if self.run_as else [path]

    def _run(self, args: list[str], what: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def _initdb(self, settings: dict[str, str]) -> None:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD)
        if self.run_as:
            self._run(["chown", "-R", f"{self.run_as}:", str(self.root)], "chown")
        self._run(
            self._command("initdb")
            + ["-D", str(self.data), "-U", USER, "-A", "scram-sha-256", "--auth-local=trust",
               "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
               f"--pwfile={password_file}"],
            "initdb",
        )
        conf = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.root),
            # Throwaway data: durability off, for speed.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **settings,
        }
        with open(self.data / "postgresql.conf", "a") as f:
            for name, value in conf.items():
                escaped = str(value).replace("'", "''")
                f.write(f"{name} = '{escaped}'\n")

    def _start_postmaster(self) -> None:
        last = ""
        for _ in range(5):
            port = _free_port()
            proc = subprocess.run(
                self._command("pg_ctl")
                + ["-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", f"-p {port}", "start"],
                capture_output=True, text=True, stdin=subprocess.DEVNULL,
            )
            if proc.returncode == 0:
                self.port = port
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            last = f"pg_ctl start failed: {proc.stdout}{proc.stderr}\nserver log:\n{log}"
            if "could not bind" not in log and "in use" not in log:
                break
        raise RuntimeError(last)

    def _start_watchdog(self) -> None:
        # Reads its stdin until end of file, which comes when this process closes the pipe or
        # ends in any way; then stops the cluster and deletes its folder.
        script = ('trap "" INT HUP TERM; read _; "$@" -D "$PG_TEST_DATA" -m immediate stop '
                  '>/dev/null 2>&1; rm -rf "$PG_TEST_ROOT"')
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script, "pg-test-watchdog", *self._command("pg_ctl")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PG_TEST_DATA": str(self.data), "PG_TEST_ROOT": str(self.root)},
        )

    def psql(self, database: str, sql: str) -> str:
        """Runs SQL through psql and returns its unaligned output."""
        proc = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", HOST, "-p", str(self.port), "-U", USER, "-d", database, "-c", sql],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, "PGPASSWORD": PASSWORD},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {proc.stderr}\nserver log:\n{self.log_tail()}")
        return proc.stdout.strip()

    def create_database(self, name: str) -> dict[str, str]:
        """A new database (named after `name`, made unique) with the vector extension; returns
        its POSTGRES_HOST/PORT/DB/USER/PASSWORD."""
        clean = re.sub(r"[^a-z0-9]", "_", name.lower())[:40]
        database = f"{clean}_{next(self._names)}"
        self.psql("postgres", f'CREATE DATABASE "{database}"')
        self.psql(database, "CREATE EXTENSION IF NOT EXISTS vector")
        return self.env(database)

    def env(self, database: str) -> dict[str, str]:
        """Connection settings of one database as the environment run.yaml files read."""
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_DB": database,
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
        }

    def url(self, database: str) -> str:
        return f"postgres://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stops the cluster and deletes its folder; safe to call twice."""
        if self._watchdog is not None:
            watchdog, self._watchdog = self._watchdog, None
            watchdog.stdin.close()
            watchdog.wait(timeout=60)
        elif self.port:
            subprocess.run(self._command("pg_ctl") + ["-D", str(self.data), "-m", "immediate", "stop"],
                           capture_output=True, stdin=subprocess.DEVNULL)
        self.port = 0
        shutil.rmtree(self.root, ignore_errors=True)
