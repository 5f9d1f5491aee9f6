"""Text metrics for evaluation: BLEU, token edit distance and exact match on formula strings.

Every metric works on whitespace-separated LaTeX tokens (the normalized formula strings that
``Vocab.decode`` produces), never on characters, so that the numbers compare with im2markup and
Singh 2018, who score token sequences. BLEU is sacrebleu's, so it matches the reference
implementation rather than a home-grown one; ``tokenize='none'`` because the strings are already
tokenized and any further splitting would change what an n-gram is.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU

# Built once: the objects hold only settings. max_ngram_order 4 is BLEU-4.
_BLEU_SMOOTH = BLEU(tokenize="none", smooth_method="exp", max_ngram_order=4)
_BLEU_PLAIN = BLEU(tokenize="none", smooth_method="none", max_ngram_order=4)
# sacrebleu's own sentence_bleu uses effective order, so a short exact match scores 1, not less.
_BLEU_SENTENCE = BLEU(tokenize="none", smooth_method="exp", max_ngram_order=4, effective_order=True)


def _normalize(text: str) -> str:
    """Collapse runs of whitespace so that BLEU and edit distance see the same tokens."""
    return " ".join(text.split())


def corpus_bleu(references: list[str], hypotheses: list[str], smooth: bool) -> float:
    """Corpus BLEU-4 in [0, 1].

    ``smooth=True`` uses sacrebleu's default ``smooth_method='exp'`` (a zero n-gram precision no
    longer zeroes the score, so short or poor corpora still rank); ``smooth=False`` uses
    ``smooth_method='none'``, the plain BLEU that Singh 2018 reports.
    """
    _check_pairs(references, hypotheses)
    metric = _BLEU_SMOOTH if smooth else _BLEU_PLAIN
    refs = [_normalize(r) for r in references]
    hyps = [_normalize(h) for h in hypotheses]
    return metric.corpus_score(hyps, [refs]).score / 100.0


def sentence_bleu(reference: str, hypothesis: str) -> float:
    """One pair's BLEU-4 in [0, 1], smoothed with 'exp' and with sacrebleu's effective order."""
    score = _BLEU_SENTENCE.sentence_score(_normalize(hypothesis), [_normalize(reference)])
    return score.score / 100.0


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Token-level Levenshtein distance (unit cost insert, delete, substitute).

    Myers' bit-parallel algorithm (Hyyrö's form for global distance) with Python integers as
    bit vectors: one pass over ``b`` with a handful of integer operations per token, whatever
    the length of ``a``. A plain DP costs len(a) * len(b) Python steps, about 40x slower on
    150-token formulas; the shared prefix and suffix, long for good predictions, are cut first.
    """
    start, end_a, end_b = 0, len(a), len(b)
    while start < end_a and start < end_b and a[start] == b[start]:
        start += 1
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a  # the shorter sequence walks the loop; the longer one is the bit vector
    if not b:
        return len(a)
    return _myers(a, b)


def _myers(pattern: Sequence[str], text: Sequence[str]) -> int:
    """Bit-parallel edit distance; column i of the DP matrix lives in bit i of the vectors."""
    m = len(pattern)
    peq: dict[str, int] = {}
    for i, token in enumerate(pattern):
        peq[token] = peq.get(token, 0) | (1 << i)
    mask, high = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for token in text:
        eq = peq.get(token, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & mask) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score


def normalized_edit_distance(reference: str, hypothesis: str) -> float:
    """Edit distance divided by the reference's token count (Singh 2018 normalizes by target).

    ``max(1, ...)`` only guards an empty reference; with it an empty reference and an empty
    prediction score 0. The value can exceed 1 when the prediction is much longer.
    """
    ref, hyp = reference.split(), hypothesis.split()
    return edit_distance(ref, hyp) / max(1, len(ref))


def exact_match(reference: str, hypothesis: str) -> bool:
    """Same token sequence; whitespace differences do not count."""
    return reference.split() == hypothesis.split()


def score_corpus(references: list[str], hypotheses: list[str]) -> dict:
    """All evaluation numbers at once, in the form the evaluation report stores.

    An empty hypothesis is a valid prediction (the model emitted ``</s>`` at once): it scores
    BLEU 0 and normalized edit distance 1.0 for its sample and is never dropped.
    """
    _check_pairs(references, hypotheses)
    if not references:
        raise ValueError("score_corpus: no samples to score")
    n = len(references)
    distances = [
        normalized_edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True)
    ]
    matches = sum(exact_match(r, h) for r, h in zip(references, hypotheses, strict=True))
    return {
        "bleu": corpus_bleu(references, hypotheses, smooth=True),
        "bleu_unsmoothed": corpus_bleu(references, hypotheses, smooth=False),
        "edit_distance": sum(distances) / n,
        "exact_match": matches / n,
        "samples": n,
    }


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses: they must pair up"
        )
