"""Loading Hugging Face models by hub id or local folder, with one clear sentence when it fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from segzero.errors import ModelLoadError

T = TypeVar("T")


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
