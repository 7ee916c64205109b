"""Training curves from a run's ``trainer_state.json`` (``log_history``), drawn like the paper's Figures 7-8.

Panels, each drawn only when the run logged it:

* rewards: the total (``reward``) and every component (``rewards/<name>/mean``);
* completion length: ``completions/mean_length`` (min and max shaded when logged);
* KL to the reference model: ``kl`` (GRPO with ``beta > 0``);
* loss: ``loss`` (always; the only curve of an SFT run besides ``mean_token_accuracy``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segzero.errors import InputError

STATE_FILE = "trainer_state.json"


def find_state(run: str | Path) -> Path:
    """The ``trainer_state.json`` of a run folder (its own, else its newest checkpoint's) or the file itself.

    Raises:
        InputError: nothing found.
    """
    run = Path(run)
    if run.is_file():
        return run
    if (run / STATE_FILE).is_file():
        return run / STATE_FILE
    checkpoints = sorted(
        (p for p in run.glob("checkpoint-*") if (p / STATE_FILE).is_file() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    if checkpoints:
        return checkpoints[-1] / STATE_FILE
    raise InputError(
        f"No {STATE_FILE} in {run} or its checkpoint-* folders; pass the output_dir of a `segzero train` run."
    )


def read_history(run: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` from the run's ``log_history``; one value per step (the last)."""
    state = json.loads(find_state(run).read_text())
    series: dict[str, dict[int, float]] = {}
    for entry in state.get("log_history", []):
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            series.setdefault(key, {})[int(step)] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


def _smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard-style exponential moving average (``weight`` 0 = raw)."""
    out, last = [], None
    for v in values:
        last = v if last is None else weight * last + (1 - weight) * v
        out.append(last)
    return out


def panels(history: dict[str, list[tuple[int, float]]]) -> list[tuple[str, list[str]]]:
    """``(title, metric names)`` of the panels this history can fill, in drawing order."""
    components = sorted(k for k in history if k.startswith("rewards/") and k.endswith("/mean"))
    out = []
    if "reward" in history or components:
        out.append(("Rewards", [k for k in ("reward",) if k in history] + components))
    if "completions/mean_length" in history:
        out.append(("Completion length (tokens)", ["completions/mean_length"]))
    if "kl" in history:
        out.append(("KL to the reference model", ["kl"]))
    if "loss" in history:
        out.append(("Loss", ["loss"]))
    if "mean_token_accuracy" in history:
        out.append(("Answer token accuracy", ["mean_token_accuracy"]))
    return out


def plot_training(run: str | Path, out: str | Path | None = None, smooth: float = 0.0) -> Path:
    """Draw the run's curves into one PNG and return its path (default ``<run>/training_curves.png``).

    Raises:
        InputError: no trainer state, or nothing plottable in it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not 0.0 <= smooth < 1.0:
        raise InputError(f"smooth must be in [0, 1), got {smooth}.")
    history = read_history(run)
    layout = panels(history)
    if not layout:
        raise InputError(f"{find_state(run)} has no logged metrics yet; logs appear every `logging_steps` steps.")
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    out = Path(out) if out is not None else run_dir / "training_curves.png"
    fig, axes = plt.subplots(len(layout), 1, figsize=(8, 2.8 * len(layout)), sharex=True, squeeze=False)
    for ax, (title, names) in zip(axes[:, 0], layout):
        for name in names:
            steps, values = zip(*history[name])
            label = _label(name)
            style: dict[str, Any] = {"linewidth": 2.2} if name == "reward" else {"linewidth": 1.3}
            ax.plot(steps, _smooth(list(values), smooth), label=label, **style)
        if names == ["completions/mean_length"] and "completions/min_length" in history:
            lo, hi = dict(history["completions/min_length"]), dict(history.get("completions/max_length", []))
            steps = [s for s, _ in history[names[0]] if s in lo and s in hi]
            if steps:
                ax.fill_between(steps, [lo[s] for s in steps], [hi[s] for s in steps], alpha=0.15, label="min-max")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(names) > 1 or title.startswith("Completion"):
            ax.legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _label(name: str) -> str:
    if name == "reward":
        return "total"
    if name.startswith("rewards/"):
        return name[len("rewards/") : -len("/mean")]
    return name.replace("completions/", "")
