"""Corpus-level BLEU (Papineni et al., ACL 2002) on word or token-id sequences.

For n = 1..max_n, the clipped n-gram matches of every hypothesis (each n-gram
counted at most as often as in the reference where it occurs most) and its
n-gram count are summed over the corpus; p_n is their ratio. BLEU is the
geometric mean of the p_n (uniform weights) times the brevity penalty
BP = exp(1 - r / c) when c <= r, else 1, where c is the total hypothesis length
and r the sum of each hypothesis's closest reference length (ties go to the
shorter reference). Without smoothing a zero p_n makes BLEU 0.
"""

import collections
import math
from typing import Hashable, Sequence

Tokens = Sequence[Hashable]  # Words (str) or token ids (int).


def _ngrams(tokens: Tokens, n: int) -> collections.Counter:
  return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _closest_length(hyp_len: int, references: Sequence[Tokens]) -> int:
  return min((abs(len(r) - hyp_len), len(r)) for r in references)[1]


def corpus_bleu(hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]],
                max_n: int = 4, smooth: bool = False) -> float:
  """BLEU-`max_n` of a corpus (see the module docstring).

  Args:
    hypotheses: one token sequence per segment (may be empty).
    references: per segment, one or more reference token sequences.
    max_n: longest n-gram (4 = BLEU-4).
    smooth: add one to the matches and counts of n >= 2 (Lin and Och 2004),
      so a corpus without, e.g., a matching 4-gram does not score 0.
  Returns:
    BLEU in [0, 1].
  Raises:
    ValueError: empty corpus, mismatched lengths, a segment without
      references, or max_n < 1.
  """
  if max_n < 1:
    raise ValueError(f'max_n must be >= 1, got {max_n}')
  if not hypotheses:
    raise ValueError('corpus_bleu needs at least one hypothesis')
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} reference '
                     'sets; give one set of references per hypothesis')
  matches = [0] * max_n
  counts = [0] * max_n
  hyp_length = ref_length = 0
  for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
    if not refs:
      raise ValueError(f'hypothesis {i} has no reference')
    hyp = list(hyp)
    refs = [list(r) for r in refs]
    hyp_length += len(hyp)
    ref_length += _closest_length(len(hyp), refs)
    for n in range(1, max_n + 1):
      hyp_ngrams = _ngrams(hyp, n)
      most = collections.Counter()
      for ref in refs:
        most |= _ngrams(ref, n)  # Counter union keeps the max count of each n-gram.
      matches[n - 1] += sum(min(c, most[g]) for g, c in hyp_ngrams.items())
      counts[n - 1] += max(len(hyp) - n + 1, 0)
  if hyp_length == 0:
    return 0.0
  log_precision = 0.0
  for n, (match, count) in enumerate(zip(matches, counts), start=1):
    if smooth and n > 1:
      match, count = match + 1, count + 1
    if match == 0:
      return 0.0
    log_precision += math.log(match / count) / max_n
  brevity = min(0.0, 1.0 - ref_length / hyp_length)
  return math.exp(log_precision + brevity)
