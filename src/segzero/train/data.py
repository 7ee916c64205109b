"""Prepared-dataset rows as TRL wants them, built lazily so no resized image is ever written to disk.

GRPO rows (``GRPOTrainer`` with a VLM):

* ``prompt``: the conversation of :func:`segzero.reasoner.build_messages` (one user turn, an image
  placeholder then the prompt text, worded for the reasoner's coordinate convention), the one way
  prompts are built at inference too;
* ``images``: ``[reasoner_image(image, frame)]``, the image as the reasoner sees it. TRL reads
  ``images`` before ``image`` and puts each image into the placeholder;
* ``reasoner_boxes`` / ``reasoner_points``: the ground truth of the accuracy rewards, on the answer grid;
* ``reasoner_frame``: the side of that grid, which the rewards read completions in (the view's side
  for a reasoner that answers in pixels, 1000 for one that answers on the relative grid);
* with the ``mask_iou`` reward only: ``image`` (the ORIGINAL image, the frame of the masks), ``mask_rle``
  and ``ignore_rle``.

SFT rows (``SFTTrainer``, prompt-completion form, so only the completion is learnt):

* ``prompt`` and ``images`` as above;
* ``completion``: one assistant turn, ``<answer>{solution}</answer>``: the ``solution`` column (the gt
  box and points as JSON in the reasoner frame) in the answer tags. There is no reasoning data, so the
  target has no ``<think>`` part; train SFT with the ``no_think`` prompt, which asks for exactly that.

Both are ``datasets.Dataset.with_transform`` views of the prepared dataset: images are decoded,
resized and wrapped per batch when the trainer reads them.
"""

from __future__ import annotations

from typing import Any

from segzero.defaults import REASONER_FRAME, RELATIVE_GRID
from segzero.errors import DatasetError
from segzero.frames import answer_grid
from segzero.prompts import PromptVariant, get_prompt
from segzero.reasoner import build_messages, reasoner_image
from segzero.train.config import SegZeroArguments

GT_COLUMNS = ("reasoner_boxes", "reasoner_points")
MASK_COLUMNS = ("mask_rle", "ignore_rle")


def load_rows(script: SegZeroArguments):
    """The prepared dataset named by ``script``: shuffled and cut to ``max_samples`` if asked, or drawn with
    ``no_target_share`` of target-free rows (:func:`mix_no_target`).

    Raises:
        DatasetError: not a prepared dataset, empty, mixing reasoner frames, or without the target-free
            (or target) rows ``no_target_share`` asks for.
    """
    from segzero.data.prepared import load_prepared

    data = load_prepared(script.dataset_path, script.dataset_split)
    if len(data) == 0:
        raise DatasetError(f"{script.dataset_path} has no rows to train on.")
    if script.no_target_share is not None:
        total = script.max_samples or len(data)
        return mix_no_target(data, script.no_target_share, total, script.subset_seed or 0, script.dataset_path)
    if script.subset_seed is not None:
        data = data.shuffle(seed=script.subset_seed)
    if script.max_samples is not None:
        data = data.select(range(min(script.max_samples, len(data))))
    return data


