"""What the reasoner is taught (`segzero.shapeworld.training.examples`): target completions that score
full rewards, the scene listing, lazy and interleaved example sets, per-shape token labels."""

from __future__ import annotations

import pytest


def test_reasoner_targets_score_full_rewards_against_their_ground_truth():
    from segzero.rewards import REWARDS, GroundTruth
    from segzero.shapeworld.generator import make_sample
    from segzero.shapeworld.training.examples import reasoner_examples

    (example,) = reasoner_examples([make_sample(3, "referring")], 112)
    assert example.completion.startswith("<think> ") and example.completion.endswith("</answer>")
    assert all(0 <= v <= 112 for v in example.boxes[0])
    gt = GroundTruth.from_columns(example.boxes, example.points)
    for name in ("thinking_format", "seg_format_strict", "bbox_iou", "bbox_l1", "points_l1"):
        assert REWARDS[name](example.completion, gt) == 1.0, name


def test_scene_thinking_lists_every_shape_left_to_right_and_names_the_answer_s_box():
    import dataclasses
    import re

    from segzero.errors import InputError
    from segzero.shapeworld.generator import generate_scene, make_split
    from segzero.shapeworld.training.examples import reasoner_examples

    for sample in make_split("val", 6, "referring", n_shapes=(2, 4)):
        (example,) = reasoner_examples([sample], 112)
        scene = generate_scene(sample.extra["scene_seed"], n_shapes=(2, 4))
        think = example.completion.split("</think>")[0]
        listed, meant = think.split(". the request means the ")
        entries = re.findall(r"(\w+ \w+ \w+) \[(\d+),(\d+),(\d+),(\d+)\]", listed)
        assert sorted(name for name, *_ in entries) == sorted(s.name for s in scene.shapes)
        lefts = [int(x1) + int(x2) for _, x1, _, x2, _ in entries]
        assert lefts == sorted(lefts)
        meant_box = [int(v) for v in re.search(r"\[([\d,]+)\]", meant).group(1).split(",")]
        assert meant_box == example.boxes[0]  # the answer copies the box the thinking names
        (echoed,) = reasoner_examples([sample], 112, thinking="scene-echo")
        said = f"the request is '{sample.request}'; "
        assert echoed.completion == example.completion.replace(
            "the request means", said + "the request means"
        )
        (explained,) = reasoner_examples([sample], 112, thinking="scene-explain")
        assert explained.completion == example.completion.replace(
            "the request means", f"{said}{sample.extra['explanation']} the request means"
        )
    with pytest.raises(InputError, match="shape listing"):
        bare = dataclasses.replace(sample, extra={"explanation": "x"})
        reasoner_examples([bare], 112)
    assert reasoner_examples([bare], 112, thinking="explanation")[0].completion.startswith(
        "<think> x </think>"
    )
    with pytest.raises(InputError, match="thinking must be one of"):
        reasoner_examples([sample], 112, thinking="long")


def test_lazy_examples_are_the_split_s_examples():
    from segzero.errors import InputError
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import ShapeWorldExamples, reasoner_examples

    lazy = ShapeWorldExamples("val", 3, "referring", 112, seed_offset=5)
    eager = reasoner_examples(list(make_split("val", 3, "referring", seed_offset=5)), 112)
    assert len(lazy) == 3
    for i in (0, 2, -1):
        assert (lazy[i].request, lazy[i].completion, lazy[i].boxes) == (
            eager[i].request,
            eager[i].completion,
            eager[i].boxes,
        )
    assert lazy[1].image.tobytes() == eager[1].image.tobytes()
    with pytest.raises(IndexError):
        lazy[3]
    with pytest.raises(InputError):
        ShapeWorldExamples("val", 200_000, "referring", 112)

    templates = ("could_roll", "world_colour")
    cycled = ShapeWorldExamples("val", 3, "reasoning", 112, seed_offset=5, templates=templates)
    eager = list(make_split("val", 3, "reasoning", seed_offset=5, templates=templates))
    assert [cycled[i].sample.extra["template"] for i in range(3)] == [templates[i % 2] for i in range(3)]
    assert [e.request for e in cycled] == [s.request for s in eager]
    with pytest.raises(InputError, match="not both"):
        ShapeWorldExamples("val", 3, "reasoning", 112, template="could_roll", templates=templates)


