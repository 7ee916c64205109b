"""benchmarks/shapeworld_no_target.py: what it counts as an empty answer, and the held-out sets it measures."""

from __future__ import annotations

from benchmarks.shapeworld_no_target import answers_nothing, eval_sets


def test_only_an_empty_list_answers_nothing():
    assert answers_nothing("<think> none is purple </think><answer>[]</answer>")
    assert answers_nothing("<answer>[ ]</answer>") and answers_nothing("<answer>[{}]</answer><answer>[]</answer>")
    for text in ("<answer>[{\"bbox_2d\": [1, 2, 3, 4], \"point_2d\": [2, 3]}]</answer>", "<answer>{}</answer>",
                 "<answer>[</answer>", "<answer></answer>", "[]", "", None):
        assert not answers_nothing(text), text


def test_eval_sets_hold_held_out_requests_that_match_nothing_and_one_shape():
    sets = eval_sets(3)
    assert set(sets) == {"referring", "reasoning"}
    for parts in sets.values():
        assert all(s.extra["no_target"] and not s.mask.any() and s.boxes == [] for s in parts["no target"])
        assert all(len(s.extra["targets"]) == 1 and s.mask.any() for s in parts["target"])
        assert all(s.extra["split"] == "test" for part in parts.values() for s in part)
        ids = [s.id for part in parts.values() for s in part]
        assert len(ids) == len(set(ids)) == 6
