"""A throw-away PostgreSQL server on 127.0.0.1 for tests: ``with running_postgres(tmp_path) as url: ...``.

Binaries are looked up in this order (the first directory holding ``initdb``, ``postgres`` and ``createdb`` wins):

1. ``$PG_BIN_DIR``;
2. the ``pgserver`` wheel from PyPI (dev extras), which ships a relocatable PostgreSQL build in
   ``site-packages/pgserver/pginstall/bin`` (only its binaries are used, not its server manager);
3. ``pg_config --bindir``, Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first), then ``$PATH``.

PostgreSQL refuses to run as root. When the tests run as root (as CI does here), initdb and the server run as the
``postgres`` system user (``nobody`` if there is none) through ``subprocess``'s ``user=``/``group=``; as that user
cannot reach into pytest's private ``/tmp/pytest-of-root`` (mode 0700), the cluster then lives in a fresh private
directory under the system temp dir, owned by that user and removed on exit, and the server log is copied to
``tmp_path/postgres.log``. Otherwise everything (cluster, unix socket dir, log) lives in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REQUIRED = ("initdb", "postgres", "createdb")
SUPERUSER = "postgres"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Test-only speed settings: durability is pointless for a cluster that is deleted afterwards.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "logging_collector": "off",
}
# Client/server environment variables that would point the tools at another server or data dir.
_PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATA", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGOPTIONS", "PGSERVICE")
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux; keep a margin


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in REQUIRED)


def _candidate_bindirs() -> Iterator[Path]:
    if os.environ.get("PG_BIN_DIR"):
        yield Path(os.environ["PG_BIN_DIR"])
    spec = importlib.util.find_spec("pgserver")  # locate without importing (its import sets up locks and dirs)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            yield Path(location) / "pginstall" / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            yield Path(out.stdout.strip())
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.replace(".", "").isdigit()]
        for version in sorted(versions, key=lambda p: [int(x) for x in p.name.split(".")], reverse=True):
            yield version / "bin"
    initdb = shutil.which("initdb")
    if initdb:
        yield Path(os.path.realpath(initdb)).parent


def find_postgres_bindir() -> Path:
    """The directory of the PostgreSQL server binaries; RuntimeError if there is none."""
    tried = []
    for bindir in _candidate_bindirs():
        if _has_binaries(bindir):
            return bindir
        tried.append(str(bindir))
    raise RuntimeError(
        "No PostgreSQL server binaries (initdb, postgres, createdb) found; install the dev extras "
        "(`pip install -e '.[dev]'`, which brings the pgserver wheel), or Debian's postgresql package, "
        f"or set PG_BIN_DIR. Looked in: {', '.join(tried) or 'nothing'}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """None when we may run the server ourselves; else the unprivileged account to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("Running as root and there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Fast-shutdown the postmaster if the test process dies without cleaning up (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def _postmaster_ready(data: Path) -> bool:
    # postmaster.pid line 8 is the status ("starting", "ready", "stopping"); PostgreSQL >= 10.
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _tail(path: Path, n: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT: disconnects clients, unlike SIGTERM's smart shutdown), then immediate, then kill."""
    for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
            return


@contextlib.contextmanager
def running_postgres(tmp_path: Path, dbname: str = "optuna", driver: str | None = None) -> Iterator[str]:
    """Start a fresh PostgreSQL cluster on 127.0.0.1 and yield an SQLAlchemy URL to a new database in it.

    ``driver`` is the SQLAlchemy DBAPI name in the URL ("psycopg" or "psycopg2"); by default the first importable
    one (psycopg first: SQLAlchemy 2.1's default for postgresql://). The server is stopped and its data removed
    on exit, also when the body raises. RuntimeError if no binaries are found or the server does not start.
    """
    bindir = find_postgres_bindir()
    if driver is None:
        driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d) is not None), None)
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    user = _server_user()
    as_user: dict = {}
    private_base: Path | None = None
    if user is None:
        base = tmp_path / "postgres"
        base.mkdir()
    else:
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        if _traversable_by_others(tmp_path):
            base = tmp_path / "postgres"
            base.mkdir()
        else:
            base = private_base = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
        os.chown(base, user.pw_uid, user.pw_gid)
    data, sockdir, log = base / "data", base / "sock", base / "server.log"
    if len(str(sockdir / ".s.PGSQL.65535")) > _SUN_PATH_MAX:  # very long tmp_path: socket elsewhere
        sockdir = Path(tempfile.mkdtemp(prefix="pgsock-"))
        private_sock: Path | None = sockdir
    else:
        sockdir.mkdir()
        private_sock = None
    if user is not None:
        os.chown(sockdir, user.pw_uid, user.pw_gid)

    env = {k: v for k, v in os.environ.items() if k not in _PG_ENV}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    if user is not None:
        env.update(HOME=str(base), USER=user.pw_name, LOGNAME=user.pw_name)

    proc: subprocess.Popen | None = None
    try:
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
            + ["--locale=C", "--no-sync"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            **as_user,
        )
        if init.returncode != 0:
            who = f" as user {user.pw_name!r}" if user else ""
            raise RuntimeError(f"initdb{who} failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")

        settings = [arg for k, v in SERVER_SETTINGS.items() for arg in ("-c", f"{k}={v}")]
        for _attempt in range(5):  # the free port can be taken between probing and binding: retry with another
            port = _free_port()
            with open(log, "ab") as log_file:
                if user is not None:
                    os.fchown(log_file.fileno(), user.pw_uid, user.pw_gid)
                proc = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockdir), *settings],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # a ^C to pytest must not reach the server before we stop it
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                    **as_user,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while proc.poll() is None and not _postmaster_ready(data) and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is None and _postmaster_ready(data):
                break
            _stop(proc)
            if "could not bind" not in _tail(log) and "already in use" not in _tail(log):
                raise RuntimeError(f"PostgreSQL did not start (exit {proc.returncode}); log {log}:\n{_tail(log)}")
        else:
            raise RuntimeError(f"PostgreSQL could not bind a free port on 127.0.0.1; log {log}:\n{_tail(log)}")

        created = subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-w", dbname],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if created.returncode != 0:
            raise RuntimeError(f"createdb {dbname} failed ({created.returncode}):\n{created.stdout}\n{created.stderr}")

        scheme = f"postgresql+{driver}" if driver else "postgresql"
        yield f"{scheme}://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
    finally:
        if proc is not None:
            _stop(proc)
        if private_base is not None and log.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(log, tmp_path / "postgres.log")
        for path in (data, private_sock, private_base):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
