"""Closed sets of choices shared by the settings and the command line.

Kept apart from ``config`` so the CLI can declare its options without importing pydantic,
which keeps ``clearsight --help`` fast.
"""

from typing import Literal

SourceName = Literal["embedded", "idx", "npz", "folder", "keras"]
ResizePolicy = Literal["fit", "stretch", "reject"]
