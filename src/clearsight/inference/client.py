"""A small client of the service: what ``clearsight predict`` runs (httpx, no Keras).

Images go up as ``multipart/form-data`` file uploads, exactly as a browser form would send
them; overlays come back as base64 PNGs and can be written next to each other in a folder.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from clearsight.errors import ServiceError

EXPLAIN_WITH_OVERLAYS = {"encodings": ["float16", "png_overlay"]}

if TYPE_CHECKING:
    from clearsight.config import Settings


def predict_files(
    url: str,
    images: list[Path],
    *,
    explain: bool,
    api_key: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """POST the image files to ``url``/predict; the decoded JSON answer, or ``ServiceError``."""
    files = []
    for path in images:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        files.append(("images", (path.name, path.read_bytes(), kind)))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    options = json.dumps(EXPLAIN_WITH_OVERLAYS if explain else False)
    endpoint = url.rstrip("/") + "/predict"
    try:
        response = httpx.post(
            endpoint, files=files, data={"explain": options}, headers=headers, timeout=timeout_s
        )
    except httpx.HTTPError as err:
        raise ServiceError(f"cannot reach {endpoint}: {err}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        message = body.get("error") if isinstance(body, dict) else None
        raise ServiceError(
            f"{endpoint} answered {response.status_code}: {message or response.text[:200]}"
        )
    answer: dict[str, Any] = body  # a 2xx from /predict is a PredictResponse's JSON object
    return answer


def save_overlays(response: dict[str, Any], images: list[Path], out_dir: Path) -> list[Path]:
    """Write each explanation overlay as ``<image stem>_<method>_class<k>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for result in response.get("results", []):
        stem = images[result["index"]].stem
        for explanation in result.get("explanations", []):
            if not explanation.get("png_overlay"):
                continue
            path = out_dir / f"{stem}_{explanation['method']}_class{explanation['target']}.png"
            path.write_bytes(base64.b64decode(explanation["png_overlay"]))
            written.append(path)
    return written


def request_reload(url: str, admin_token: str | None, timeout_s: float = 10.0) -> str:
    """Ask a running service to check its registry alias now (``POST /admin/reload``, the
    admin scope: the predict key cannot do this).

    Returns the service's answer in a line. The service also polls the alias by itself, so a
    caller (the retrain flow, ``clearsight rollback``) treats a failure as a warning only.
    """
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    endpoint = url.rstrip("/") + "/admin/reload"
    try:
        response = httpx.post(endpoint, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as err:
        raise ServiceError(f"cannot reach {endpoint}: {err}") from None
    if response.status_code >= 400:
        raise ServiceError(f"{endpoint} answered {response.status_code}: {response.text[:200]}")
    body = response.json()
    return f"{endpoint}: {body.get('status', 'ok')}, serving v{body.get('version')}"


def notify_reload(settings: Settings) -> str | None:
    """Tell the configured service (``CLEARSIGHT_SERVICE_URL``) that the champion moved, with
    the admin token (``clearsight.access``); None when no service is configured."""
    from clearsight.access import admin_token

    if not settings.service_url:
        return None
    return request_reload(settings.service_url, admin_token(settings))
