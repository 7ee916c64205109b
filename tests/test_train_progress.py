"""What a training run prints (segzero.train.progress) and how its curves are drawn; no model runs."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest

from segzero.train.progress import format_log, quiet_training

GRPO_LOGS = {
    "loss": 0.0123, "grad_norm": 0.5, "learning_rate": 1e-6, "completions/mean_length": 87.25,
    "rewards/thinking_format/mean": 1.0, "rewards/bbox_iou/mean": 0.25, "rewards/bbox_iou/std": 0.4,
    "reward": 1.25, "reward_std": 0.3, "kl": 0.00042, "entropy": 1.5, "step_time": 12.34, "epoch": 0.1,
}  # fmt: skip


def test_a_grpo_step_is_one_line_of_numbers():
    assert format_log(GRPO_LOGS, 3, 20) == (
        "step 3/20  reward 1.250 (thinking_format 1.00, bbox_iou 0.25)  length 87  kl 0.0004  entropy 1.50  "
        "loss 0.0123  grad 0.5  lr 1.00e-06  12.3 s/step"
    )


def test_an_sft_step_and_the_end_of_training():
    sft = {"loss": 2.5, "mean_token_accuracy": 0.4567, "learning_rate": 1e-4, "num_tokens": 100.0}
    assert format_log(sft, 2, 0) == "step 2  loss 2.5  accuracy 0.457  lr 1.00e-04"
    assert format_log({"train_runtime": 61.23, "train_loss": 1.0}, 20, 20) == "done: 20 steps in 61.2 s"


def test_each_warning_is_shown_once_within_a_training_run():
    pytest.importorskip("transformers")
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        args = SimpleNamespace(disable_tqdm=False)
        with quiet_training(args):
            for _ in range(3):
                warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
                warnings.warn("another one", UserWarning)
        assert args.disable_tqdm is True
        warnings.warn("another one", UserWarning)  # outside the run, nothing is held back
    assert shown == ["`is_gradient_checkpointing` is deprecated", "another one", "another one"]


def test_curves_have_whole_step_ticks(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from segzero.train.plot import plot_training

    history = [{"step": s, "loss": 1.0 / s, "reward": s / 3} for s in (1, 2, 3)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: saved.append(fig) or original(fig, *a, **k))
    plot_training(tmp_path)
    ticks = [t for t in saved[0].axes[-1].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
