"""What to evaluate: the benchmark splits, the dataset formats they come in, and reading their samples.

A :class:`BenchmarkSpec` names a benchmark split and where its data is. The data's format is
told apart by its files (:func:`detect_format`: a ReasonSeg folder, ``refer`` files, a prepared
dataset or the reference release's Hugging Face format); :func:`iter_benchmark` reads the samples
through :func:`segzero.data.iter_samples`, whatever the format, with the subset and limit applied.
:func:`index_benchmark` is the first pass the runner makes for the ids (sharding and completeness
need them all); :func:`samples_for` reads some samples of a finished run again (contact sheets).

Example::

    spec = BenchmarkSpec("reasonseg", "val", "data/ReasonSeg", subset="long")
    detect_format(spec.data, spec.benchmark)   # "reasonseg"
    for sample in iter_benchmark(spec): ...
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from segzero.data.common import SkipLog
from segzero.data.records import Sample
from segzero.errors import DatasetError, InputError
from segzero.evaluation.results import RunConfig, shard_ids

#: Benchmarks and the splits they are evaluated on (SPEC section 7).
BENCHMARK_SPLITS: dict[str, tuple[str, ...]] = {
    "reasonseg": ("val", "test"),
    "refcoco": ("val", "testA", "testB"),
    "refcoco+": ("val", "testA", "testB"),
    "refcocog": ("val", "test"),
}

#: Dataset formats ``--data`` can hold; ``auto`` tells them apart by their files.
DATA_FORMATS = ("auto", "reasonseg", "refer", "prepared", "reference-hf")

#: ReasonSeg subsets: all requests, short queries (``is_sentence`` false), long queries (true).
SUBSETS = ("all", "short", "long")


@dataclass
class BenchmarkSpec:
    """A benchmark split and where its data is.

    Attributes:
        benchmark: ``reasonseg``, ``refcoco``, ``refcoco+`` or ``refcocog``.
        split: one of :data:`BENCHMARK_SPLITS` for the benchmark (``testa`` is read as ``testA``).
        data: LISA's ReasonSeg folder, a ``refer`` data folder, a prepared dataset
            (``segzero prepare``) or a dataset in the reference release's Hugging Face format.
        format: one of :data:`DATA_FORMATS`; ``auto`` decides from the files in ``data``.
        subset: ReasonSeg only: ``all``, ``short`` or ``long``.
        limit: evaluate only the first ``limit`` samples (for quick checks).
        split_by / images: ``refer`` only: the split scheme (umd, unc, google) and the COCO images folder.
        data_split: the split's name inside a Hugging Face dataset, when it differs from ``split``.
        keep_empty: ReasonSeg folders and the reference's format: keep the samples whose ground truth has
            no target pixel instead of skipping them, as the reference's evaluation does (``--protocol
            reference``).
    """

    benchmark: str
    split: str
    data: str | os.PathLike[str]
    format: str = "auto"
    subset: str = "all"
    limit: int | None = None
    split_by: str | None = None
    images: str | os.PathLike[str] | None = None
    data_split: str | None = None
    keep_empty: bool = False

    def __post_init__(self) -> None:
        self.benchmark = self.benchmark.strip().lower()
        if self.benchmark not in BENCHMARK_SPLITS:
            raise InputError(
                f"Unknown benchmark {self.benchmark!r}; choose one of {', '.join(BENCHMARK_SPLITS)}."
            )
        splits = BENCHMARK_SPLITS[self.benchmark]
        canonical = {s.lower(): s for s in splits}.get(self.split.strip().lower())
        if canonical is None:
            raise InputError(
                f"{self.benchmark} has no split {self.split!r}; it is evaluated on {', '.join(splits)}."
            )
        self.split = canonical
        if self.format not in DATA_FORMATS:
            raise InputError(f"Unknown data format {self.format!r}; choose one of {', '.join(DATA_FORMATS)}.")
        if self.subset not in SUBSETS:
            raise InputError(f"Unknown subset {self.subset!r}; choose one of {', '.join(SUBSETS)}.")
        if self.subset != "all" and self.benchmark != "reasonseg":
            raise InputError(f"--subset {self.subset} applies to ReasonSeg only, not to {self.benchmark}.")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1, got {self.limit}.")

    @property
    def name(self) -> str:
        """``benchmark-split`` (plus ``-subset`` for a ReasonSeg subset), e.g. for a default run folder."""
        return f"{self.benchmark}-{self.split}" + ("" if self.subset == "all" else f"-{self.subset}")


def _hf_columns(path: Path) -> list[str] | None:
    """Column names of a ``save_to_disk`` dataset folder (Dataset or DatasetDict), None if it is not one."""
    info = None
    if (path / "state.json").is_file():
        info = path / "dataset_info.json"
    elif (path / "dataset_dict.json").is_file():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
            info = path / splits[0] / "dataset_info.json"
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return []
    if info is None:
        return None
    try:
        return list(json.loads(info.read_text())["features"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def detect_format(data: str | os.PathLike[str], benchmark: str) -> str:
    """Which of :data:`DATA_FORMATS` (other than auto) the files at ``data`` are in.

    Raises:
        DatasetError: ``data`` is missing or holds none of them.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetError(f"--data {path} does not exist; point it at the {benchmark} data.")
    if path.is_file():
        if path.suffix in (".parquet", ".arrow"):
            return "reference-hf"
        raise DatasetError(f"--data {path} is a file; give a dataset folder, or a .parquet / .arrow file.")
    if any(path.glob("refs(*).p")) or any((path / benchmark).glob("refs(*).p")):
        return "refer"
    columns = _hf_columns(path)
    if columns is not None:
        return "prepared" if "reasoner_boxes" in columns else "reference-hf"
    if any(path.glob("*.json")) or any(any((path / s).glob("*.json")) for s in ("val", "test", "train")):
        return "reasonseg"
    if any(path.rglob("*.parquet")):
        return "reference-hf"
    raise DatasetError(
        f"--data {path} holds no dataset segzero can read: a ReasonSeg folder (NAME.jpg + NAME.json), "
        "a refer folder (refs(...).p + instances.json), a prepared dataset or a Hugging Face dataset."
    )


