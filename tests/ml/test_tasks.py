"""The task recipe's sampler list (ml.tasks.training_draws)."""
import numpy as np
import pytest

from ml.data import Sample
from ml.model_card import _draws_sentence
from ml.tasks import training_draws


def _samples():
    img = np.zeros((8, 8), np.float32)
    return [Sample(image=img, subject_id=f"S{i}", name=f"{m}{i}", modality=m)
            for i, m in enumerate(["confocal", "split-detector", "confocal", "split-detector"])]


def test_draws_of_one_keep_the_training_set_and_its_order():
    train = _samples()
    assert training_draws("cones", train, draws={"split-detector": 1}) == train
    assert training_draws("rpe", train) == train  # no draws configured for the task


def test_draws_repeat_only_their_modality_after_the_original_order():
    train = _samples()
    drawn = training_draws("cones", train, draws={"split-detector": 3})
    assert drawn[:4] == train
    assert [s.name for s in drawn[4:]] == ["split-detector1", "split-detector3"] * 2


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_draws_say_how_to_fix(bad):
    with pytest.raises(ValueError, match="integers >= 1"):
        training_draws("cones", _samples(), draws={"split-detector": bad})


def test_model_card_names_only_extra_draws():
    assert _draws_sentence({"split-detector": 1}) == ""
    assert "split-detector images drawn 2x" in _draws_sentence({"split-detector": 2, "confocal": 1})
