"""What feedback must pass before it can become training data, with real files and fakes for
the service: the answer ledger and the request check, the per-caller limits, the label check
at ingest (quarantine with a PNG grid) and a person's review (accept, reject).

The same path on the real service, with a poisoning run, is tests/serving/test_poisoning.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clearsight.config import DataSettings, Settings
from clearsight.data import review
from clearsight.data.feedback import pending_images, write_feedback_batch
from clearsight.data.ingest import ingest_pending
from clearsight.data.label_check import compare_labels, review_record_path
from clearsight.data.sources import load_embedded
from clearsight.data.versions import VersionStore
from clearsight.errors import RequestError
from clearsight.inference.feedback import FeedbackRequest, match_answers, record_feedback
from clearsight.inference.feedback_limits import FeedbackLimiter, caller_key
from clearsight.monitoring import answers as answers_module
from clearsight.monitoring.answers import Answer, AnswerLedger, image_digest
from tests.conftest import stores_under

CLEARSIGHT = str(Path(sys.executable).parent / "clearsight")


@pytest.fixture(scope="module")
def fresh() -> tuple[np.ndarray, np.ndarray]:
    """Real digits outside the ``digits`` base (the embedded set's 41st-60th per class)."""
    full = load_embedded()
    index = np.concatenate([np.flatnonzero(full.labels == c)[40:60] for c in range(10)])
    return full.images[index].copy(), full.labels[index].copy()


def _array(image: np.ndarray) -> dict:
    return {"kind": "array", "scale": "0-255", "data": image.astype(int).tolist()}


class FakeLedger:
    """The lookup side of the answer ledger, from a dict."""

    def __init__(self, answers: dict[str, list[Answer]]) -> None:
        self.answers = answers

    def lookup(self, request_id: str) -> list[Answer]:
        return self.answers.get(request_id, [])


def _answered(request_id: str, images: np.ndarray, labels, at: float) -> list[Answer]:
    return [
        Answer(request_id, i, image_digest(image), at, int(label), 0.99, "3")
        for i, (image, label) in enumerate(zip(images, labels, strict=True))
    ]


# -- the answer ledger and the request check ----------------------------------------------
def test_the_ledger_records_every_answer_and_stays_bounded(
    tmp_path: Path, fresh, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = fresh
    monkeypatch.setattr(answers_module, "PRUNE_EVERY", 10)
    ledger = AnswerLedger(tmp_path / "answers.sqlite", max_rows=25, max_age_s=100.0)
    x = images[:4].astype(np.float32) / 255.0
    ledger.record("r1", x, labels[:4], np.full(4, 0.95), "7", now=1000.0)
    [first, *_] = found = ledger.lookup("r1")
    assert [a.row for a in found] == [0, 1, 2, 3] and first.model_version == "7"
    assert first.digest == image_digest(images[0]) and first.label == labels[0]
    assert ledger.lookup("nope") == []
    for n in range(10):  # 40 more answers: pruned to the newest 25, the oldest by age first
        ledger.record(f"s{n}", x, labels[:4], np.full(4, 0.5), "7", now=1050.0 + n)
    ledger.record("late", x[:1], labels[:1], np.ones(1), "7", now=1200.0)  # r1 is 200 s old
    assert ledger.lookup("r1") == [] and ledger.lookup("late")
    rows = sum(len(ledger.lookup(k)) for k in [f"s{n}" for n in range(10)] + ["late"])
    assert rows <= 25 + answers_module.PRUNE_EVERY
    ledger.close()


def test_feedback_must_name_an_answered_request_with_the_same_images(tmp_path: Path, fresh) -> None:
    images, labels = fresh
    ledger = FakeLedger({"r1": _answered("r1", images[:3], labels[:3], at=1000.0)})
    ok = match_answers(images[[2, 0]], ["r1", "r1"], ledger, max_age_s=60, now=1030.0)
    assert [a.row for a in ok] == [2, 0]
    cases = [
        (images[:1], ["r9"], 1030.0, "unknown_request"),
        (images[[0, 5]], ["r1", "r1"], 1030.0, "image_not_in_request"),
        (images[:1], ["r1"], 1100.0, "request_too_old"),
    ]
    for pixels, ids, now, code in cases:
        with pytest.raises(RequestError) as refused:
            match_answers(pixels, ids, ledger, max_age_s=60, now=now)
        assert refused.value.status == 422 and refused.value.code == code
        assert refused.value.detail[0]["code"] == code

    folder = tmp_path / "incoming"
    request = FeedbackRequest.model_validate(
        {"images": [_array(images[1])], "labels": [7], "request_id": "r1"}
    )
    written = record_feedback(request, folder, ledger, 60, now=1030.0)
    with np.load(folder / written.batch) as npz:
        assert npz["served_label"].tolist() == [labels[1]] and npz["y_train"].tolist() == [7]
        assert npz["served_version"].tolist() == ["3"] and list(npz["request_id"]) == ["r1"]
    wrong = FeedbackRequest.model_validate(
        {"images": [_array(images[9])], "labels": [1], "request_id": "r1"}
    )
    with pytest.raises(RequestError):
        record_feedback(wrong, folder, ledger, 60, now=1030.0)
    assert len(list(folder.iterdir())) == 1, "a refused request stores nothing"
    with pytest.raises(ValueError, match="request_id"):
        FeedbackRequest.model_validate({"images": [_array(images[1])], "labels": [7]})


# -- limits ---------------------------------------------------------------------------------
def test_each_caller_has_a_bucket_of_images_and_the_backlog_is_capped() -> None:
    clock = [0.0]
    pending = [0]
    limiter = FeedbackLimiter(
        max_images=50,
        images_per_minute=60.0,  # one a second
        burst_images=100,
        max_pending_images=500,
        pending_images=lambda: pending[0],
        clock=lambda: clock[0],
    )
    alice, bob = caller_key("10.0.0.1", "t"), caller_key("10.0.0.2", "t")
    assert alice != bob and "secret" not in caller_key("10.0.0.1", "secret")
    limiter.admit(alice, 50)
    limiter.admit(alice, 40)
    with pytest.raises(RequestError) as limited:
        limiter.admit(alice, 20)
    assert limited.value.status == 429 and limited.value.code == "rate_limited"
    assert limited.value.retry_after_s == pytest.approx(10.0)
    limiter.admit(bob, 50)  # another caller's budget is untouched
    clock[0] = 10.0
    limiter.admit(alice, 20)  # refilled by then
    with pytest.raises(RequestError) as too_big:
        limiter.admit(alice, 51)
    assert too_big.value.status == 413
    pending[0] = 480
    with pytest.raises(RequestError) as backlog:
        limiter.admit(bob, 30)
    assert backlog.value.status == 429 and backlog.value.code == "feedback_backlog"
    assert backlog.value.retry_after_s and backlog.value.retry_after_s > 0


# -- the label check at ingest and a person's review ----------------------------------------
def test_compare_labels_counts_only_confident_answers() -> None:
    given = np.array([1, 2, 3, 4, 5])
    predicted = np.array([1, 2, 9, 9, 9])
    confidence = np.array([0.99, 0.95, 0.99, 0.5, 0.3])
    check = compare_labels(given, predicted, confidence, max_rate=0.2, min_confidence=0.9)
    assert (check.n_confident, check.n_disagree, check.rows) == (3, 1, [2])
    assert not check.passed and "over the 20% allowed" in check.reason
    assert compare_labels(given, predicted, confidence, 0.4, 0.9).passed
    assert compare_labels(given, predicted, np.zeros(5), 0.0, 0.9).passed  # none confident


@pytest.fixture
def settings(tmp_path: Path, digits) -> Settings:
    """Stores under tmp; the base is the 400-digit ``digits`` set."""
    base_file = tmp_path / "base.npz"
    np.savez(base_file, x_train=digits[0], y_train=digits[1])
    settings = stores_under(tmp_path, data=DataSettings(source="npz", path=base_file))
    assert settings.incoming_dir is not None
    settings.incoming_dir.mkdir(parents=True)
    return settings


def _feedback(settings: Settings, images: np.ndarray, given, served) -> str:
    assert settings.incoming_dir is not None
    batch = write_feedback_batch(
        settings.incoming_dir,
        images,
        given,
        ["r"] * len(images),
        {
            "served_label": np.asarray(served),
            "served_confidence": np.full(len(images), 0.99, np.float32),
            "served_version": np.full(len(images), "1"),
        },
    )
    return batch.name


def test_rotated_labels_go_to_quarantine_with_a_grid_and_a_person_decides(
    settings: Settings, fresh
) -> None:
    images, labels = fresh
    rotated = (labels + 1) % 10
    poisoned = _feedback(settings, images[:100], rotated[:100], labels[:100])
    assert settings.incoming_dir is not None
    assert pending_images(settings.incoming_dir) == 100
    [outcome] = ingest_pending(settings).outcomes
    assert not outcome.accepted and "100 of the model's 100 confident answers" in outcome.reason
    assert pending_images(settings.incoming_dir) == 0
    assert VersionStore.of(settings).versions()[-1].batch is None, "no version from it"
    [entry] = review.quarantined(settings)
    assert entry.name == poisoned and entry.figure is not None
    assert entry.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert entry.label_check and entry.label_check["n_disagree"] == 100
    assert entry.label_check["disagreements"][0]["given"] == int(rotated[0])

    # accepted by a person: back in incoming with a record, and the next ingest takes it
    line = review.accept(settings, poisoned, by="ana")
    assert "accepted by ana" in line and review.quarantined(settings) == []
    record = json.loads(review_record_path(settings.incoming_dir / poisoned).read_text())
    assert record["by"] == "ana" and record["at"]
    [again] = ingest_pending(settings).outcomes
    assert again.accepted and again.version is not None

    # rejected: gone, with an audit line
    second = _feedback(settings, images[100:], rotated[100:], labels[100:])
    ingest_pending(settings)
    assert "rejected by bo" in review.reject(settings, second, by="bo")
    assert review.quarantined(settings) == [] and not list(
        settings.quarantine_dir.glob(f"{second}*")  # type: ignore[union-attr]
    )
    decisions = (settings.quarantine_dir / review.AUDIT).read_text().splitlines()  # type: ignore[operator]
    assert [json.loads(d)["decision"] for d in decisions] == ["accept", "reject"]
    with pytest.raises(review.ReviewError, match="no quarantined batch"):
        review.reject(settings, second)


def test_correct_labels_become_the_next_data_version(settings: Settings, fresh) -> None:
    images, labels = fresh
    served = labels.copy()
    served[:10] = (served[:10] + 3) % 10  # the model was confidently wrong on 5 %: corrections
    name = _feedback(settings, images, labels, served)
    [outcome] = ingest_pending(settings).outcomes
    assert outcome.accepted, outcome.reason
    newest = VersionStore.of(settings).versions()[-1]
    assert newest.batch is not None and newest.batch.name == name


def test_cli_review_lists_and_refuses_in_one_line(settings: Settings, fresh) -> None:
    images, labels = fresh
    name = _feedback(settings, images[:20], (labels[:20] + 1) % 10, labels[:20])
    ingest_pending(settings)
    env = os.environ | {"CLEARSIGHT_DATA_DIR": str(settings.data_dir), "COLUMNS": "250"}
    listed = subprocess.run(
        [CLEARSIGHT, "data", "review", "--json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["batch"] == name and row["label_check"]["n_disagree"] == 20
    missing = subprocess.run(
        [CLEARSIGHT, "data", "accept", "no-such-batch"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "no quarantined batch" in missing.stderr
