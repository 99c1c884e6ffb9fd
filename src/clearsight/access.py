"""Where the service's scoped tokens come from (docs/security.md has the whole trust model).

The admin token guards the routes that change what the service serves (``/admin/*``). When
the operator sets none (``CLEARSIGHT_SERVING__ADMIN_TOKEN``), the first ``clearsight serve``
generates one into ``<home>/.clearsight/admin-token`` with owner-only permissions; the service
and the local CLI and flows (promote, rollback, the retrain flow's notify) read it from there,
so a local setup works with no secret handling and no anonymous write route.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO

from clearsight.config import Settings
from clearsight.errors import ConfigurationError
from clearsight.files import atomic_write

TOKEN_FILE = Path(".clearsight") / "admin-token"


def admin_token_file(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def admin_token(settings: Settings, *, create: bool = False) -> str | None:
    """The admin token: the setting, else the generated file (made now if ``create``)."""
    if (configured := settings.serving.secret("admin_token")) is not None:
        return configured
    path = admin_token_file(settings)
    try:
        return read_private(path)
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written whole into a private temporary file (mode 0600), then linked into place: the
    # link fails if another process got there first, and then its token is the one.
    written = atomic_write(path.with_name(f".{path.name}.new"), write_token)
    try:
        os.link(written, path)
    except FileExistsError:
        pass
    finally:
        written.unlink(missing_ok=True)
    return read_private(path)


def write_token(handle: IO[bytes]) -> None:
    handle.write(secrets.token_urlsafe(32).encode() + b"\n")


def read_private(path: Path) -> str:
    """A token file's content; refused when group or others may read it (as ssh does)."""
    mode = path.stat().st_mode & 0o077
    if mode:
        raise ConfigurationError(
            f"{path} is readable by others (mode {oct(mode)}): run `chmod 600 {path}`"
        )
    token = path.read_text().strip()
    if not token:
        raise ConfigurationError(f"{path} is empty: delete it and run `clearsight serve` again")
    return token
