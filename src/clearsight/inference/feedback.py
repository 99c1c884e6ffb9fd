"""``POST /feedback``: images with their true labels, turned into one incoming batch.

The request takes the same image encodings as ``/predict`` (arrays of the served task's shape
with a scale, base64 PNG/JPEG prepared the same way for the served task), so what a user
corrects is exactly what the model saw. Labels are class indices of the served task; the batch
is written with that task (``write_feedback_batch(task=...)``), so ingest knows its shape and
class names. Unlike a prediction, feedback is all or nothing: a training batch with a wrong
image in it is worse than none, so one unreadable image refuses the request (422, naming it).

Feedback must name the prediction it corrects: each image's request id (one for all, or one
per image) and the image itself must match an answer in the service's answer ledger
(``clearsight.monitoring.answers``: the SHA-256 of the prepared image, recorded for every
answered image), given at most ``serving.feedback_max_age_s`` ago. Anything else is refused
with 422 and nothing is stored, so feedback cannot bring images the service never saw. The
ledger's answer (label, confidence, model version) is stored with each image, for the label
check at ingest (``clearsight.data.label_check``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clearsight.data.feedback import write_feedback_batch
from clearsight.errors import ImageError, RequestError
from clearsight.inference.images import decode_base64, from_array
from clearsight.inference.schemas import ArrayImage, ClassIndex, ImageInput
from clearsight.monitoring.answers import Answer, image_digest
from clearsight.task import DIGITS, PIXEL_MAX, ImageTask

# The schema's ceiling; the operator's limit (serving.feedback_max_images) is applied first
# and is lower by default, answered with 413 rather than a validation error.
MAX_FEEDBACK_IMAGES = 4096


class FeedbackRequest(BaseModel):
    """Images, the right answer for each, and the prediction request(s) they were answered in."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not be dropped silently

    images: list[ImageInput] = Field(min_length=1, max_length=MAX_FEEDBACK_IMAGES)
    labels: list[ClassIndex] = Field(
        min_length=1,
        max_length=MAX_FEEDBACK_IMAGES,
        description="The true class index per image (of /metadata's class_names).",
    )
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The request_id of the /predict answer all these images came from.",
    )
    request_ids: list[str] | None = Field(
        default=None,
        max_length=MAX_FEEDBACK_IMAGES,
        description="Instead of request_id: one request id per image (corrections gathered "
        "from several predictions).",
    )

    @model_validator(mode="after")
    def _one_label_per_image(self) -> FeedbackRequest:
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")
        if (self.request_id is None) == (self.request_ids is None):
            raise ValueError(
                "name the prediction these images came from: request_id (one for all) or "
                "request_ids (one per image), not both"
            )
        if self.request_ids is not None and len(self.request_ids) != len(self.images):
            raise ValueError(f"{len(self.request_ids)} request ids for {len(self.images)} images")
        return self

    def ids(self) -> list[str]:
        """The request id of each image."""
        if self.request_ids is not None:
            return list(self.request_ids)
        assert self.request_id is not None
        return [self.request_id] * len(self.images)


class AnswerLookup(Protocol):
    """What the check needs of the answer ledger (a fake in unit tests)."""

    def lookup(self, request_id: str) -> list[Answer]: ...


def match_answers(
    pixels: np.ndarray,
    request_ids: Sequence[str],
    answers: AnswerLookup,
    max_age_s: float,
    now: float | None = None,
) -> list[Answer]:
    """The ledger's answer for each uint8 image, or ``RequestError`` (422) naming every image
    that matches no answer: unknown request, an image that request did not contain, or an
    answer older than ``max_age_s``."""
    stamp = time.time() if now is None else now
    known: dict[str, list[Answer]] = {}
    matched: list[Answer] = []
    problems: list[dict[str, object]] = []
    for index, (image, request_id) in enumerate(zip(pixels, request_ids, strict=True)):
        if request_id not in known:
            known[request_id] = answers.lookup(request_id)
        candidates = known[request_id]
        digest = image_digest(image)
        hits = [a for a in candidates if a.digest == digest]
        if not candidates:
            problem = (
                "unknown_request",
                f"request {request_id!r} was not answered here (or is forgotten)",
            )
        elif not hits:
            problem = (
                "image_not_in_request",
                f"this image is not one request {request_id!r} was answered for",
            )
        elif stamp - hits[0].time > max_age_s:
            age = stamp - hits[0].time
            problem = (
                "request_too_old",
                f"request {request_id!r} was answered {age:.0f} s "
                f"ago; feedback is taken for {max_age_s:.0f} s",
            )
        else:
            matched.append(hits[0])
            continue
        problems.append({"index": index, "code": problem[0], "error": problem[1]})
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RequestError(
            422,
            str(first["code"]),
            f"image {first['index']}: {first['error']}{more}; feedback is taken only for "
            "images the service answered, with that answer's request_id",
            problems,
        )
    return matched


class FeedbackResponse(BaseModel):
    """Accepted for the next ingest: the incoming batch written, and how many images."""

    batch: str
    count: int
    status: str = "queued"


def check_labels(labels: Sequence[int], task: ImageTask) -> None:
    """400 when a label is no class of the served task (the schema allows any model's)."""
    wrong = [(i, label) for i, label in enumerate(labels) if label >= task.n_classes]
    if wrong:
        index, label = wrong[0]
        raise RequestError(
            400,
            "invalid_request",
            f"labels.{index}: no class {label}; the served model has classes "
            f"0-{task.n_classes - 1} ({', '.join(task.class_names[:5])}"
            f"{', ...' if task.n_classes > 5 else ''})",
            [{"loc": ["labels", i], "msg": f"classes 0-{task.n_classes - 1}"} for i, _ in wrong],
        )


def decode_feedback(request: FeedbackRequest, task: ImageTask = DIGITS) -> np.ndarray:
    """Every image as uint8 (N, *task.stored_shape), prepared as /predict prepares it; 422 if
    any is bad."""
    images, bad = [], []
    for index, item in enumerate(request.images):
        try:
            if isinstance(item, ArrayImage):
                images.append(from_array(item.data, item.scale, task))
            else:
                images.append(decode_base64(item.data, task))
        except ImageError as err:
            bad.append({"index": index, "error": str(err)})
    if bad:
        raise RequestError(
            422,
            "invalid_image",
            f"image {bad[0]['index']}: {bad[0]['error']}; feedback is stored only when every "
            "image is readable",
            bad,
        )
    return np.rint(np.stack(images) * PIXEL_MAX).astype(np.uint8)


def record_feedback(
    request: FeedbackRequest,
    folder: Path,
    answers: AnswerLookup,
    max_age_s: float,
    now: float | None = None,
    *,
    task: ImageTask = DIGITS,
) -> FeedbackResponse:
    """Decode every image for the served ``task``, match each with the answer it corrects, and
    write the batch with those answers; any failure refuses the whole request and writes
    nothing."""
    check_labels(request.labels, task)
    pixels = decode_feedback(request, task)
    ids = request.ids()
    matched = match_answers(pixels, ids, answers, max_age_s, now)
    served: dict[str, np.ndarray] = {
        "served_label": np.array([a.label for a in matched], dtype=np.int64),
        "served_confidence": np.array([a.confidence for a in matched], dtype=np.float32),
        "served_version": np.array([a.model_version for a in matched], dtype=str),
    }
    written = write_feedback_batch(folder, pixels, request.labels, list(ids), served, task=task)
    return FeedbackResponse(batch=written.name, count=written.count)
