"""The secrets of a ``make run`` stack: the admin (master) key, the internal token the
gateway shows the services behind it, and the private Redis's password.

Made once with 256 random bits each and kept in ``<data dir>/secrets.json`` (mode 0600),
so restarts keep working and ``openchatkit keys`` finds the master key.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "secrets.json"


@dataclass(frozen=True)
class StackSecrets:
    master_key: str
    internal_token: str
    redis_password: str

    @classmethod
    def load(cls, data_dir: os.PathLike[str] | str) -> StackSecrets | None:
        path = Path(data_dir) / FILE_NAME
        try:
            data = json.loads(path.read_text())
            return cls(**{k: str(data[k]) for k in ("master_key", "internal_token", "redis_password")})
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            return None

    @classmethod
    def load_or_create(cls, data_dir: os.PathLike[str] | str) -> StackSecrets:
        found = cls.load(data_dir)
        if found is not None:
            return found
        made = cls(
            master_key="sk-admin-" + secrets.token_urlsafe(32),
            internal_token=secrets.token_urlsafe(32),
            redis_password=secrets.token_urlsafe(32),
        )
        path = Path(data_dir) / FILE_NAME
        staging = _staged_private_json(path, asdict(made))
        try:
            os.link(staging, path)  # first writer wins when two start at once
        except FileExistsError:
            pass
        finally:
            staging.unlink(missing_ok=True)
        loaded = cls.load(data_dir)
        assert loaded is not None
        return loaded


ENDPOINTS_FILE = "stack-endpoints.json"


def save_endpoints(data_dir: os.PathLike[str] | str, **endpoints: str) -> None:
    """Record where `openchatkit run` put what the CLI needs later (``redis_url``, with its
    password, and ``chat_url``): ``<data_dir>/stack-endpoints.json``, readable by its owner
    only, with the recording process's ``pid``: :func:`load_endpoints` ignores the record once
    that process is gone, and :func:`clear_endpoints` removes it when the stack stops."""
    path = Path(data_dir) / ENDPOINTS_FILE
    os.replace(_staged_private_json(path, {**endpoints, "pid": str(os.getpid())}), path)


def clear_endpoints(data_dir: os.PathLike[str] | str) -> None:
    """Remove this process's record (the stack it describes has stopped); a record another
    running process wrote is left alone."""
    path = Path(data_dir) / ENDPOINTS_FILE
    if _recorded(path).get("pid") == str(os.getpid()):
        path.unlink(missing_ok=True)


def _staged_private_json(path: Path, data: dict[str, str]) -> Path:
    """``data`` written and synced beside ``path`` in a staging file only its owner may read
    (mode 0600 from the start); the caller moves it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return staging


def load_endpoints(data_dir: os.PathLike[str] | str) -> dict[str, str]:
    """What :func:`save_endpoints` recorded for the stack running from ``data_dir``; empty when
    none runs there now (never ran, stopped, or its process died without clearing it)."""
    recorded = _recorded(Path(data_dir) / ENDPOINTS_FILE)
    pid = recorded.pop("pid", None)
    if pid is None or not _alive(int(pid)):
        return {}
    return recorded


def _recorded(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