def resolve_format(spec: BenchmarkSpec) -> str:
    """``spec.format``, detected when ``auto``, checked against the benchmark.

    Raises:
        DatasetError: the format cannot be detected. InputError: it does not fit the benchmark.
    """
    fmt = detect_format(spec.data, spec.benchmark) if spec.format == "auto" else spec.format
    if fmt == "refer" and spec.benchmark == "reasonseg":
        raise InputError(f"{spec.data} holds refer files (RefCOCO/+/g), not ReasonSeg; check --benchmark.")
    if fmt == "reasonseg" and spec.benchmark != "reasonseg":
        raise InputError(f"{spec.data} is a ReasonSeg folder, not {spec.benchmark}; check --benchmark.")
    return fmt


def _dataset_split(spec: BenchmarkSpec) -> str | None:
    """The split name to ask a Hugging Face dataset for: ``data_split``, else ``split`` where the
    dataset lists it, else None (the dataset's only split)."""
    if spec.data_split:
        return spec.data_split
    listing = Path(spec.data) / "dataset_dict.json"
    if listing.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if spec.split in json.loads(listing.read_text())["splits"]:
                return spec.split
    return None


def data_origin(spec: BenchmarkSpec, fmt: str) -> str:
    """Where the data comes from: :data:`~segzero.evaluation.results.SHAPEWORLD_ORIGIN` for a ShapeWorld
    export (its ReasonSeg JSON files say ``"source": "shapeworld"``), else the benchmark itself."""
    from segzero.evaluation.results import SHAPEWORLD_ORIGIN

    if fmt == "reasonseg":
        root = Path(spec.data).expanduser()
        first = next(iter(sorted((root / spec.split).glob("*.json")) or sorted(root.glob("*.json"))), None)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if first is not None and json.loads(first.read_text(encoding="utf-8")).get("source") == SHAPEWORLD_ORIGIN:
                return SHAPEWORLD_ORIGIN
    return spec.benchmark


def sample_subset(sample: Sample, benchmark: str) -> str | None:
    """A ReasonSeg sample's subset: ``long`` for sentence queries, ``short`` otherwise; None if unknown."""
    if benchmark != "reasonseg" or sample.is_sentence is None:
        return None
    return "long" if sample.is_sentence else "short"


