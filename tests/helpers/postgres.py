"""A throw-away PostgreSQL server on 127.0.0.1 for tests: ``with running_postgres(tmp_path) as url: ...``.

Binaries are looked up in this order (the first directory holding ``initdb``, ``postgres`` and ``createdb`` wins):

1. ``$PG_BIN_DIR``;
2. the ``pgserver`` wheel from PyPI (dev extras), which ships a relocatable PostgreSQL build in
   ``site-packages/pgserver/pginstall/bin`` (only its binaries are used, not its server manager, which would
   ``useradd`` and chmod every parent directory when run as root);
3. ``pg_config --bindir``, Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first), then ``$PATH``.

PostgreSQL refuses to run as root. When the tests run as root (as CI does here), initdb and the server run as the
``postgres`` system user (``nobody`` if there is none) through ``subprocess``'s ``user=``/``group=``. That user
cannot reach into pytest's private ``/tmp/pytest-of-root`` (mode 0700), so the cluster then lives in a fresh private
directory under the system temp dir, owned by that user and removed on exit, and the server log is copied to
``tmp_path/postgres.log``; and if the binaries sit where that user cannot reach them (a venv under ``/root``),
a self-contained install such as pgserver's is copied next to the cluster first. Otherwise everything (cluster,
unix socket dir, log) lives in a fresh ``tmp_path/postgres-*`` directory, where the log stays after exit.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from collections.abc import Callable, Iterator
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


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _reachable_by_others(bindir: Path) -> bool:
    return _traversable_by_others(bindir) and all((bindir / name).stat().st_mode & 0o001 for name in REQUIRED)


def _self_contained(bindir: Path) -> bool:
    """A relocatable install (bin/, lib/, share/ side by side, as pgserver's), which still runs when copied."""
    prefix = bindir.parent
    return (prefix / "lib").is_dir() and (prefix / "share" / "postgresql" / "postgresql.conf.sample").exists()


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


def find_postgres_bindir(for_other_user: bool = False) -> Path:
    """The directory of the PostgreSQL server binaries; RuntimeError if there is none.

    ``for_other_user``: prefer directories that an unprivileged user can reach; failing those, a self-contained
    install that cannot be reached (the caller copies it); failing that, RuntimeError.
    """
    tried, copyable = [], None
    for bindir in _candidate_bindirs():
        if not _has_binaries(bindir):
            tried.append(str(bindir))
        elif not for_other_user or _reachable_by_others(bindir):
            return bindir
        else:
            tried.append(f"{bindir} (not reachable by an unprivileged user)")
            if copyable is None and _self_contained(bindir):
                copyable = bindir
    if copyable is not None:
        return copyable
    raise RuntimeError(
        "No usable PostgreSQL server binaries (initdb, postgres, createdb) found; install the dev extras "
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


def _parent_death_hook() -> Callable[[], None] | None:
    """A preexec_fn that fast-shuts-down the postmaster if the test process dies without cleaning up (Linux).

    Everything is resolved here, before the fork: in the child, after the switch to an unprivileged user,
    Python may no longer be able to read its own modules (e.g. an interpreter under /root).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigint = int(signal.SIGINT)

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(1, sigint)  # PR_SET_PDEATHSIG

    return hook


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


def _sweep_stale_private_dirs(max_age_s: float = 3600.0) -> None:
    """Remove private cluster dirs left by test processes that were killed (their server, gone, left no pid file)."""
    for path in Path(tempfile.gettempdir()).glob("pytest-postgres-*"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > max_age_s and not (path / "data" / "postmaster.pid").exists():
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running_postgres(tmp_path: Path, dbname: str = "optuna", driver: str | None = None) -> Iterator[str]:
    """Start a fresh PostgreSQL cluster on 127.0.0.1 and yield an SQLAlchemy URL to a new database in it.

    ``driver`` is the SQLAlchemy DBAPI name in the URL ("psycopg" or "psycopg2"); by default the first importable
    one (psycopg first: SQLAlchemy 2.1's default for postgresql://). The server is stopped and its data removed
    on exit, also when the body raises. RuntimeError if no binaries are found or the server does not start.
    """
    user = _server_user()
    bindir = find_postgres_bindir(for_other_user=user is not None)
    if driver is None:
        driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d) is not None), None)
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    as_user: dict = {}
    env = {k: v for k, v in os.environ.items() if k not in _PG_ENV}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    private_base: Path | None = None
    private_sock: Path | None = None
    data = install = log = None
    proc: subprocess.Popen | None = None
    try:
        if user is not None and not _traversable_by_others(tmp_path):
            _sweep_stale_private_dirs()
            base = private_base = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
        else:  # unique, so that several servers can share one tmp_path
            base = Path(tempfile.mkdtemp(prefix="postgres-", dir=tmp_path))
        data, sockdir, log, install = base / "data", base / "sock", base / "server.log", base / "pginstall"
        if len(str(sockdir / ".s.PGSQL.65535")) > _SUN_PATH_MAX:  # very long tmp_path: socket elsewhere
            sockdir = private_sock = Path(tempfile.mkdtemp(prefix="pgsock-"))
        else:
            sockdir.mkdir()
        if user is not None:
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env.update(HOME=str(base), USER=user.pw_name, LOGNAME=user.pw_name)
            for path in (base, sockdir):
                os.chown(path, user.pw_uid, user.pw_gid)

        if user is not None and not _reachable_by_others(bindir):  # e.g. pgserver in a venv under /root
            # ~35 MB, well under a second. The wheel's binaries find auditwheel's bundled libraries (libpq) through
            # RPATH $ORIGIN/../../../pgserver.libs, so the copy keeps the layout <pkg>/<prefix>/bin + <pkg>.libs.
            prefix, pkg = bindir.parent, bindir.parent.parent
            shutil.copytree(prefix, install / pkg.name / prefix.name, symlinks=True)
            if (pkg.parent / f"{pkg.name}.libs").is_dir():
                shutil.copytree(pkg.parent / f"{pkg.name}.libs", install / f"{pkg.name}.libs", symlinks=True)
            for path in [install, *install.rglob("*")]:
                if not path.is_symlink():  # o+r everywhere, o+x on directories and executables
                    path.chmod(path.stat().st_mode | 0o004 | (0o001 if path.stat().st_mode & 0o111 else 0))
            bindir = install / pkg.name / prefix.name / "bin"

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
                    preexec_fn=_parent_death_hook(),
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
        if private_base is not None and log is not None and log.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(log, tmp_path / "postgres.log")
        for path in (data, install, private_sock, private_base):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
