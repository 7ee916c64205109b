"""Sharded runs: which shard a launched process takes, where shards are written, and merging them.

``segzero eval --shard I/N`` evaluates :func:`~segzero.evaluation.results.shard_ids` ``I`` of ``N``
into its own run folder ``RUN_DIR/shards/I-of-N`` (:func:`shard_dir`); under ``accelerate launch``
(or ``torchrun``) each process takes shard ``RANK/WORLD_SIZE`` (:func:`launched_shard`) on its
local GPU (:func:`launch_device`). The shards never talk to each other: the last one to finish
merges the run (:func:`merge_when_complete`, one merger at a time), and ``segzero eval-merge``
merges by hand (:func:`merge_run`). A merged run folder::

    RUN_DIR/
      run.json  results.jsonl  summary.json  ids.json  skipped.jsonl
                        the whole split, as an unsharded run writes them (segzero.evaluation.results)
      merged.json       the shards it was merged from; written first, so a merge cut short is
                        redone rather than mistaken for an unsharded run
      shards/I-of-N/    each shard's own run folder
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero.data.common import SkipLog
from segzero.errors import InputError
from segzero.evaluation.results import (
    IDS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    SKIPPED_FILE,
    ResultsWriter,
    RunConfig,
    load_results,
    merge_shards,
    parse_shard,
    read_config,
    shard_ids,
    summarize_dir,
    write_json_atomic,
)

MERGED_FILE = "merged.json"
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class Launch:
    """Where this process stands under a multi-process launcher.

    Attributes:
        index, count: this process's rank and the number of processes (its shard is index/count).
        local_rank: its rank on this machine (which local GPU it takes).
    """

    index: int
    count: int
    local_rank: int


def launched_shard(environ: dict[str, str] | None = None) -> Launch | None:
    """This process's place under ``accelerate launch`` / ``torchrun`` (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), or None for a single process.

    The environment is read directly rather than through ``accelerate.PartialState`` so that no
    process group is started: the shards never talk to each other, and a collective barrier would
    time out while the slowest shard is still evaluating.
    """
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("WORLD_SIZE", "1"))
        index = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(index)))
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; check the launcher.") from None
    if count <= 1:
        return None
    if not 0 <= index < count:
        raise InputError(f"RANK={index} is not below WORLD_SIZE={count}; check the launcher.")
    return Launch(index, count, local_rank)


def launch_device(device: str | None, launch: Launch | None) -> str | None:
    """The device a launched process uses: its local GPU unless told otherwise.

    ``None`` or ``"cuda"`` under a launcher become ``cuda:LOCAL_RANK`` when CUDA is available;
    anything else (``cpu``, ``cuda:3``) is kept as given.
    """
    if launch is None or device not in (None, "cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{launch.local_rank % max(torch.cuda.device_count(), 1)}"
    return device


def shard_dir(run_dir: str | os.PathLike[str], index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of a run is written: ``RUN_DIR/shards/I-of-N``."""
    return Path(run_dir) / SHARDS_DIR / f"{index}-of-{count}"


def _read_ids(folder: Path) -> list[str]:
    try:
        return list(json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))["ids"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{folder} has no readable {IDS_FILE}; it was not written by `segzero eval`."
        ) from None


