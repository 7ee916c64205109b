"""Training rows: prompts, frame-sized images and ground truth reach TRL and the rewards as they should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segzero.errors import DatasetError

#: Frame of the test datasets: 56 px is 2x2 image tokens for the tiny Qwen2.5-VL, so steps stay fast.
FRAME = 56


def make_prepared(path: Path, n: int = 8, frame: int = FRAME, image_size: int = 64) -> Path:
    """A prepared dataset of ``n`` ShapeWorld samples (prompts from the masks), like `segzero prepare` writes."""
    from segzero.data.common import add_mask_prompts
    from segzero.data.prepared import save_prepared
    from segzero.shapeworld import make_split

    samples = []
    for sample in make_split("train", n, "referring", size=image_size):
        assert add_mask_prompts(sample)
        samples.append(sample)
    assert save_prepared(samples, path, frame=frame) == n
    return path


def make_generalized_prepared(path: Path, n: int = 6, n_free: int = 2, frame: int = FRAME) -> Path:
    """A prepared dataset in the generalized answer form: ``n`` ShapeWorld samples with a target, and ``n_free``
    target-free ones (a scene of theirs asked for a shape no scene has: no boxes, an all-zero mask, "[]")."""
    import dataclasses

    import numpy as np

    from segzero.data.common import add_mask_prompts
    from segzero.data.prepared import save_prepared
    from segzero.shapeworld import make_split

    samples = list(make_split("train", n, "referring", size=64))
    for sample in samples:
        assert add_mask_prompts(sample)
    free = [
        dataclasses.replace(
            s, id=f"{s.id}-nothing", request="the golden unicorn", mask=np.zeros_like(s.mask), boxes=[], points=[],
            extra={"no_target": True},
        )
        for s in samples[:n_free]
    ]  # fmt: skip
    assert save_prepared(samples + free, path, frame=frame, answer_form="generalized") == n + n_free
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("train-data") / "shapeworld")


def _script(path, **kw):
    from segzero.train.config import SegZeroArguments

    return SegZeroArguments(dataset_path=str(path), **kw)


def test_grpo_rows_carry_prompt_frame_image_and_ground_truth(prepared):
    from segzero.prompts import get_prompt
    from segzero.reasoner import build_messages
    from segzero.train.data import dataset_frame, grpo_dataset, load_rows

    data = load_rows(_script(prepared, max_samples=3))
    assert len(data) == 3
    assert dataset_frame(data, None) == FRAME
    row = grpo_dataset(data, "seg_zero", FRAME)[0]
    assert row["prompt"] == build_messages(data[0]["request"], get_prompt("seg_zero"))
    assert [im.size for im in row["images"]] == [(FRAME, FRAME)]
    assert row["reasoner_boxes"] == data[0]["reasoner_boxes"]
    assert "image" not in row and "mask_rle" not in row  # only with the mask reward
    masked = grpo_dataset(data, "seg_zero", FRAME, with_masks=True)[0]
    assert masked["image"].size == (data[0]["width"], data[0]["height"])  # original frame, for SAM2
    assert masked["mask_rle"]["size"] == [data[0]["height"], data[0]["width"]]


def test_frame_must_match_the_data(prepared):
    from segzero.train.data import dataset_frame, load_rows

    data = load_rows(_script(prepared))
    with pytest.raises(DatasetError, match="frame 112 but the dataset's prompts are in frame 56"):
        dataset_frame(data, 112)


def test_rewards_score_the_ground_truth_answer_fully(prepared):
    """TRL hands reward functions the row's columns; a perfect answer must earn every reward."""
    from segzero.rewards import SEGZERO_REWARDS, make_trl_rewards
    from segzero.train.data import grpo_dataset, load_rows

    data = load_rows(_script(prepared))
    rows = [grpo_dataset(data, "seg_zero", FRAME)[i] for i in range(len(data))]
    completions = [
        [{"role": "assistant", "content": f"<think>it is that one</think><answer>{s}</answer>"}]
        for s in data["solution"]
    ]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    for reward in make_trl_rewards(SEGZERO_REWARDS):
        assert reward([r["prompt"] for r in rows], completions, **columns) == [1.0] * len(rows), reward.__name__


def test_mask_reward_runs_sam2_on_the_original_image(prepared, tiny_models):
    from segzero.segmenter import Segmenter
    from segzero.train.data import grpo_dataset, load_rows
    from segzero.rewards import make_trl_rewards

    data = load_rows(_script(prepared, max_samples=2))
    rows = [grpo_dataset(data, "seg_zero", FRAME, with_masks=True)[i] for i in range(2)]
    completions = [f"<think>x</think><answer>{s}</answer>" for s in data["solution"]]
    (reward,) = make_trl_rewards(["mask_iou"], segmenter=Segmenter.from_pretrained(str(tiny_models.segmenter), device="cpu"))
    scores = reward(None, completions, **{k: [r[k] for r in rows] for k in ("image", "mask_rle", "ignore_rle")})
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)


