"""Runaway completions: a reasoner that degenerates into whitespace or one phrase said over and over.

A small model, or a large one on an odd input, sometimes stops reasoning and writes newlines (or the same
few words) until its token budget is spent: the request then costs the whole ``max_new_tokens`` and gives
no answer. :func:`runaway_reason` recognises such an ending on plain text; the pipeline reports it as the
status ``runaway`` (:class:`segzero.answer.ParseStatus`), and ``--stop-runaway``
(:attr:`segzero.config.PipelineConfig.stop_runaway`) stops generation as soon as it is seen.
"""

from __future__ import annotations

from segzero.defaults import RUNAWAY_MAX_PERIOD, RUNAWAY_MIN_CHARS, RUNAWAY_MIN_REPEATS


def runaway_reason(
    text: str,
    *,
    min_chars: int = RUNAWAY_MIN_CHARS,
    min_repeats: int = RUNAWAY_MIN_REPEATS,
    max_period: int = RUNAWAY_MAX_PERIOD,
) -> str | None:
    """Why ``text`` ends in a runaway, in a few words, or None when it does not.

    It does when its last ``min_chars`` or more characters are whitespace, or when it ends in one unit of at
    most ``max_period`` characters repeated ``min_repeats`` times or more, covering ``min_chars`` or more.
    Only the ending counts: a repetition the text has left behind is not a runaway.
    """
    blank = len(text) - len(text.rstrip())
    if blank >= min_chars:
        return f"it ends in {blank} whitespace characters"
    n = len(text)
    for period in range(1, min(max_period, n // max(min_repeats, 1)) + 1):
        start = n - period  # walk back while each character equals the one a period later
        while start > 0 and text[start - 1] == text[start - 1 + period]:
            start -= 1
        covered = n - start
        if covered >= min_chars and covered // period >= min_repeats:
            unit = " ".join(text[n - period :].split()) or repr(text[n - period :])
            return f"it ends in {covered // period} repeats of {unit[:40]!r}"
    return None
