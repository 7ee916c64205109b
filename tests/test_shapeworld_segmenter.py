"""The mini SAM2's training stage (`segzero.shapeworld.training.segmenter`)."""

from __future__ import annotations

from segzero.shapeworld.shipped import SHIPPED_MODELS


def test_segmenter_prompt_and_image_positional_bases_are_tied(tmp_path):
    import torch
    from transformers import Sam2Model

    from segzero.shapeworld.training.segmenter import tie_positional_encodings
    from segzero.tiny import build_segmenter

    model = Sam2Model.from_pretrained(build_segmenter(tmp_path / "seg"))
    image, prompt = model.shared_image_embedding, model.prompt_encoder.shared_embedding
    assert not torch.equal(image.positional_embedding, prompt.positional_embedding)  # random init: apart
    tie_positional_encodings(model)
    assert torch.equal(image.positional_embedding, prompt.positional_embedding)
    shipped = Sam2Model.from_pretrained(SHIPPED_MODELS / "segmenter")
    assert torch.equal(
        shipped.shared_image_embedding.positional_embedding,
        shipped.prompt_encoder.shared_embedding.positional_embedding,
    )
