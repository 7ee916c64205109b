"""``python -m tests.rank_probe ARGS``: the segzero command line, with a record of what this rank did.

For the multi-process tests (``tests/test_multiprocess.py``), run under ``accelerate launch``. The
command runs unchanged; beside it, each rank writes ``$RANK_PROBE_DIR/rank-$RANK.json`` with:

* ``steps``: after every optimizer step, ``[global_step, digest of this rank's weights]``;
* ``final_writes``: the files under ``OUTPUT_DIR/final`` this rank opened for writing from Python
  (configs, processor files and ``segzero.json``; the weights are written by safetensors' own code).

The digest is over the multiset of tensor values, not their names, so the saved model (whose keys
are the hub's names) can be compared with it: :func:`weights_digest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any


def weights_digest(tensors: Any) -> str:
    """Digest of the values of ``tensors`` (an iterable of tensors), independent of names and order;
    a tensor held twice (tied weights) counts once."""
    parts = sorted({hashlib.sha256(t.detach().cpu().float().numpy().tobytes()).hexdigest() for t in tensors})
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def main() -> None:
    rank = int(os.environ.get("RANK", "0"))
    out = Path(os.environ["RANK_PROBE_DIR"])
    args = sys.argv[1:]
    final = Path(args[args.index("--output-dir") + 1]).resolve() / "final" if "--output-dir" in args else None
    record: dict[str, Any] = {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "steps": []}
    writes: list[str] = []

    def audit(event: str, event_args: tuple) -> None:
        if event != "open" or final is None or not isinstance(event_args[0], (str, os.PathLike)):
            return
        path, mode, flags = event_args
        writing = (isinstance(mode, str) and any(m in mode for m in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing and Path(os.fsdecode(path)).resolve().is_relative_to(final):
            writes.append(os.fsdecode(path))

    sys.addaudithook(audit)

    import trl
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            record["steps"].append([state.global_step, weights_digest(model.state_dict().values())])

    class ProbedGRPOTrainer(trl.GRPOTrainer):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.add_callback(Steps())

    trl.GRPOTrainer = ProbedGRPOTrainer  # segzero.train.grpo imports it at call time
    from segzero.cli import main as segzero_main

    sys.argv = ["segzero", *args]
    try:
        segzero_main()
    finally:
        record["final_writes"] = writes
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank-{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
