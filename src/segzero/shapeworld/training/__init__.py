"""Training the ShapeWorld mini models on a CPU, from nothing: a SAM2 segmenter and a Qwen2.5-VL reasoner.

The models are the real architectures (``Sam2Model``, ``Qwen2_5_VLForConditionalGeneration``) at toy
size, built by :mod:`segzero.tiny` and trained on procedural ShapeWorld scenes; they are what
``segzero demo`` runs and what ships in the package (:mod:`segzero.shapeworld.shipped`). One module per
stage, in the order :func:`~segzero.shapeworld.training.run.train_all` runs them; each stage reads and
writes Hugging Face folders:

1. :mod:`.segmenter`: SAM2 learns masks from box and point prompts (the paper's SAM2 is pretrained;
   here it must first be made).
2. :mod:`.reasoner`: a random reasoner whose tokenizer knows the ShapeWorld words.
3. :mod:`.tower`: its vision tower learns what is where (the toy's pretrained ViT), then stays fixed.
4. :mod:`.sft` on :mod:`.examples`: the warm-up teaches the answer format on referring requests, its
   thinking listing every shape with its box; the knowledge stage then writes the reasoning of
   reasoning requests out (the toy's stand-in for a pretrained language model's world knowledge).
5. :mod:`.grpo`: GRPO on the Seg-Zero rewards through ``segzero train grpo``.

:mod:`.run` joins them (:class:`~segzero.shapeworld.training.run.ShapeWorldTrainConfig`, whose defaults
are the shipped models'), :mod:`.settings` reads that config from a file and ``--set key=value`` items,
and :mod:`.common` holds what the stages share. Probes that measure the models (listing accuracy,
choice outcomes, image dependence, reward scores) live in ``benchmarks/shapeworld_probes.py``.

Frames: scenes are ``size x size`` pixels (112); the reasoner answers in its own ``frame`` (recorded
in ``segzero.json`` beside it); SAM2 gets image-frame prompts, scaled into its ``image_size`` input.
"""

from segzero.shapeworld.training.run import ShapeWorldTrainConfig, train_all

__all__ = ["ShapeWorldTrainConfig", "train_all"]