def test_interleaved_examples_follow_the_cycle_and_read_each_item_once():
    from segzero.errors import InputError
    from segzero.shapeworld.training.examples import InterleavedExamples

    a, b = [f"a{i}" for i in range(5)], [f"b{i}" for i in range(7)]
    mixed = InterleavedExamples([a, b], [1, 2])
    # 3 whole cycles: b (7 // 2 = 3) runs out first.
    assert list(mixed) == ["a0", "b0", "b1", "a1", "b2", "b3", "a2", "b4", "b5"]
    assert mixed[-1] == "b5"
    with pytest.raises(IndexError):
        mixed[9]
    for parts, counts in (([a, b], [1]), ([a, b], [1, 0]), ([], [])):
        with pytest.raises(InputError, match="one count"):
            InterleavedExamples(parts, counts)


def test_box_token_span_by_hand():
    from segzero.shapeworld.training.examples import box_token_span

    # 28 px tokens on a 4x4 grid: x 10..40 spans columns 0..1 (centre 25 -> 0); y 60..111 rows 2..3.
    assert box_token_span((10, 60, 40, 111), 28, 4) == ((2, 3, 3), (0, 0, 1))
    assert box_token_span((0, 0, 112, 112), 28, 4) == ((0, 2, 3), (0, 2, 3))  # clipped to the grid


def test_shape_labels_name_every_shape_under_its_box():
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import SHAPE_ATTRIBUTES, frame_box, shape_labels

    (sample,) = make_split("train", 1, "referring", n_shapes=(3, 3))
    labels = shape_labels(sample, 112, 28)
    assert len(labels) == len(sample.extra["shapes"]) == 3
    for shape, ((rows, cols), attributes) in zip(sample.extra["shapes"], labels):
        x1, y1, x2, y2 = frame_box(sample, shape, 112)
        (r0, _, r1), (c0, _, c1) = rows, cols
        assert r0 * 28 <= y1 and y2 < (r1 + 1) * 28 + 1 and c0 * 28 <= x1 and x2 < (c1 + 1) * 28 + 1
        _size, colour, kind = shape["name"].split()
        assert SHAPE_ATTRIBUTES["kind"][attributes["kind"]] == kind
        assert SHAPE_ATTRIBUTES["colour"][attributes["colour"]] == colour


def test_knowledge_stage_teaches_reasoning_but_keeps_the_held_out_templates_out():
    from segzero.shapeworld.training.examples import HELD_OUT_TEMPLATES, MEANS, knowledge_examples
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig

    config = ShapeWorldTrainConfig(knowledge_samples=(40, 60))
    examples = knowledge_examples(config)
    assert len(examples) == 100
    families = [e.sample.extra["family"] for e in examples]
    assert families[:5] == ["referring"] * 2 + ["reasoning"] * 3
    templates = {e.sample.extra["template"] for e in examples if e.sample.extra["family"] == "reasoning"}
    assert templates == set(config.knowledge_templates) and not templates & set(HELD_OUT_TEMPLATES)
    for example in examples:  # the reasoning is written out before the choice
        assert f"{example.sample.extra['explanation']} {MEANS}" in example.completion


def test_generalized_targets_say_nothing_matches_and_score_full_generalized_rewards():
    from segzero.errors import InputError
    from segzero.rewards import REWARDS, GroundTruth
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import MEANS, NO_SHAPE, reasoner_examples

    samples = list(make_split("train", 12, "referring", no_target_share=0.4, multi_target_share=0.3))
    counts = {len(s.extra["targets"]) for s in samples}
    assert 0 in counts and 1 in counts and max(counts) > 1  # each kind of request is covered
    for sample, example in zip(samples, reasoner_examples(samples, 112, "scene-explain", "generalized")):
        gt = GroundTruth.from_columns(example.boxes, example.points)
        assert REWARDS["generalized_format"](example.completion, gt) == 3.0, example.completion
        assert REWARDS["multi_accuracy"](example.completion, gt) == 3.0, example.completion
        nothing = bool(sample.extra.get("no_target"))
        assert example.completion.endswith(f"{MEANS} {NO_SHAPE}. </think><answer>[]</answer>") == nothing
        assert len(example.boxes) == len(sample.extra["targets"])
    no_target = next(s for s in samples if s.extra.get("no_target"))
    with pytest.raises(InputError, match="generalized"):
        reasoner_examples([no_target], 112)
