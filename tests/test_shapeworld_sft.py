"""The supervised loop of the warm-up and the knowledge stage (`segzero.shapeworld.training.sft`), on the
tiny random reasoner: batches, learning, the vision tower's learning rate, the auxiliary shape heads."""

from __future__ import annotations

import pytest


def test_warmup_sft_batches_label_the_completion_only(tiny_models):
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import reasoner_examples
    from segzero.shapeworld.training.sft import _encode_examples, _sft_batch

    reasoner = Reasoner.from_pretrained(str(tiny_models.reasoner), device="cpu", frame=tiny_models.frame)
    examples = reasoner_examples(list(make_split("train", 2, "referring")), tiny_models.frame)
    examples[1].completion = examples[1].completion[:40]  # rows of different lengths: left padding shows
    encoded = _encode_examples(reasoner, examples)
    batch = _sft_batch(encoded, reasoner.processor)
    length = batch["input_ids"].shape[1]
    tokenizer = reasoner.processor.tokenizer
    for row, (ex, enc) in enumerate(zip(examples, encoded)):
        n = len(enc.input_ids)
        assert batch["attention_mask"][row].tolist() == [0] * (length - n) + [1] * n
        assert batch["input_ids"][row, length - n :].tolist() == enc.input_ids.tolist()
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        assert tokenizer.decode(labelled) == ex.completion + tokenizer.eos_token
        assert batch["labels"][row, : length - enc.completion_tokens].eq(-100).all()
    assert batch["image_grid_thw"].shape[0] == 2


def test_warmup_sft_batches_give_the_model_the_positions_it_generates_with(tiny_models):
    """Qwen2.5-VL builds its image-row/column positions (M-RoPE) only when ``mm_token_type_ids`` comes
    with the ids; without it the warm-up trained on 1-D text positions while generation used 3-D ones.
    The completion's logits from a padded warm-up batch must equal those of the processor's own inputs,
    which is what ``generate`` gets."""
    import torch

    from segzero.reasoner import Reasoner, reasoner_image
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import reasoner_examples
    from segzero.shapeworld.training.sft import _encode_examples, _sft_batch

    reasoner = Reasoner.from_pretrained(str(tiny_models.reasoner), device="cpu", frame=tiny_models.frame)
    examples = reasoner_examples(list(make_split("train", 2, "referring")), tiny_models.frame)
    examples[1].completion = examples[1].completion[:40]
    encoded = _encode_examples(reasoner, examples)
    batch = _sft_batch(encoded, reasoner.processor)
    image_token = reasoner.model.config.image_token_id
    assert torch.equal(batch["mm_token_type_ids"] == 1, batch["input_ids"] == image_token)
    with torch.no_grad():
        batched = reasoner.model(**batch).logits
        for row, (ex, enc) in enumerate(zip(examples, encoded)):
            text = reasoner.chat_text(ex.request) + ex.completion + reasoner.processor.tokenizer.eos_token
            inputs = reasoner.processor(
                text=[text], images=[reasoner_image(ex.image, tiny_models.frame)], return_tensors="pt"
            )
            alone = reasoner.model(**inputs).logits[0]
            n = enc.completion_tokens
            torch.testing.assert_close(batched[row, -n - 1 :], alone[-n - 1 :], atol=1e-4, rtol=1e-4)


def test_warmup_sft_lowers_the_loss_and_saves_a_loadable_reasoner(tiny_models, tmp_path):
    import shutil

    from segzero.hub import read_model_meta, write_model_meta
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import reasoner_examples
    from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop

    start = shutil.copytree(tiny_models.reasoner, tmp_path / "start")
    write_model_meta(start, frame=tiny_models.frame, prompt="seg_zero")
    examples = reasoner_examples(list(make_split("train", 4, "referring")), tiny_models.frame)
    logged: list[str] = []
    result = sft_loop(
        start,
        examples,
        tmp_path / "out",
        SFTLoopConfig(steps=50, batch_size=4, lr=3e-3, warmup=5),
        log=logged.append,
    )
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in logged if "sft step" in line]
    assert result["steps"] == 50 and len(losses) == 1
    assert result["final_loss"] < 0.7 * _first_loss(start, examples, tiny_models.frame)
    assert read_model_meta(tmp_path / "out")["reasoner_frame"] == tiny_models.frame
    Reasoner.from_pretrained(str(tmp_path / "out"), device="cpu", frame=tiny_models.frame)


