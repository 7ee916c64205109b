"""What a training run prints: one readable line per logged step under a rich progress bar.

TRL's trainers report through transformers' callbacks; by default that is a tqdm bar with each step's
log dict printed into it as strings, the bar of every checkpoint save in between, and the same library
deprecation warning at every step. :func:`quiet_training` installs :class:`StepLog` instead (the
numbers as numbers, one line a step, the bar below them), keeps transformers' save bars away, and shows
each library warning once. Everything logged still goes to ``trainer_state.json`` and ``report_to``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

#: The log keys a step's line shows, in order, with how each is written: ``(key, label, format)``.
#: ``rewards/<name>/mean`` keys follow ``reward`` in parentheses; the rest stay in the logs.
LINE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("reward", "reward", "{:.3f}"),
    ("completions/mean_length", "length", "{:.0f}"),
    ("kl", "kl", "{:.4f}"),
    ("entropy", "entropy", "{:.2f}"),
    ("loss", "loss", "{:.4g}"),
    ("mean_token_accuracy", "accuracy", "{:.3f}"),
    ("grad_norm", "grad", "{:.3g}"),
    ("learning_rate", "lr", "{:.2e}"),
)
#: transformers' tqdm bars that are hidden while training: checkpoint saves would cut into the step bar.
HIDDEN_BARS = ("Writing model shards",)


def format_log(logs: Mapping[str, Any], step: int, max_steps: int) -> str:
    """One line for a step's logs: ``step 3/20  reward 1.250 (thinking_format 1.00, ...)  length 87  ...``.

    The end-of-training summary (``train_runtime`` in ``logs``) gives ``done: N steps in S s``.
    """
    if "train_runtime" in logs:
        return f"done: {step} steps in {float(logs['train_runtime']):.1f} s"
    parts = [f"step {step}/{max_steps}" if max_steps > 0 else f"step {step}"]
    components = [
        f"{key[len('rewards/') : -len('/mean')]} {float(value):.2f}"
        for key, value in logs.items()
        if key.startswith("rewards/") and key.endswith("/mean") and _number(value)
    ]
    for key, label, fmt in LINE_KEYS:
        value = logs.get(key)
        if not _number(value):
            continue
        text = f"{label} {fmt.format(float(value))}"
        if key == "reward" and components:
            text += f" ({', '.join(components)})"
        parts.append(text)
    if _number(logs.get("step_time")):
        parts.append(f"{float(logs['step_time']):.1f} s/step")
    return "  ".join(parts)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _step_log_class() -> type:
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """A rich progress bar of optimizer steps, with one :func:`format_log` line printed above it per log."""

        def __init__(self, title: str = "Training") -> None:
            self.title = title
            self.bar: Any = None
            self.task: Any = None
            self.console: Any = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            self.console = Console(stderr=True, highlight=False)
            self.bar = Progress(
                TextColumn(self.title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), console=self.console,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task(self.title, total=state.max_steps or None, completed=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.console is not None and logs:
                line = format_log(logs, state.global_step, state.max_steps)
                self.console.print(line, markup=False, soft_wrap=True)  # one line a step, even in a log file

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.stop()
                self.bar = None

    return StepLog


def step_log(title: str = "Training") -> Any:
    """A :class:`StepLog` callback (defined on first use, so this module imports without transformers)."""
    return _step_log_class()(title)


@contextlib.contextmanager
def quiet_training(args: Any) -> Iterator[None]:
    """Within the block, trainers built with ``args`` report through :func:`step_log` instead of tqdm:
    ``args.disable_tqdm`` is set (the trainer then adds ``PrinterCallback``, which :func:`use_step_log`
    swaps out), transformers' save bars are hidden and each warning is shown once."""
    from transformers.utils import logging as hf_logging

    args.disable_tqdm = True
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5.1

    def hide_save_bars(factory, bar_args, bar_kwargs):
        if bar_kwargs.get("desc") in HIDDEN_BARS:
            return hf_logging.EmptyTqdm(*bar_args, **bar_kwargs)
        return factory(*bar_args, **bar_kwargs)

    previous = set_hook(hide_save_bars) if set_hook else None
    with warnings.catch_warnings():  # restores showwarning too
        warnings.showwarning = _once(warnings.showwarning)
        try:
            yield
        finally:
            if set_hook:
                set_hook(previous)


def _once(show: Any) -> Any:
    """``warnings.showwarning`` that shows each (category, message) once, wherever it comes from: libraries
    warn from inside every step, and the ``"once"`` filter forgets what it saw whenever a library changes
    the warning filters."""
    seen: set[tuple[type, str]] = set()

    def show_once(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key not in seen:
            seen.add(key)
            show(message, category, filename, lineno, file, line)

    return show_once


def use_step_log(trainer: Any, title: str) -> None:
    """Replace the trainer's plain log printer (``disable_tqdm``'s ``PrinterCallback``) with :func:`step_log`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(step_log(title))