def mix_no_target(data, share: float, total: int, seed: int, name: str = "the dataset"):
    """``total`` rows of ``data``, ``round(share * total)`` of them target-free (no ``reasoner_boxes``: nothing
    matches the request), the rest with targets, in a shuffled order.

    Each pool is drawn from without repeats until it runs out, then again (a pool smaller than its share
    repeats rows); ``seed`` fixes the draw.

    Raises:
        DatasetError: ``share`` > 0 and the data has no target-free rows, or ``share`` < 1 and no target rows.
    """
    import numpy as np

    free = np.array([not boxes for boxes in data["reasoner_boxes"]], dtype=bool)
    pools = {"target-free": np.flatnonzero(free), "target": np.flatnonzero(~free)}
    n_free = round(share * total)
    wanted = {"target-free": n_free, "target": total - n_free}
    if share > 0 and not len(pools["target-free"]):
        raise DatasetError(
            f"no_target_share is {share:g} but {name} has no target-free rows (rows without boxes, where nothing "
            "matches the request); prepare data that has some, or leave no_target_share unset."
        )
    if share < 1 and not len(pools["target"]):
        raise DatasetError(
            f"no_target_share is {share:g} but every row of {name} is target-free; set it to 1 or add rows "
            "with targets."
        )
    rng = np.random.default_rng(seed)
    picked = []
    for kind, pool in pools.items():
        n = wanted[kind]
        if n:
            rounds = [rng.permutation(pool) for _ in range(-(-n // len(pool)))]
            picked.append(np.concatenate(rounds)[:n])
    order = rng.permutation(np.concatenate(picked)) if picked else np.array([], dtype=int)
    return data.select([int(i) for i in order])


def dataset_frame(data, requested: int | None, coordinates: str = "pixels") -> int:
    """The side of the square image the reasoner is shown in training, checked against the dataset.

    The dataset's prompts are on the grid its ``reasoner_frame`` column names. A reasoner that answers
    in pixels answers on its view, so the view is that grid; one that answers on the relative grid
    needs the prompts on it (``RELATIVE_GRID``) and may be shown any size (``requested``, else
    ``REASONER_FRAME``).

    Raises:
        DatasetError: rows in different frames, a ``requested`` frame that differs from the data's (pixels),
            or prompts that are not on the relative grid (relative).
    """
    frames = set(data.unique("reasoner_frame")) if "reasoner_frame" in data.column_names else set()
    if len(frames) > 1:
        raise DatasetError(
            f"The dataset mixes reasoner frames {sorted(frames)}; prepare it again with one --frame."
        )
    grid = int(frames.pop()) if frames else None
    if coordinates == "relative":
        if grid not in (None, RELATIVE_GRID):
            raise DatasetError(
                f"The reasoner answers on the 0-{RELATIVE_GRID} grid but the dataset's prompts are in frame {grid}; "
                "prepare the data with --coordinates relative."
            )
        return requested or REASONER_FRAME
    frame = grid if grid is not None else requested
    if frame is None:
        raise DatasetError("The dataset has no reasoner_frame column; set `frame` in the recipe.")
    if requested is not None and requested != frame:
        raise DatasetError(
            f"The recipe asks for frame {requested} but the dataset's prompts are in frame {frame}; "
            f"drop `frame` from the recipe or prepare the data with --frame {requested}."
        )
    return frame


def answer_target(solution: str) -> str:
    """The SFT completion text for a ``solution`` (the no-think answer form)."""
    return f"<answer>{solution}</answer>"


def grpo_dataset(
    data, prompt: str | PromptVariant, frame: int, *, coordinates: str = "pixels", with_masks: bool = False
):
    """A lazy GRPO view of prepared rows (see the module docstring for the columns); ``frame`` is the side of
    the view the reasoner is shown, ``coordinates`` its convention."""
    variant = get_prompt(prompt) if isinstance(prompt, str) else prompt
    missing = [c for c in (*GT_COLUMNS, *(MASK_COLUMNS[:1] if with_masks else ())) if c not in data.column_names]
    if missing:
        raise DatasetError(f"The dataset lacks the columns {', '.join(missing)}; write it with `segzero prepare`.")
    grid = answer_grid(frame, coordinates).width

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = {
            "prompt": [build_messages(r, variant, coordinates) for r in batch["request"]],
            "images": [[reasoner_image(img, frame)] for img in batch["image"]],
            "reasoner_boxes": batch["reasoner_boxes"],
            "reasoner_points": batch["reasoner_points"],
            "reasoner_frame": [grid] * len(batch["request"]),
        }
        if with_masks:
            out["image"] = [img.convert("RGB") for img in batch["image"]]
            out["mask_rle"] = batch["mask_rle"]
            out["ignore_rle"] = batch.get("ignore_rle") or [None] * len(batch["request"])
        return out

    return data.with_transform(transform)


def sft_dataset(data, prompt: str | PromptVariant, frame: int, coordinates: str = "pixels"):
    """A lazy SFT view of prepared rows: ``prompt``, ``completion`` and ``images``."""
    variant = get_prompt(prompt) if isinstance(prompt, str) else prompt

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            "prompt": [build_messages(r, variant, coordinates) for r in batch["request"]],
            "completion": [
                [{"role": "assistant", "content": [{"type": "text", "text": answer_target(s)}]}]
                for s in batch["solution"]
            ],
            "images": [[reasoner_image(img, frame)] for img in batch["image"]],
        }

    return data.with_transform(transform)


def prompt_lengths(
    processor, requests: list[str], prompt: str | PromptVariant, frame: int, coordinates: str = "pixels"
) -> list[int]:
    """Tokens of each request's full prompt (chat template, generation prompt and image tokens).

    The image is the same size for every row (``frame x frame``), so its token count is measured once
    and the text is tokenised without images.
    """
    from PIL import Image

    variant = get_prompt(prompt) if isinstance(prompt, str) else prompt
    tokenizer = getattr(processor, "tokenizer", processor)

    def text(request: str) -> str:
        return processor.apply_chat_template(
            build_messages(request, variant, coordinates), tokenize=False, add_generation_prompt=True
        )

    probe = text(requests[0])
    with_image = processor(
        text=[probe], images=[Image.new("RGB", (frame, frame))], return_tensors="np"
    )["input_ids"].shape[1]
    image_extra = with_image - len(tokenizer(probe, add_special_tokens=False)["input_ids"])
    ids = tokenizer([text(r) for r in requests], add_special_tokens=False)["input_ids"]
    return [len(x) + image_extra for x in ids]


def drop_long_prompts(data, processor, script: SegZeroArguments, frame: int, coordinates: str = "pixels"):
    """``data`` without the rows whose prompt exceeds ``script.max_prompt_length`` tokens (logged)."""
    if script.max_prompt_length is None:
        return data
    lengths = prompt_lengths(processor, data["request"], script.prompt, frame, coordinates)
    keep = [i for i, n in enumerate(lengths) if n <= script.max_prompt_length]
    if not keep:
        raise DatasetError(
            f"Every prompt is longer than max_prompt_length={script.max_prompt_length} tokens "
            f"(shortest {min(lengths)}); raise it."
        )
    if len(keep) < len(lengths):
        from transformers.utils import logging

        logging.get_logger("segzero.train").warning(
            "Dropped %d of %d rows whose prompt exceeds max_prompt_length=%d tokens.",
            len(lengths) - len(keep),
            len(lengths),
            script.max_prompt_length,
        )
        data = data.select(keep)
    return data
