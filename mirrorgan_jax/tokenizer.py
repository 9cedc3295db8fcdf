"""The caption tokenizer of the reference code (TensorFlow-free).

Reference (AttnGAN/MirrorGAN `datasets.py`): the two-character sequence
U+FFFD U+FFFD becomes a space, the line is lower-cased, tokens are the runs of
word characters (`\\w+`), and each token loses its non-ASCII characters (tokens
left empty are dropped). `tokenize` does this in Python (vocabulary building,
user text); `data.preprocessing.tf_tokenize` does the same inside tf.data. Tests
check that the two agree, including on non-ASCII text.

User text (`user_tokens`) is first folded to what the datasets' captions are
made of: Unicode NFKC, then accents removed ('héart' -> 'heart', where the
reference rule alone would give 'hart'). Words are kept as typed for messages,
and characters that cannot be folded to ASCII (emoji, CJK) are reported, not
silently lost.
"""

import dataclasses
import re
import unicodedata

_WORD = re.compile(r'\w+')
_NON_ASCII = re.compile(r'[^\x00-\x7f]')


def tokenize(text: str) -> list[str]:
  """Splits a caption into lower-case ASCII word tokens, as the reference does."""
  text = text.replace('\ufffd\ufffd', ' ').lower()
  tokens = (_NON_ASCII.sub('', token) for token in _WORD.findall(text))
  return [token for token in tokens if token]


@dataclasses.dataclass(frozen=True)
class UserTokens:
  """Tokens of user text.

  Attributes:
    tokens: the model's tokens (folded, lower-case ASCII).
    typed: each token's word as the user typed it (same length as `tokens`).
    unreadable: characters left out because they have no ASCII form, in order
      of first appearance.
  """
  tokens: list[str]
  typed: list[str]
  unreadable: list[str]


def _fold(text: str) -> str:
  """Accents removed: NFKD, then combining marks dropped."""
  return ''.join(c for c in unicodedata.normalize('NFKD', text)
                 if not unicodedata.combining(c))


def user_tokens(text: str) -> UserTokens:
  """Tokenizes user text like the dataset captions (see the module docstring)."""
  text = unicodedata.normalize('NFKC', text.replace('\ufffd\ufffd', ' '))
  tokens, typed = [], []
  for match in _WORD.finditer(text):
    token = _NON_ASCII.sub('', _fold(match.group()).lower())
    if token:
      tokens.append(token)
      typed.append(match.group())
  # Letters, digits and symbols without an ASCII form (punctuation is dropped anyway).
  unreadable = [c for c in _fold(text)
                if not c.isascii() and unicodedata.category(c)[0] in 'LNS']
  return UserTokens(tokens, typed, list(dict.fromkeys(unreadable)))