def _tiny_start(tiny_models, tmp_path):
    """A copy of the tiny reasoner with the ``segzero.json`` (its frame) the training stages read."""
    import shutil

    from segzero.hub import write_model_meta

    start = shutil.copytree(tiny_models.reasoner, tmp_path / "start")
    write_model_meta(start, frame=tiny_models.frame, prompt="seg_zero")
    return start


def _largest_weight_steps(tiny_models, tmp_path):
    """A function of an ``SFTLoopConfig`` giving, per part ("visual", "language"), the largest absolute
    weight change ``sft_loop`` makes from the tiny reasoner on two referring samples."""
    import itertools

    from safetensors.torch import load_file

    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import reasoner_examples
    from segzero.shapeworld.training.sft import sft_loop

    start = _tiny_start(tiny_models, tmp_path)
    examples = reasoner_examples(list(make_split("train", 2, "referring")), tiny_models.frame)
    before = load_file(start / "model.safetensors")
    runs = itertools.count()

    def largest_steps(config, log=lambda _: None) -> dict[str, float]:
        out = tmp_path / f"out{next(runs)}"
        sft_loop(start, examples, out, config, log=log)
        after = load_file(out / "model.safetensors")
        steps = {"visual": 0.0, "language": 0.0}
        for k in before:
            part = "visual" if "visual" in k else "language"
            steps[part] = max(steps[part], float((after[k] - before[k]).abs().max()))
        return steps

    return largest_steps


@pytest.mark.parametrize("vision_lr_scale", [0.0, 0.1])
def test_warmup_sft_scales_or_fixes_the_vision_towers_learning_rate(tiny_models, tmp_path, vision_lr_scale):
    from segzero.shapeworld.training.sft import SFTLoopConfig

    largest_steps = _largest_weight_steps(tiny_models, tmp_path)
    config = SFTLoopConfig(steps=1, batch_size=2, lr=1e-3, warmup=1)
    full = largest_steps(config)
    config.vision_lr_scale = vision_lr_scale
    scaled = largest_steps(config)
    # Adam's first step moves every weight by about lr, whatever its gradient: a clean read of the rate.
    assert scaled["language"] == pytest.approx(full["language"], rel=1e-3)
    assert full["visual"] == pytest.approx(1e-3, rel=0.05)
    assert scaled["visual"] == pytest.approx(vision_lr_scale * 1e-3, rel=0.05, abs=1e-9)


def test_warmup_sft_trains_a_slow_tower_at_the_full_rate_from_the_given_step(tiny_models, tmp_path):
    from segzero.shapeworld.training.sft import SFTLoopConfig

    largest_steps = _largest_weight_steps(tiny_models, tmp_path)

    def tower_step(steps: int, full_from: int | None) -> float:
        config = SFTLoopConfig(
            steps=steps, batch_size=2, lr=1e-3, warmup=1, vision_lr_scale=0.0, vision_full_from=full_from
        )
        return largest_steps(config)["visual"]

    # Fixed before the step, trained at the full rate (Adam: about lr per step) from it on.
    assert tower_step(2, None) == 0.0
    assert tower_step(2, 2) == 0.0
    assert tower_step(2, 1) == pytest.approx(1e-3, rel=0.2)