def iter_benchmark(spec: BenchmarkSpec, report: SkipLog | None = None) -> Iterator[Sample]:
    """The samples of the benchmark split, in reader order, subset and limit applied.

    Reading goes through :func:`segzero.data.iter_samples`; records a reader cannot use are
    passed to ``report``.

    Raises:
        DatasetError: the data is missing or malformed, a sample has no ground-truth mask, or a
            subset was asked of a dataset that does not mark long queries.
    """
    from segzero.data import iter_samples

    fmt = resolve_format(spec)
    report = report if report is not None else SkipLog()
    if fmt == "refer":
        samples = iter_samples(
            spec.benchmark, spec.data, spec.split, report=report, split_by=spec.split_by, images=spec.images
        )
    elif fmt == "reasonseg":
        samples = iter_samples("reasonseg", spec.data, spec.split, report=report, keep_empty=spec.keep_empty)
    elif fmt == "reference-hf":
        samples = iter_samples(fmt, spec.data, _dataset_split(spec), report=report, keep_empty=spec.keep_empty)
    else:
        samples = iter_samples(fmt, spec.data, _dataset_split(spec), report=report)

    def checked() -> Iterator[Sample]:
        for sample in samples:
            if sample.mask is None:
                raise DatasetError(
                    f"Sample {sample.id} of {spec.data} has no ground-truth mask, so it cannot be evaluated."
                )
            if spec.subset != "all":
                subset = sample_subset(sample, spec.benchmark)
                if subset is None:
                    raise DatasetError(
                        f"{spec.data} does not say which requests are long (is_sentence), so the "
                        f"{spec.subset} subset cannot be chosen; use --subset all."
                    )
                if subset != spec.subset:
                    continue
            yield sample

    return islice(checked(), spec.limit)


def spec_from_config(config: RunConfig) -> BenchmarkSpec:
    """The :class:`BenchmarkSpec` a run was made with, from its ``run.json`` configuration (what
    :func:`segzero.evaluation.runner.make_config` recorded)."""
    extra = config.extra or {}
    return BenchmarkSpec(
        benchmark=config.benchmark,
        split=config.split,
        data=config.dataset,
        format=extra.get("format", "auto"),
        subset=extra.get("subset", "all"),
        limit=extra.get("limit"),
        split_by=extra.get("split_by"),
        images=config.images or None,
        data_split=extra.get("data_split"),
        keep_empty=bool(extra.get("keep_empty")),
    )


def samples_for(config: RunConfig, ids: Iterable[str]) -> dict[str, Sample]:
    """Reload some samples of a run (e.g. for a contact sheet) from the dataset it was made on,
    whatever its format, in one pass that keeps only those.

    Raises:
        InputError: the run does not record where its dataset is.
        DatasetError: the dataset is gone, or some ids are not in it any more.
    """
    if not config.dataset:
        raise InputError(
            "The run does not record where its dataset is (run.json 'dataset'), "
            "so its samples cannot be reloaded."
        )
    wanted = set(ids)
    found = {s.id: s for s in iter_benchmark(spec_from_config(config)) if s.id in wanted}
    missing = wanted - found.keys()
    if missing:
        raise DatasetError(
            f"{len(missing)} samples of the run are not in {config.dataset} any more, "
            f"e.g. {sorted(missing)[0]!r}; was the dataset moved or changed?"
        )
    return found


@dataclass
class BenchmarkIndex:
    """The first pass over a benchmark: its sample ids (reader order) and what the reader skipped."""

    ids: list[str]
    skipped: SkipLog


def index_benchmark(spec: BenchmarkSpec) -> BenchmarkIndex:
    """Read the benchmark once for its ids (sharding and completeness need them all).

    Raises:
        DatasetError: no usable sample, a repeated id, or what :func:`iter_benchmark` raises.
    """
    report = SkipLog()
    ids = [sample.id for sample in iter_benchmark(spec, report)]
    if not ids:
        why = f" ({report.n_skipped} records skipped: {_kinds(report)})" if report.n_skipped else ""
        raise DatasetError(
            f"{spec.data} gave no {spec.name} sample to evaluate{why}; check --data and --split."
        )
    shard_ids(ids, 0, 1)  # refuses repeated ids, which would make "each sample once" meaningless
    return BenchmarkIndex(ids, report)


def _kinds(report: SkipLog) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in report.kinds.most_common())


__all__ = [
    "BENCHMARK_SPLITS",
    "BenchmarkIndex",
    "BenchmarkSpec",
    "DATA_FORMATS",
    "SUBSETS",
    "data_origin",
    "detect_format",
    "index_benchmark",
    "iter_benchmark",
    "resolve_format",
    "sample_subset",
    "samples_for",
    "spec_from_config",
]
