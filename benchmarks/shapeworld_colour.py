"""Does the ShapeWorld reasoner see colour and kind? Two readouts per reasoner folder, on validation scenes.

* **Listing**: greedy answers to referring requests; each shape the thinking lists is matched to a
  scene shape by box (IoU >= 0.5) and its size, colour and kind words are checked
  (:func:`shapeworld_probes.listing_accuracy`). Chance for colour is 1/6.
* **Vision tower**: a linear probe (softmax regression, fit on three quarters of the shapes, scored
  on the rest) reads each shape's colour from the vision tower's output token that holds the shape's
  centre. It shows whether colour survives the tower, whatever the language model makes of it. A
  second probe reads each shape's kind (7 classes, chance 1/7) from the mean of the output tokens
  its box covers.

    python benchmarks/shapeworld_colour.py src/segzero/shapeworld/models/reasoner-warmup OUT/reasoner-init

(``OUT/reasoner-init``: the random reasoner ``segzero shapeworld train-models --out OUT`` starts from.)
What it gave is in docs/shapeworld-log.md.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def shape_tokens(reasoner, samples) -> dict[str, np.ndarray]:
    """Per scene shape over samples: ``centre`` (the vision-tower output token at its centre), ``box``
    (the mean of the output tokens its box covers), and its ``colour`` and ``kind`` indices."""
    import torch

    from segzero.reasoner import reasoner_image
    from segzero.shapeworld.training.examples import shape_labels
    from segzero.shapeworld.training.reasoner import tower_token_px

    merged = tower_token_px(reasoner.model)
    grid = reasoner.frame // merged
    found: dict[str, list] = {"centre": [], "box": [], "colour": [], "kind": []}
    for sample in samples:
        inputs = reasoner.processor.image_processor(
            images=[reasoner_image(sample.image, reasoner.frame)], return_tensors="pt"
        )
        with torch.inference_mode():
            out = reasoner.model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
        tokens = getattr(out, "pooler_output", out).reshape(grid, grid, -1)  # row-major token grid
        for (rows, cols), attributes in shape_labels(sample, reasoner.frame, merged):
            found["centre"].append(tokens[rows[1], cols[1]].float().numpy())
            covered = tokens[rows[0] : rows[2] + 1, cols[0] : cols[2] + 1]
            found["box"].append(covered.float().mean(dim=(0, 1)).numpy())
            found["colour"].append(attributes["colour"])
            found["kind"].append(attributes["kind"])
    return {k: np.array(v) for k, v in found.items()}


def linear_probe(features: np.ndarray, labels: np.ndarray, fit_share: float = 0.75, seed: int = 0) -> float:
    """Held-out accuracy of softmax regression (L2 1e-3, Adam, 500 full-batch steps) on standardised features."""
    import torch

    n = int(len(labels) * fit_share)
    x = torch.tensor(features)
    x = (x - x[:n].mean(0)) / (x[:n].std(0) + 1e-6)
    y = torch.tensor(labels)
    torch.manual_seed(seed)
    classes = int(labels.max()) + 1
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(500):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[:n] @ weight + bias, y[:n]) + 1e-3 * weight.square().sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(((x[n:] @ weight + bias).argmax(1) == y[n:]).float().mean())


def main() -> None:
    from shapeworld_probes import generate_answers, listing_accuracy

    from segzero.hub import read_model_meta
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reasoners", nargs="+", help="reasoner folders (with segzero.json)")
    parser.add_argument("--n-listing", type=int, default=64, help="validation scenes for the listing readout")
    parser.add_argument("--n-probe", type=int, default=240, help="validation scenes for the probe")
    args = parser.parse_args()

    listing_samples = list(make_split("val", args.n_listing, "referring"))
    probe_samples = list(make_split("val", args.n_probe, "referring"))
    for folder in args.reasoners:
        frame = read_model_meta(folder)["reasoner_frame"]
        reasoner = Reasoner.from_pretrained(folder, device="cpu", dtype="float32", frame=frame)
        listing = listing_accuracy(
            generate_answers(reasoner, listing_samples), listing_samples, reasoner.frame
        )
        shapes = shape_tokens(reasoner, probe_samples)
        probes = {
            "vision_colour_probe": linear_probe(shapes["centre"], shapes["colour"]),
            "vision_kind_probe": linear_probe(shapes["box"], shapes["kind"]),
        }
        print(json.dumps({"reasoner": folder, "listing": listing, **probes}), flush=True)


if __name__ == "__main__":
    main()