def test_warmup_sft_rejects_settings_no_run_can_use(tiny_models, tmp_path):
    from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop

    with pytest.raises(ValueError, match="vision_lr_scale"):
        sft_loop(tiny_models.reasoner, [], tmp_path / "out", SFTLoopConfig(vision_lr_scale=-1))
    with pytest.raises(ValueError, match="vision_full_from"):
        sft_loop(tiny_models.reasoner, [], tmp_path / "out", SFTLoopConfig(vision_full_from=-1))
    # Evaluations need a function to run: the loop owns none (the probes live in benchmarks/).
    with pytest.raises(ValueError, match="eval_every needs an evaluate function"):
        sft_loop(tiny_models.reasoner, [], tmp_path / "out", SFTLoopConfig(eval_every=5, eval_samples=[None]))
    with pytest.raises(ValueError, match="steps must be at least 1"):
        sft_loop(tiny_models.reasoner, [], tmp_path / "out", SFTLoopConfig(steps=0))
    assert not (tmp_path / "out").exists()


def test_warmup_shape_loss_teaches_the_tower_the_shapes_and_changes_it(tiny_models, tmp_path):
    """The auxiliary heads' loss falls well under chance on the scenes it trains on, and the tower
    ends elsewhere than the same run without it (its gradient reaches the tower)."""
    import math

    from segzero.shapeworld.training.sft import SFTLoopConfig

    largest_steps = _largest_weight_steps(tiny_models, tmp_path)
    logged: list[str] = []
    config = SFTLoopConfig(steps=50, batch_size=2, lr=3e-3, warmup=5, shape_loss=("kind", "colour"))
    tower_with = largest_steps(config, log=logged.append)["visual"]
    config.shape_loss = ()
    tower_without = largest_steps(config)["visual"]
    shape_losses = [
        float(line.split("shape loss ")[1].split(",")[0]) for line in logged if "sft step" in line
    ]
    chance = (math.log(7) + math.log(6)) / 2
    assert len(shape_losses) == 1 and shape_losses[0] < 0.6 * chance
    assert tower_with != pytest.approx(tower_without, rel=1e-3)


def test_warmup_rejects_an_unknown_shape_attribute(tiny_models, tmp_path):
    from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop

    with pytest.raises(ValueError, match="unknown attributes \\['texture'\\]"):
        sft_loop(tiny_models.reasoner, [], tmp_path / "out", SFTLoopConfig(shape_loss=("kind", "texture")))


def _first_loss(reasoner_dir, examples, frame: int) -> float:
    import torch

    from segzero.reasoner import Reasoner
    from segzero.shapeworld.training.sft import _encode_examples, _sft_batch

    reasoner = Reasoner.from_pretrained(str(reasoner_dir), device="cpu", dtype="float32", frame=frame)
    encoded = _encode_examples(reasoner, examples)
    with torch.no_grad():
        return float(reasoner.model(**_sft_batch(encoded, reasoner.processor)).loss)


def test_sft_asks_with_its_prompt_variant_and_records_it(tiny_models, tmp_path):
    import re

    from segzero.errors import InputError
    from segzero.hub import read_model_meta
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import reasoner_examples
    from segzero.shapeworld.training.sft import SFTLoopConfig, _encode_examples, sft_loop

    reasoner = Reasoner.from_pretrained(str(tiny_models.reasoner), device="cpu", frame=tiny_models.frame)
    samples = list(make_split("train", 2, "referring", no_target_share=0.5))
    examples = reasoner_examples(samples, tiny_models.frame, answer_form="generalized")
    tokenizer = reasoner.processor.tokenizer
    for prompt in ("seg_zero", "generalized"):
        (encoded,) = _encode_examples(reasoner, examples[:1], prompt)
        text = re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", tokenizer.decode(encoded.input_ids))
        asked = reasoner.chat_text(examples[0].request, prompt)
        assert text == asked + examples[0].completion + tokenizer.eos_token
    assert reasoner.chat_text("x", "generalized") != reasoner.chat_text("x", "seg_zero")

    config = SFTLoopConfig(steps=1, batch_size=2, lr=1e-3, warmup=1, prompt="generalized")
    sft_loop(_tiny_start(tiny_models, tmp_path), examples, tmp_path / "out", config, log=lambda _: None)
    assert read_model_meta(tmp_path / "out")["prompt"] == "generalized"
    with pytest.raises(InputError, match="Unknown prompt variant 'nope'"):
        SFTLoopConfig(prompt="nope").check()
