"""Shared fixtures. Tests never reach the network: the hub is switched off for the whole session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("SEGZERO_CI_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or SEGZERO_CI_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):
    """Tiny random Qwen2.5-VL reasoner and SAM2 segmenter, built offline once and saved in HF format."""
    from segzero.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-models"))