def find_shards(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The shard folders of a run (``RUN_DIR/shards/*`` holding a ``run.json``), sorted by shard index."""
    folder = Path(run_dir) / SHARDS_DIR
    found = [p for p in folder.iterdir() if (p / RUN_FILE).is_file()] if folder.is_dir() else []

    def key(p: Path) -> tuple[int, str]:
        shard = (read_config(p) or RunConfig("", "")).shard
        return (parse_shard(shard)[0] if shard else -1, p.name)

    return sorted(found, key=key)


def merge_run(
    run_dir: str | os.PathLike[str], shards: Sequence[str | os.PathLike[str]] | None = None
) -> dict[str, Any]:
    """Merge a sharded run's shards into ``run_dir`` and summarise it.

    Args:
        run_dir: where the merged ``run.json``, ``results.jsonl``, ``summary.json`` go.
        shards: the shard folders; default every folder under ``run_dir/shards``.

    Returns:
        The merged summary (also in ``run_dir/summary.json``).

    Raises:
        InputError: no shards; shards of different runs, splits or datasets; a shard missing or
            given twice; a sample in two shards or in none (see :func:`merge_shards`); or
            ``run_dir`` holding an unsharded run.
    """
    run_dir = Path(run_dir)
    folders = [Path(p) for p in shards] if shards else find_shards(run_dir)
    if not folders:
        raise InputError(f"No shards found in {run_dir / SHARDS_DIR}; give the shard folders to merge.")
    seen: dict[int, Path] = {}
    counts: set[int] = set()
    for folder in folders:
        config = read_config(folder)
        if config is None or not config.shard:
            raise InputError(f"{folder} is not a shard of an evaluation (its run.json names no shard).")
        i, n = parse_shard(config.shard)
        counts.add(n)
        if i in seen:
            raise InputError(f"{seen[i]} and {folder} are both shard {i}/{n}; merge each shard once.")
        seen[i] = folder
    if len(counts) > 1:
        raise InputError(
            f"The shards come from splits into {' and '.join(map(str, sorted(counts)))} shards; "
            "merge the shards of one --shard I/N split."
        )
    count = counts.pop()
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if missing:
        which = f"Shard {missing[0]} is" if len(missing) == 1 else f"Shards {', '.join(missing)} are"
        raise InputError(f"{which} missing; run them with the same command and --shard before merging.")
    ids = _read_ids(folders[0])
    for folder in folders[1:]:
        if _read_ids(folder) != ids:
            raise InputError(
                f"{folders[0]} and {folder} were run on different sample lists (another dataset, "
                "subset or limit); only shards of the same run can be merged."
            )
    merged = merge_shards(folders, ids)

    results = run_dir / RESULTS_FILE
    if results.exists() and not (run_dir / MERGED_FILE).is_file():
        raise InputError(
            f"{run_dir} already holds an unsharded run; merge into another folder (eval-merge --out)."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    config = read_config(folders[0])
    assert config is not None
    merged_config = RunConfig.from_json({**config.to_json(), "shard": None})
    # The marker first: a merge cut short is then redone, not mistaken for an unsharded run.
    write_json_atomic(
        run_dir / MERGED_FILE, {"shards": [str(p) for p in sorted(seen.values())], "count": count}
    )
    ResultsWriter(run_dir, merged_config).close()  # writes run.json, or checks the one there
    tmp = results.with_name(f".{RESULTS_FILE}.merging")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in merged.values():
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, results)
    write_json_atomic(run_dir / IDS_FILE, {"benchmark": config.benchmark, "split": config.split, "ids": ids})
    skipped_file = folders[0] / SKIPPED_FILE
    if skipped_file.is_file():
        (run_dir / SKIPPED_FILE).write_bytes(skipped_file.read_bytes())
    return summarize_dir(run_dir, ids, _skiplog(run_dir / SKIPPED_FILE))


def _skiplog(path: Path) -> SkipLog | None:
    """A SkipLog back from ``skipped.jsonl`` (skips only; kinds are not kept there)."""
    if not path.is_file():
        return None
    log = SkipLog()
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, KeyError):
            item = json.loads(line)
            if not item.get("warning"):
                log.skip(item["id"], item["reason"], "skipped by the reader")
    return log


def merge_when_complete(run_dir: Path, count: int, ids: Sequence[str]) -> dict[str, Any] | None:
    """Merge the run if all ``count`` shards are complete (the last one to finish does it).

    Returns:
        The merged summary, or None while some shard is unfinished.
    """
    for i in range(count):
        folder = shard_dir(run_dir, i, count)
        if not (folder / RESULTS_FILE).is_file():
            return None
        if not set(shard_ids(ids, i, count)) <= load_results(folder).keys():
            return None
    run_dir.mkdir(parents=True, exist_ok=True)
    with _merge_lock(run_dir):
        return merge_run(run_dir, [shard_dir(run_dir, i, count) for i in range(count)])


@contextlib.contextmanager
def _merge_lock(run_dir: Path) -> Iterator[None]:
    """One merger at a time: shards that finish together would otherwise write the same files."""
    with open(run_dir / ".merge.lock", "a+b") as f:
        try:
            import fcntl
        except ImportError:  # not POSIX: merges are idempotent, a race writes the same files
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


__all__ = [
    "Launch",
    "MERGED_FILE",
    "SHARDS_DIR",
    "find_shards",
    "launch_device",
    "launched_shard",
    "merge_run",
    "merge_when_complete",
    "shard_dir",
]
