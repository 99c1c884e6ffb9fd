"""``POST /feedback``: digits with their true labels, turned into one incoming batch.

The request takes the same image encodings as ``/predict`` (28x28 arrays with a scale, base64
PNG/JPEG of either polarity, prepared the same way), so what a user corrects is exactly what
the model saw. Unlike a prediction, feedback is all or nothing: a training batch with a wrong
image in it is worse than none, so one unreadable image refuses the request (422, naming it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clearsight.data.feedback import write_feedback_batch
from clearsight.digits import PIXEL_MAX
from clearsight.errors import ImageError, RequestError
from clearsight.inference.images import decode_base64, from_array
from clearsight.inference.schemas import (
    MAX_IMAGES_PER_REQUEST,
    ArrayImage,
    ClassIndex,
    ImageInput,
)


class FeedbackRequest(BaseModel):
    """Images and the right answer for each; optionally the request they were predicted in."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not be dropped silently

    images: list[ImageInput] = Field(min_length=1, max_length=MAX_IMAGES_PER_REQUEST)
    labels: list[ClassIndex] = Field(
        min_length=1, max_length=MAX_IMAGES_PER_REQUEST, description="The true digit per image."
    )
    request_id: str | None = Field(
        default=None,
        max_length=200,
        description="The id of the prediction request the images came from, if known.",
    )

    @model_validator(mode="after")
    def _one_label_per_image(self) -> FeedbackRequest:
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")
        return self


class FeedbackResponse(BaseModel):
    """Accepted for the next ingest: the incoming batch written, and how many images."""

    batch: str
    count: int
    status: str = "queued"


def record_feedback(request: FeedbackRequest, folder: Path) -> FeedbackResponse:
    """Decode every image (refusing the request if any is bad) and write the batch."""
    images, bad = [], []
    for index, item in enumerate(request.images):
        try:
            if isinstance(item, ArrayImage):
                images.append(from_array(item.data, item.scale))
            else:
                images.append(decode_base64(item.data))
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
    pixels = np.rint(np.stack(images) * PIXEL_MAX).astype(np.uint8)
    ids = [request.request_id] * len(pixels)
    written = write_feedback_batch(folder, pixels, request.labels, ids)
    return FeedbackResponse(batch=written.name, count=written.count)
