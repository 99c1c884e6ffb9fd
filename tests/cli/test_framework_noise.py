"""TensorFlow's start-up lines are filtered from fd 2; everything else still reaches the user."""

import os
import sys

import pytest

from clearsight.cli import framework_noise
from clearsight.cli.framework_noise import captured_stderr, hidden_modules, replayable

STARTUP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796460630.017537   30226 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results.\n"
    "I0000 00:00:1796460630.019140   30226 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
)
REAL = "E0000 something.cc:12] Failed to load libtensorflow_framework.so.2: no such file\n"


def test_known_start_up_lines_are_noise_and_others_are_not() -> None:
    assert replayable(STARTUP) == []
    assert replayable(STARTUP + REAL) == [REAL.strip()]


def test_fd2_is_captured_and_only_real_lines_replayed(capfd, monkeypatch) -> None:
    monkeypatch.setattr(framework_noise, "_verbose", False)
    with captured_stderr():
        os.write(2, (STARTUP + REAL).encode())  # as C++ writes: below Python's sys.stderr
    assert capfd.readouterr().err == REAL


def test_verbose_keeps_everything(capfd, monkeypatch) -> None:
    monkeypatch.setattr(framework_noise, "_verbose", True)
    with captured_stderr():
        os.write(2, STARTUP.encode())
    assert capfd.readouterr().err == STARTUP


def test_a_failing_import_replays_everything(capfd, monkeypatch) -> None:
    monkeypatch.setattr(framework_noise, "_verbose", False)
    with pytest.raises(ImportError), captured_stderr():
        os.write(2, STARTUP.encode())
        raise ImportError("broken install")
    assert capfd.readouterr().err == STARTUP


def test_hidden_modules_fail_to_import_only_inside() -> None:
    name = "clearsight_not_imported_yet_json"
    sys.modules.pop(name, None)
    with hidden_modules((name, "json")):
        with pytest.raises(ImportError):
            __import__(name)
        import json  # already imported: never hidden

        assert json.dumps(1) == "1"
    assert name not in sys.modules
