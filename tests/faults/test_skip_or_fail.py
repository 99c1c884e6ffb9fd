"""A row of the faults suite that cannot run here skips, except under ``CI=true``."""

from __future__ import annotations

import pytest

from tests.faults.conftest import skip_or_fail


@pytest.mark.parametrize("ci", ["true", "True", "1"])
def test_under_ci_a_missing_permission_fails(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"needs root.*CI=true"):
        skip_or_fail("mounting a tmpfs needs root")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_elsewhere_it_skips_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        skip_or_fail("mounting a tmpfs needs root")
