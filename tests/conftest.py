"""Shared fixtures. Tests never reach the network: the hub is switched off for the whole session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from segzero.tiny import TAUGHT_ANSWER, TAUGHT_FRAME, teach  # noqa: E402, F401 (tests import them from here)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):
    """Tiny random Qwen2.5-VL reasoner and SAM2 segmenter, built offline once and saved in HF format."""
    from segzero.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_models):
    """The whole pipeline on the tiny random models, on the CPU, 8 new tokens a request, 8 requests a
    generate call: its answers are noise, but every stage runs for real. Shared: do not change it."""
    from segzero.pipeline import ReasoningSegmenter

    return ReasoningSegmenter.from_pretrained(
        str(tiny_models.reasoner), str(tiny_models.segmenter), frame=tiny_models.frame, batch_size=8,
        max_new_tokens=8, device="cpu",
    )  # fmt: skip


@pytest.fixture(scope="session")
def taught_models(tmp_path_factory: pytest.TempPathFactory):
    """Tiny models whose reasoner has been taught, by real gradient steps, to give :data:`TAUGHT_ANSWER`.

    Random tiny reasoners answer garbage; this one makes ``generate`` produce a parseable answer so
    tests can follow the whole path (parse -> frame mapping -> SAM2 -> mask) without faking output.
    """
    from segzero.tiny import make_tiny

    models = make_tiny(tmp_path_factory.mktemp("taught-models"), seed=1, frame=TAUGHT_FRAME)
    teach(models.reasoner, TAUGHT_ANSWER, TAUGHT_FRAME)
    return models


#: The tiny Qwen3-VL's frame: 4x4 image tokens of 32 px.
QWEN3_FRAME = 128
#: What the taught tiny Qwen3-VL answers, whatever it is asked: the ``concept`` form on the 0-1000 grid.
TAUGHT_QWEN3_ANSWER = (
    "<think>it is on the left</think><answer>{'bbox': [100,150,600,850], 'points_1': [300,400], "
    "'points_2': [400,600], 'label': 'red cup'}</answer>"
)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random Qwen3-VL reasoner and SAM 3 segmenter, built once by ``segzero make-tiny`` as a user
    would (frame :data:`QWEN3_FRAME`)."""
    from typer.testing import CliRunner

    from segzero.cli import app
    from segzero.tiny import TinyModels

    out = tmp_path_factory.mktemp("tiny-qwen3")
    args = ["make-tiny", str(out), "--reasoner-arch", "qwen3_vl", "--segmenter-arch", "sam3",
            "--frame", str(QWEN3_FRAME)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return TinyModels(out / "reasoner", out / "segmenter", QWEN3_FRAME)


@pytest.fixture(scope="session")
def taught_qwen3(tiny_qwen3, tmp_path_factory: pytest.TempPathFactory):
    """The tiny Qwen3-VL taught to give :data:`TAUGHT_QWEN3_ANSWER` (beside the tiny SAM 3)."""
    import shutil

    from segzero.tiny import TinyModels

    reasoner = tmp_path_factory.mktemp("taught-qwen3") / "reasoner"
    shutil.copytree(tiny_qwen3.reasoner, reasoner)
    teach(reasoner, TAUGHT_QWEN3_ANSWER, QWEN3_FRAME)
    return TinyModels(reasoner, tiny_qwen3.segmenter, QWEN3_FRAME)


class _NotServed:
    def run(self) -> None:
        pass


@pytest.fixture
def serve_calls(monkeypatch):
    """What ``segzero serve`` would serve, and how: the app and make_server's arguments; nothing listens."""
    from segzero.serve import server

    made = {}
    monkeypatch.setattr(server, "make_server", lambda app, **kw: made.update(app=app, **kw) or _NotServed())
    return made
