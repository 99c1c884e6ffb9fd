"""The scopes on the real service (the session's bento server): write routes refuse anonymous
callers and other scopes' tokens with a JSON body, and open with their own token."""

from __future__ import annotations

import httpx

from tests.serving.conftest import ADMIN, FEEDBACK


def test_write_routes_refuse_anonymous_callers_and_other_scopes(client: httpx.Client) -> None:
    for path, others in [("/feedback", [ADMIN]), ("/admin/reload", [FEEDBACK])]:
        anonymous = client.post(path, json={})
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["code"] == "unauthorized"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        for headers in [*others, {"Authorization": "Bearer not-a-token"}]:
            refused = client.post(path, json={}, headers=headers)
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


def test_each_write_route_opens_with_its_own_token(client: httpx.Client) -> None:
    # Past the guard: the route itself answers (the pinned bento follows no alias: 409;
    # an empty feedback body: 400 naming the missing field).
    reload = client.post("/admin/reload", headers=ADMIN)
    assert reload.status_code == 409 and reload.json()["code"] == "not_following"
    feedback = client.post("/feedback", json={}, headers=FEEDBACK)
    assert feedback.status_code == 400 and feedback.json()["code"] == "invalid_request"


def test_probes_and_the_page_stay_open(client: httpx.Client) -> None:
    for path in ("/readyz", "/livez", "/v2/health/ready", "/ui/"):
        assert client.get(path).status_code == 200, path
