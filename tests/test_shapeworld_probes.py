"""The probes of `benchmarks/shapeworld_probes.py`, checked by hand on ground-truth and altered texts."""

from __future__ import annotations

import numpy as np
import pytest


def test_listing_accuracy_scores_each_named_part_of_the_listed_shapes():
    from benchmarks.shapeworld_probes import listing_accuracy
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import scene_thinking

    samples = list(make_split("val", 6, "referring"))
    truth = [scene_thinking(sample, 112) for sample in samples]
    perfect = listing_accuracy(truth, samples, 112)
    n = sum(len(sample.extra["shapes"]) for sample in samples)
    assert perfect == {
        "shapes": n, "listed": n, "matched": n, "size": 1.0, "colour": 1.0, "kind": 1.0
    }  # fmt: skip
    recoloured = [t.replace(" blue ", " orange ") for t in truth]
    wrong = sum(t.split("the request means")[0].count(" blue ") for t in truth)
    assert wrong  # these scenes hold blue shapes, so the recolouring is seen
    assert listing_accuracy(recoloured, samples, 112)["colour"] == pytest.approx(1 - wrong / n)
    assert listing_accuracy(["<think> no listing </think>"] * 6, samples, 112)["matched"] == 0
    with pytest.raises(ValueError, match="completions"):
        listing_accuracy(truth[:2], samples, 112)


def test_choice_outcome_judges_the_chosen_box_against_the_target_and_the_listing():
    from benchmarks.shapeworld_probes import choice_outcome
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import MEANS, frame_box, scene_thinking

    sample = next(s for s in make_split("val", 20, "referring") if len(s.extra["shapes"]) >= 3)
    shapes, target = sample.extra["shapes"], sample.extra["targets"][0]
    other = next(i for i in range(len(shapes)) if i != target)

    def named(i: int) -> str:
        return f"{shapes[i]['name']} [{','.join(map(str, frame_box(sample, shapes[i], 112)))}]"

    truth = scene_thinking(sample, 112)
    listing = truth.split(MEANS)[0]
    assert choice_outcome(truth, sample, 112) == "right"
    assert choice_outcome(f"{listing}{MEANS} the {named(other)}. </think>", sample, 112) == "wrong"
    # The target left out of the listing: choosing another shape is the listing's failure.
    unlisted = f"<think> {named(other)}. {MEANS} the {named(other)}. </think>"
    assert choice_outcome(unlisted, sample, 112) == "unlisted"
    assert choice_outcome(listing + "</think>", sample, 112) == "none"
    assert choice_outcome("<answer>{}</answer>", sample, 112) == "none"


def test_mean_pairwise_tv_by_hand():
    from benchmarks.shapeworld_probes import mean_pairwise_tv

    same = np.array([[[0.5, 0.5], [0.5, 0.5]]])
    disjoint = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    assert mean_pairwise_tv(same) == 0.0
    assert mean_pairwise_tv(disjoint) == 1.0
    # Two groups of three: distances 0.2, 0.2, 0 in the first, 0 in the second.
    p = np.array([[[0.6, 0.4], [0.4, 0.6], [0.4, 0.6]], [[1.0, 0.0]] * 3])
    assert mean_pairwise_tv(p) == pytest.approx((2 * (0.2 + 0.2 + 0.0)) / (2 * 6))
