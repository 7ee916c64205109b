"""The whole path with real (tiny) models loaded through from_pretrained."""

import math

import numpy as np
import pytest
from PIL import Image

from segzero.answer import ParseStatus
from segzero.errors import InputError, ModelLoadError
from segzero.pipeline import ReasoningSegmenter
from segzero.segmenter import Segmenter
from tests.conftest import TAUGHT_FRAME


@pytest.fixture(scope="module")
def taught(taught_models):
    return ReasoningSegmenter.from_pretrained(
        str(taught_models.reasoner), str(taught_models.segmenter), device="cpu", frame=TAUGHT_FRAME,
        max_new_tokens=64, batch_size=4,
    )


@pytest.fixture(scope="module")
def random_pipe(tiny_models):
    return ReasoningSegmenter.from_pretrained(
        str(tiny_models.reasoner), str(tiny_models.segmenter), device="cpu", frame=tiny_models.frame, max_new_tokens=8
    )


def _photo(w=200, h=130, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def _round(v):
    return math.floor(v + 0.5)


def test_segment_maps_the_answer_to_the_image_and_masks_it(taught, tmp_path):
    path = tmp_path / "photo.png"
    _photo().save(path)
    result = taught.segment(path, "The cup.")
    assert result.status is ParseStatus.OK, result.completion
    assert result.thinking == "it is on the left"
    # TAUGHT_ANSWER bbox [20,30,90,100], points [40,50], [60,70] in the 112 frame -> 200x130 image.
    sx, sy = 200 / TAUGHT_FRAME, 130 / TAUGHT_FRAME
    assert result.objects[0].box == (_round(20 * sx), _round(30 * sy), _round(90 * sx), _round(100 * sy))
    assert result.objects[0].points == ((_round(40 * sx), _round(50 * sy)), (_round(60 * sx), _round(70 * sy)))
    assert result.mask.shape == (130, 200) and result.mask.dtype == bool
    expected = taught.segmenter.segment_many([_photo()], [result.objects])[0]
    assert np.array_equal(result.mask, expected.mask)
    assert set(result.timings) == {"load", "reason", "segment", "total"}


def test_batch_is_one_generate_per_chunk_and_one_encoding_per_image(taught, monkeypatch):
    gen_batches, encoded = [], []
    model, sam = taught.reasoner.model, taught.segmenter.model
    generate, embed = model.generate, sam.get_image_embeddings
    monkeypatch.setattr(model, "generate", lambda **kw: (gen_batches.append(kw["input_ids"].shape[0]), generate(**kw))[1])
    monkeypatch.setattr(sam, "get_image_embeddings", lambda px, **kw: (encoded.append(px.shape[0]), embed(px, **kw))[1])
    a, b = _photo(seed=1), _photo(90, 60, seed=2)
    results = taught.segment_batch([a, b, a, a, b], ["cup", "dog", "knife", "bread", "the plate"])
    assert gen_batches == [4, 1]  # batch_size 4
    assert sum(encoded) == 2  # two distinct images
    assert [r.mask.shape for r in results] == [(130, 200), (60, 90), (130, 200), (130, 200), (60, 90)]
    assert all(r.status is ParseStatus.OK for r in results)


def test_batched_and_single_results_agree(taught):
    img = _photo(seed=4)
    single = taught.segment(img, "cup")
    batched = taught.segment_batch([img, _photo(seed=5)], ["cup", "dog"])[0]
    assert single.completion == batched.completion
    assert np.array_equal(single.mask, batched.mask)


def test_unparseable_answers_give_an_empty_mask_and_the_batch_goes_on(random_pipe):
    results = random_pipe.segment_batch([_photo(), _photo(50, 40)], ["cup", "dog"])
    for r, shape in zip(results, [(130, 200), (40, 50)]):
        assert r.mask.shape == shape
        if not r.answer.ok:
            assert not r.mask.any() and r.reason and r.score is None


def test_result_json_round_trips_the_mask(taught):
    from segzero.masks import decode_rle

    result = taught.segment(_photo(), "cup")
    data = result.to_json()
    assert np.array_equal(decode_rle(data["mask_rle"]), result.mask)
    assert data["status"] == "ok" and data["objects"][0]["box"] == list(result.objects[0].box)


def test_bad_inputs_fail_before_the_models_run(taught, tmp_path):
    with pytest.raises(InputError, match="empty"):
        taught.segment(_photo(), "   ")
    with pytest.raises(InputError, match="Image not found"):
        taught.segment(tmp_path / "missing.jpg", "cup")
    with pytest.raises(ValueError, match="2 images for 1 requests"):
        taught.segment_batch([_photo(), _photo()], ["cup"])


def test_unreachable_hub_and_missing_folder_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set, and no copy.*--segmenter DIR"):
        Segmenter.from_pretrained("facebook/sam2.1-hiera-large", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Segmenter.from_pretrained(str(tmp_path / "nowhere"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a complete Hugging Face model"):
        Segmenter.from_pretrained(str(tmp_path / "empty"), device="cpu")