def test_sft_rows_learn_the_answer_only(prepared, tiny_models):
    """Prompt-completion rows with TRL's VLM collator: labels cover exactly `<answer>..</answer>` + end of turn."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from segzero.train.data import answer_target, load_rows, sft_dataset
    from segzero.train.run import load_processor

    class Model:
        model_name_or_path, model_revision = str(tiny_models.reasoner), "main"

    processor = load_processor(Model)
    data = load_rows(_script(prepared, max_samples=2))
    rows = [sft_dataset(data, "no_think", FRAME)[i] for i in range(2)]
    assert rows[0]["completion"][0]["content"][0]["text"] == answer_target(data[0]["solution"])
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)(rows)
    tokenizer = processor.tokenizer
    for i, solution in enumerate(data["solution"]):
        learnt = batch["labels"][i][batch["labels"][i] != -100]
        assert tokenizer.decode(learnt) == f"<answer>{solution}</answer><|im_end|>\n"
        assert json.loads(solution)["bbox"] == data[i]["reasoner_boxes"][0]
    assert "pixel_values" in batch and batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 2
    # Without it Qwen2.5-VL trains on 1-D positions for the image tokens and generates with 3-D ones.
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (batch["mm_token_type_ids"] == 1).equal(batch["input_ids"] == image_token)


def test_long_prompts_are_dropped(prepared, tiny_models):
    from segzero.train.data import drop_long_prompts, load_rows, prompt_lengths
    from segzero.train.run import load_processor

    class Model:
        model_name_or_path, model_revision = str(tiny_models.reasoner), "main"

    processor = load_processor(Model)
    data = load_rows(_script(prepared))
    lengths = prompt_lengths(processor, data["request"], "seg_zero", FRAME)
    # Exact: the processor's own count for one row, image tokens included.
    from segzero.reasoner import build_messages, reasoner_image

    text = processor.apply_chat_template(build_messages(data[0]["request"]), tokenize=False, add_generation_prompt=True)
    full = processor(text=[text], images=[reasoner_image(data[0]["image"], FRAME)])["input_ids"][0]
    assert lengths[0] == len(full)
    limit = sorted(lengths)[len(lengths) // 2]
    kept = drop_long_prompts(data, processor, _script(prepared, max_prompt_length=limit), FRAME)
    assert len(kept) == sum(n <= limit for n in lengths) < len(data)
    with pytest.raises(DatasetError, match="Every prompt is longer"):
        drop_long_prompts(data, processor, _script(prepared, max_prompt_length=3), FRAME)


@pytest.fixture(scope="module")
def generalized(tmp_path_factory) -> Path:
    return make_generalized_prepared(tmp_path_factory.mktemp("train-data") / "generalized")


def test_no_target_share_draws_the_mix_with_a_seed(generalized):
    from segzero.train.data import load_rows

    def drawn(**kw):
        data = load_rows(_script(generalized, **kw))
        return [(row_id, not boxes) for row_id, boxes in zip(data["id"], data["reasoner_boxes"])]

    # 8 rows, 2 target-free: a share of 0.5 of 8 draws 4 of each, the 2 target-free ones twice each.
    half = drawn(no_target_share=0.5, subset_seed=3)
    assert len(half) == 8 and sum(free for _, free in half) == 4
    free_ids = sorted(i for i, free in half if free)
    assert free_ids == sorted(2 * [i for i, free in drawn(no_target_share=1.0, max_samples=2)])
    assert all(i.endswith("-nothing") == free for i, free in half)
    assert len({i for i, free in half if not free}) == 4  # targets drawn without repeats (6 in the pool)
    assert half == drawn(no_target_share=0.5, subset_seed=3)  # the seed fixes the draw
    assert half != drawn(no_target_share=0.5, subset_seed=4)
    quarter = drawn(no_target_share=0.25, max_samples=20)
    assert len(quarter) == 20 and sum(free for _, free in quarter) == 5
    assert not any(free for _, free in drawn(no_target_share=0))
    assert sum(free for _, free in drawn()) == 2  # unset: the data's own mix


def test_no_target_share_needs_target_free_rows(prepared, generalized):
    from segzero.errors import InputError
    from segzero.train.config import load_config
    from segzero.train.data import load_rows

    with pytest.raises(DatasetError, match=r"^no_target_share is 0\.2 but .* has no target-free rows"):
        load_rows(_script(prepared, no_target_share=0.2))
    assert len(load_rows(_script(prepared, no_target_share=0.0))) == 8  # none asked for: none needed
    for bad in (1.5, -0.1, "some"):
        with pytest.raises(InputError, match="no_target_share must be a number from 0 to 1"):
            load_config("grpo", None, {"dataset_path": str(generalized), "model_name_or_path": "m",
                                        "output_dir": "o", "no_target_share": bad, "use_cpu": True})  # fmt: skip
