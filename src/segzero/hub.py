"""Loading Hugging Face models by hub id or local folder, with one clear sentence when it fails;
the ``segzero.json`` note saved beside a trained reasoner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from segzero.defaults import REASONER_FRAME
from segzero.errors import ModelLoadError

T = TypeVar("T")

#: File beside a reasoner folder that says how to run it (written by ``segzero train``).
MODEL_META = "segzero.json"


def looks_like_path(name: str) -> bool:
    """A hub id is ``owner/name``; anything that starts like a path or exists on disk is a folder."""
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


def load_pretrained(loader: Callable[..., T], name: str, what: str, **kwargs) -> T:
    """Call ``loader(name, **kwargs)`` (a ``from_pretrained``), turning failures into :class:`ModelLoadError`.

    Args:
        loader: e.g. ``AutoProcessor.from_pretrained``.
        name: hub id or local folder.
        what: how to call the model in the message, e.g. ``"reasoner"``.
    """
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"The {what} folder {name} does not exist; pass a folder saved with save_pretrained.")
        name = str(path)
    try:
        return loader(name, **kwargs)
    except OSError as exc:
        text = str(exc)
        if looks_like_path(name):
            raise ModelLoadError(
                f"The {what} folder {name} is not a complete Hugging Face model ({text.splitlines()[0]})."
            ) from None
        raise ModelLoadError(
            f"Could not load the {what} {name!r}: the model hub is unreachable or the id is wrong, and no local "
            f"copy is cached; download it where there is network (`hf download {name} --local-dir DIR`) "
            f"and pass the folder instead (--{what} DIR)."
        ) from None


def pick_device(device: str | None = None) -> str:
    """``cuda`` when available, else ``cpu``, unless the caller chose."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str | None = None):
    """bf16 on CUDA devices that support it, float32 elsewhere, unless the caller chose (``"bfloat16"`` etc.)."""
    import torch

    if dtype:
        try:
            return getattr(torch, dtype) if isinstance(dtype, str) else dtype
        except AttributeError:
            raise ModelLoadError(f"Unknown dtype {dtype!r}; use bfloat16, float16 or float32.") from None
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def pick_attention(device: str) -> str:
    """flash-attention 2 on CUDA when the package is installed, PyTorch's sdpa otherwise."""
    if device.startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def read_model_meta(reasoner: str | os.PathLike[str]) -> dict[str, Any]:
    """What the ``segzero.json`` beside a local reasoner folder says about running the model.

    Args:
        reasoner: a reasoner folder or a hub id. A hub id is not looked up (no network): its
            settings are unknown.

    Returns:
        The file's keys, always with ``reasoner_frame`` (side of the reasoner frame in pixels) and
        ``prompt`` (the prompt variant the model was trained with, a :data:`segzero.prompts.PROMPTS`
        name), each None when unknown: a hub id, a folder without the file, a file without the key.
        Training also records ``method`` and ``base_model``.

    Raises:
        ModelLoadError: the file exists but is not a JSON object, its frame is not a positive
            integer, or its prompt is not a variant this version knows.
    """
    from segzero.prompts import PROMPTS

    path = Path(reasoner).expanduser() / MODEL_META
    if not path.is_file():
        return {"reasoner_frame": None, "prompt": None}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON ({exc}); fix or delete it.") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path} must hold a JSON object; fix or delete it.")
    frame, prompt = meta.get("reasoner_frame"), meta.get("prompt")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 1):
        raise ModelLoadError(
            f"{path} gives reasoner_frame {frame!r}; it must be a positive integer (e.g. {REASONER_FRAME})."
        )
    if prompt is not None and prompt not in PROMPTS:
        raise ModelLoadError(
            f"{path} names the prompt {prompt!r}, which this segzero does not know; "
            f"set it to one of {', '.join(PROMPTS)}."
        )
    return {**meta, "reasoner_frame": frame, "prompt": prompt}


def write_model_meta(folder: str | os.PathLike[str], *, frame: int, prompt: str, **extra: Any) -> Path:
    """Write ``segzero.json`` (``reasoner_frame``, ``prompt`` and ``extra``) into a reasoner folder.

    :func:`read_model_meta` reads it back, and so :meth:`segzero.pipeline.ReasoningSegmenter.from_pretrained`
    runs the model in that frame with that prompt unless told otherwise. Returns the file's path.
    """
    path = Path(folder) / MODEL_META
    meta = {"reasoner_frame": int(frame), "prompt": prompt, **extra}
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path
