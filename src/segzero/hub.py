"""Loading Hugging Face models by hub id or local folder, with one clear sentence when it fails;
the ``segzero.json`` note saved beside a trained reasoner."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from segzero.defaults import COORDINATES, HUB_CHECK_TIMEOUT_S, REASONER_FRAME
from segzero.errors import ModelLoadError

T = TypeVar("T")

#: File beside a reasoner folder that says how to run it (written by ``segzero train``).
MODEL_META = "segzero.json"


def looks_like_path(name: str) -> bool:
    """A hub id is ``owner/name``; anything that starts like a path or exists on disk is a folder."""
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


@functools.lru_cache(maxsize=4)
def _answers(endpoint: str, timeout: float) -> bool:
    """Whether ``endpoint`` answers an HTTP request within ``timeout`` seconds (any status counts).

    The request goes through the hub library's own HTTP session (its proxies and certificates), in a
    thread, so that even a name lookup that hangs cannot hold the caller longer than ``timeout``.
    """
    answered: list[bool] = []

    def probe() -> None:
        from huggingface_hub.utils import get_session

        try:
            get_session().head(endpoint, timeout=timeout, follow_redirects=False)
            answered.append(True)
        except Exception:  # noqa: BLE001 - whatever the transport says, the hub cannot be used
            answered.append(False)

    thread = threading.Thread(target=probe, name="segzero-hub-check", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(answered and answered[0])


def hub_offline(timeout: float = HUB_CHECK_TIMEOUT_S) -> str | None:
    """Why the model hub cannot be used from here, or None when it answers.

    ``HF_HUB_OFFLINE`` set says so at once; otherwise one request to the hub's endpoint (``HF_ENDPOINT``)
    must answer within ``timeout`` seconds. Checked once per process: without it, every file the hub
    library looks up is retried for minutes before it gives up.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if not _answers(constants.ENDPOINT, timeout):
        return f"the model hub ({constants.ENDPOINT}) does not answer from this machine"
    return None


def check_hub_id(name: str, what: str, revision: str | None = None) -> None:
    """Make sure the hub id ``name`` can be loaded without waiting on a hub that does not answer.

    When the hub does not answer (:func:`hub_offline`), the hub library is switched to its offline mode
    for this process (what ``HF_HUB_OFFLINE=1`` does), so a model in the local cache loads at once
    instead of after minutes of retries on every file it looks up.

    Raises:
        ModelLoadError: the hub does not answer and ``name`` is not in the local cache; the sentence says
            how to pass a folder instead.
    """
    why = hub_offline()
    if why is None:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    constants.HF_HUB_OFFLINE = True
    if not isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        raise ModelLoadError(
            f"Cannot load the {what} {name!r}: {why}, and no copy of it is in the local cache; download it "
            f"where there is network (`hf download {name} --local-dir DIR`) and pass the folder instead "
            f"(--{what} DIR)."
        )


def check_hub_ids(**models: str) -> None:
    """Fail at once when any of ``models`` (``what=name``, e.g. ``reasoner="owner/id"``) is a hub id that
    cannot be loaded because the hub does not answer and it is not cached (:func:`check_hub_id`), before
    any model is read: a second model that cannot load must not wait for the first to finish loading."""
    for what, name in models.items():
        if not looks_like_path(name):
            check_hub_id(name, what)


def load_pretrained(loader: Callable[..., T], name: str, what: str, **kwargs) -> T:
    """Call ``loader(name, **kwargs)`` (a ``from_pretrained``), turning failures into :class:`ModelLoadError`.

    A hub id is checked first (:func:`check_hub_id`), so that no network fails in seconds, not after the
    hub library's minutes of retries.

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
    else:
        check_hub_id(name, what, kwargs.get("revision"))
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


def load_model_type(name: str, what: str, **kwargs) -> str:
    """The ``model_type`` of a model's config, read through ``AutoConfig`` as ``from_pretrained`` reads it.

    Args:
        name: hub id or local folder.
        what: how to call the model in the message, e.g. ``"reasoner"``.
        kwargs: passed to ``AutoConfig.from_pretrained`` (``revision``, ``trust_remote_code``).

    Raises:
        ModelLoadError: no such folder, the hub cannot serve the id, or no readable config.
    """
    if not looks_like_path(name):
        check_hub_id(name, what, kwargs.get("revision"))  # no hub: fail before transformers and torch import
    from transformers import AutoConfig

    try:
        return load_pretrained(AutoConfig.from_pretrained, name, what, **kwargs).model_type
    except ValueError as exc:  # no config.json, or a model_type this transformers does not know
        model_type = read_model_type(name)
        if model_type is None:
            raise ModelLoadError(
                f"The {what} {name} is not a complete Hugging Face model ({str(exc).splitlines()[0]})."
            ) from None
        return model_type


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
        The file's keys, always with ``reasoner_frame`` (side in pixels of the square image the model
        is shown), ``prompt`` (the prompt variant the model was trained with, a
        :data:`segzero.prompts.PROMPTS` name) and ``coordinates`` (its coordinate convention, one of
        :data:`segzero.defaults.COORDINATES`), each None when unknown: a hub id, a folder without the
        file, a file without the key. Training also records ``method`` and ``base_model``.

    Raises:
        ModelLoadError: the file exists but is not a JSON object, its frame is not a positive
            integer, or its prompt or convention is not one this version knows.
    """
    from segzero.prompts import PROMPTS

    path = Path(reasoner).expanduser() / MODEL_META
    if not path.is_file():
        return {"reasoner_frame": None, "prompt": None, "coordinates": None}
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
    coordinates = meta.get("coordinates")
    if coordinates is not None and coordinates not in COORDINATES:
        raise ModelLoadError(
            f"{path} gives coordinates {coordinates!r}; set it to one of {', '.join(COORDINATES)} or delete the key."
        )
    return {**meta, "reasoner_frame": frame, "prompt": prompt, "coordinates": coordinates}


def read_model_type(name: str | os.PathLike[str]) -> str | None:
    """The ``model_type`` in a model's ``config.json``, read without loading the model.

    A folder's own file is read; for a hub id, the file in the local Hugging Face cache (fetched first
    when the hub answers, as ``from_pretrained`` would; see :func:`hub_offline`). None when there is no
    readable file.
    """
    name = str(name)
    if looks_like_path(name):
        path: str | Path | None = Path(name).expanduser() / "config.json"
    elif hub_offline() is not None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        path = cached if isinstance(cached, str) else None
    else:
        from transformers.utils import cached_file

        try:
            path = cached_file(
                name,
                "config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):
            path = None
    if path is None or not Path(path).is_file():
        return None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None


def write_model_meta(folder: str | os.PathLike[str], *, frame: int, prompt: str, **extra: Any) -> Path:
    """Write ``segzero.json`` (``reasoner_frame``, ``prompt`` and ``extra``, e.g. ``coordinates``) into a
    reasoner folder.

    :func:`read_model_meta` reads it back, and so :meth:`segzero.pipeline.ReasoningSegmenter.from_pretrained`
    runs the model in that frame with that prompt unless told otherwise. Returns the file's path.
    """
    path = Path(folder) / MODEL_META
    meta = {"reasoner_frame": int(frame), "prompt": prompt, **extra}
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path
