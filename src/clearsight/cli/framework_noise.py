"""Import Keras (and its TensorFlow backend) without TensorFlow's start-up lines on stderr.

TensorFlow's C++ runtime writes its start-up chatter (oneDNN, the cudart stub, "All log messages
before absl::InitializeLog()") straight to file descriptor 2 while it is imported, twice: once
for the core library and once for the profiler plugin, each with its own absl. Neither Python's
``logging`` nor ``TF_CPP_MIN_LOG_LEVEL`` reaches all of it, so the CLI points fd 2 at a
temporary file for the length of the import and then replays every line that is not known
start-up noise: a real error (a missing shared library, a broken install) is still shown, and
``clearsight -v`` replays everything.

``lean=True`` also keeps Keras from importing optional libraries that only its unused corners
need (scikit-learn for ``keras.wrappers``, pyplot for ``plot_image_gallery``, pandas for
DataFrame inputs, JAX for ``tf.lite``'s JAX converter): each is imported by Keras inside
``try: import X / except ImportError``, so a ``None`` entry in ``sys.modules`` for the length of
the import makes Keras skip it. That saves about 1.5 s of a one-image ``clearsight explain``;
the entries are removed afterwards, so a later real import of any of them works as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# Start-up lines, not problems: what TensorFlow prints on every import on a CPU-only machine.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|cudart_stub\.cc|Could not find cuda drivers"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions.*rebuild TensorFlow"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Unable to initialize backend 'cuda'"
    r"|An NVIDIA GPU may be present on this machine"
)

# Optional imports of Keras and TensorFlow that clearsight's model loading never uses.
OPTIONAL_FOR_KERAS = ("sklearn", "matplotlib.pyplot", "pandas", "jax")

_verbose = False


def set_verbose(value: bool) -> None:
    """``clearsight -v``: show the frameworks' start-up lines as they come."""
    global _verbose
    _verbose = value


def replayable(text: str) -> list[str]:
    """The captured lines worth showing: everything that is not known start-up noise."""
    return [line for line in text.splitlines() if line.strip() and not NOISE.search(line)]


@contextlib.contextmanager
def captured_stderr() -> Iterator[None]:
    """Send fd 2 (C++ and Python alike) to a temporary file; replay what is not noise after.

    When the body raises, everything captured is replayed, noise included: it may explain why.
    """
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            lines = text.splitlines() if failed else replayable(text)
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
                sys.stderr.flush()


@contextlib.contextmanager
def hidden_modules(names: tuple[str, ...]) -> Iterator[None]:
    """Make ``import name`` fail with ImportError for the body, for modules not yet imported."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not here"
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def import_keras(*, lean: bool = False) -> ModuleType:
    """``import keras`` with TensorFlow's start-up lines filtered (see the module docstring).

    ``lean`` skips Keras' optional imports; never for the JAX backend, which needs JAX itself.
    """
    if (loaded := sys.modules.get("keras")) is not None:
        return loaded
    optional = OPTIONAL_FOR_KERAS if lean else ()
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        optional = ()
    with captured_stderr(), hidden_modules(optional):
        import keras  # noqa: F401  (the import is the point)
    return sys.modules["keras"]
