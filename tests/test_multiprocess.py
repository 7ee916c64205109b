"""The multi-process paths, for real, on the CPU: two ranks launched by ``accelerate launch``.

On a machine without GPUs ``accelerate launch --cpu --num_processes 2`` starts one process (the
``--cpu`` launcher ignores the count); ``--multi_gpu --num_processes 2`` starts two through
torchrun, and the recipes' ``use_cpu: true`` (training) and ``--device cpu`` (evaluation) keep
them on the CPU, talking over gloo. These tests use that, each launch on its own free port.

* ``segzero train grpo`` on the tiny model: both ranks take the same optimizer steps and hold the
  same weights after each; the final model is written once, by rank 0, and holds those weights; a
  run killed after its first checkpoint and started again resumes from it and ends with the
  uninterrupted run's weights.
* ``segzero eval``: each rank evaluates its shard, the last to finish merges, and the merged run
  is the single-process run, sample for sample.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rank_probe import weights_digest
from tests.test_train_data import make_prepared

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny_cpu.yaml"
STEPS = 6  # checkpoints at 2, 4, 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(module: str, *args: str) -> list[str]:
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(free_port())]  # fmt: skip
    return [*accelerate, "-m", module, *args]


def environment(probe_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if probe_dir is not None:
        env["RANK_PROBE_DIR"] = str(probe_dir)
    return env


def run(command: list[str], env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stderr


def grpo_args(models, data: Path, out: Path) -> list[str]:
    return ["train", "grpo", "--config", str(RECIPE), "--output-dir", str(out),
            "--set", f"model_name_or_path={models.reasoner}", "--set", f"dataset_path={data}",
            "--set", f"max_steps={STEPS}"]  # fmt: skip


def probes(probe_dir: Path) -> list[dict]:
    return [json.loads((probe_dir / f"rank-{r}.json").read_text()) for r in (0, 1)]


def saved_digest(folder: Path) -> str:
    from safetensors.torch import load_file

    return weights_digest(load_file(folder / "model.safetensors").values())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """24 samples: with 2 ranks x 2 prompts a step, the 6 steps stay in the first epoch. A run resumed in a
    later epoch would see another data order than the uninterrupted one: TRL's RepeatSampler draws one
    shuffle per epoch from a generator that starts afresh on resume, so the weights would differ."""
    return make_prepared(tmp_path_factory.mktemp("multiprocess") / "shapeworld", n=24)


def test_grpo_on_two_ranks_steps_in_lockstep_saves_once_and_resumes(tiny_models, prepared, tmp_path):
    whole, whole_probes = tmp_path / "whole", tmp_path / "whole-probes"
    run(
        launch_command("tests.rank_probe", *grpo_args(tiny_models, prepared, whole)),
        environment(whole_probes),
    )

    first, second = probes(whole_probes)
    assert first["world_size"] == second["world_size"] == 2 and {first["rank"], second["rank"]} == {0, 1}
    assert [s for s, _ in first["steps"]] == list(range(1, STEPS + 1))
    assert first["steps"] == second["steps"]  # the same step, the same weights, on both ranks, every time
    assert first["steps"][0][1] != first["steps"][-1][1]  # and the weights did move
    final = whole / "final"
    assert saved_digest(final) == first["steps"][-1][1]  # the final model holds the ranks' weights
    by_rank = {p["rank"]: p["final_writes"] for p in (first, second)}
    assert by_rank[1] == [] and any(w.endswith("segzero.json") for w in by_rank[0])  # written once, by rank 0
    assert sorted(p.name for p in whole.glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
    ]
    assert {p.name for p in (whole / "checkpoint-2").glob("rng_state_*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }

    # The same run, killed (every process of the launch) once its first checkpoint is complete.
    killed = tmp_path / "killed"
    command = launch_command("tests.rank_probe", *grpo_args(tiny_models, prepared, killed))
    env = environment(tmp_path / "killed-probes")
    launcher = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    checkpoint = killed / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 600
    try:
        while not checkpoint.exists():
            assert launcher.poll() is None, launcher.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
        os.killpg(launcher.pid, signal.SIGKILL)
    finally:
        launcher.wait(60)
        launcher.stderr.close()
    assert not (killed / "final").exists() and not (killed / f"checkpoint-{STEPS}").exists()

    # Run again: it continues from the newest complete checkpoint (its log is kept, the steps before it
    # are not run again) on both ranks, and ends where the uninterrupted run ended.
    complete = [int(p.parent.name.split("-")[1]) for p in killed.glob("checkpoint-*/trainer_state.json")]
    resumed_from = max(complete)
    state_file = killed / f"checkpoint-{resumed_from}" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["resumed_marker"] = 1.0
    state_file.write_text(json.dumps(state))
    resumed_probes = tmp_path / "resumed-probes"
    run(
        launch_command("tests.rank_probe", *grpo_args(tiny_models, prepared, killed)),
        environment(resumed_probes),
    )
    first, second = probes(resumed_probes)
    assert first["steps"] == second["steps"]
    assert [s for s, _ in first["steps"]] == list(range(resumed_from + 1, STEPS + 1))
    history = json.loads((killed / "trainer_state.json").read_text())["log_history"]
    assert history[0].get("resumed_marker") == 1.0
    assert [e["step"] for e in history if "loss" in e] == list(range(1, STEPS + 1))
    assert saved_digest(killed / "final") == saved_digest(final)


def eval_args(models, data: Path, out: Path) -> list[str]:
    """One sample per generate call: a padded batch's answers depend on its other rows, and the shards'
    batches are not the single run's."""
    from tests.conftest import TAUGHT_FRAME

    return ["eval", "-b", "reasonseg", "--split", "val", "--data", str(data), "--out", str(out),
            "--reasoner", str(models.reasoner), "--segmenter", str(models.segmenter),
            "--frame", str(TAUGHT_FRAME), "--max-new-tokens", "60", "--batch-size", "1",
            "--device", "cpu"]  # fmt: skip


def records(run_dir: Path) -> list[dict]:
    """The per-sample results without their timings (which differ from run to run)."""
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "timings"} for r in lines]


def test_eval_under_the_launcher_shards_itself_and_merges_to_the_single_process_run(taught_models, tmp_path):
    data = make_prepared(tmp_path / "shapeworld", n=7)  # odd: the shards differ in size
    single = tmp_path / "single"
    run([sys.executable, "-m", "segzero.cli", *eval_args(taught_models, data, single)], environment())
    launched = tmp_path / "launched"
    output = run(launch_command("segzero.cli", *eval_args(taught_models, data, launched)), environment())

    assert "merged into" in output
    sizes = sorted(len(records(launched / "shards" / f"{i}-of-2")) for i in range(2))
    assert sizes == [3, 4]
    assert records(launched) == records(single)  # every sample, once, in order, with the same answer and mask
    summary = {k: json.loads((d / "summary.json").read_text()) for k, d in (("s", single), ("l", launched))}
    for key in ("overall", "subsets", "complete", "n_expected"):
        assert summary["l"][key] == summary["s"][key], key
    assert summary["s"]["overall"]["n"] == 7 and summary["s"]["overall"]["giou"] > 0
