"""Dataset readers and the one record format every reader, trainer and evaluator shares.

- :class:`Sample` (``records``): one example in the image frame.
- Readers yielding Samples: :func:`read_refer` (RefCOCO/+/g), :func:`read_grefcoco`, :func:`read_reasonseg`,
  :func:`read_reference_hf` (the Seg-Zero reference's HF format), :func:`read_prepared`;
  :func:`iter_samples` dispatches to them by name.
- ``prepared``: the on-disk dataset (``sample_to_row``, ``row_to_sample``, ``save_prepared``,
  ``load_prepared``).
- ``filter``: the segmenter-agreement filter for training data.
- :class:`SkipLog`: malformed records are reported there with their ids, never dropped silently.
"""

from segzero.data.common import SkipLog
from segzero.data.grefcoco import read_grefcoco
from segzero.data.prepared import load_prepared, read_prepared, row_to_sample, sample_to_row, save_prepared
from segzero.data.reasonseg import read_reasonseg
from segzero.data.records import NO_TARGET_KEY, Sample
from segzero.data.refer import read_refer
from segzero.data.reference_hf import read_reference_hf
from segzero.data.sources import SOURCE_KINDS, iter_samples
from segzero.defaults import IGNORE

__all__ = [
    "IGNORE",
    "NO_TARGET_KEY",
    "SOURCE_KINDS",
    "Sample",
    "SkipLog",
    "iter_samples",
    "load_prepared",
    "read_grefcoco",
    "read_prepared",
    "read_reasonseg",
    "read_reference_hf",
    "read_refer",
    "row_to_sample",
    "sample_to_row",
    "save_prepared",
]
