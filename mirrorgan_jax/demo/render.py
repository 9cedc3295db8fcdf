"""The web demo's results as HTML: stage images, labelled attention maps, redescriptions.

Pure functions of an `engine.Result` (no web framework), so the page's content is
tested without a browser. Images are inline PNGs (data URIs), shown at
`DISPLAY_PX` with nearest-neighbour scaling; user text is HTML-escaped. Elements
carry classes the browser test looks for: `mg-sample`, `mg-stage`, `mg-word-map`,
`mg-sentence-map`, `mg-redescription`, and `mg-diff` on the differing words.
"""

import base64
import collections
import html
import io
from typing import Sequence

import numpy as np
from PIL import Image

from mirrorgan_jax.demo import engine

DISPLAY_PX = 128  # Every image is shown this wide.
_MAP_PX = 64  # Attention maps are shown this wide.

STYLE = """
.mg-sample {border: 1px solid #ddd; border-radius: 6px; padding: 8px; margin: 8px 0;}
.mg-row {display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-end;}
.mg-cell {display: flex; flex-direction: column; align-items: center; font-size: 12px;}
.mg-cell img {image-rendering: pixelated; border: 1px solid #ccc;}
.mg-diff {background: #ffd54f; border-radius: 3px; padding: 0 2px;}
.mg-notice {color: #8a5300;}
.mg-error {color: #b00020; font-weight: bold;}
.mg-text {margin: 4px 0; font-size: 14px;}
"""


def png_data_uri(image: np.ndarray) -> str:
  """uint8 [H, W, 3] -> 'data:image/png;base64,...'."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def word_diff(caption: Sequence[str], redescription: Sequence[str]
              ) -> tuple[list[bool], list[bool]]:
  """Which words of a caption and of its redescription the other does not say.

  Order is ignored ('a white background with a red star' says the same words as
  'a red star against a white background' but 'against'): a word differs when the
  other text has no unmatched copy of it left (counted with multiplicity).
  Returns:
    (per caption word, per redescription word): True where the word differs.
  """
  def unmatched(words, other):
    left = collections.Counter(other)
    out = []
    for w in words:
      out.append(left[w] == 0)
      left[w] -= 1 if left[w] else 0
    return out
  return unmatched(caption, redescription), unmatched(redescription, caption)


def _marked(words: Sequence[str], differs: Sequence[bool]) -> str:
  return ' '.join(f'<span class="mg-diff">{html.escape(w)}</span>' if d else html.escape(w)
                  for w, d in zip(words, differs))


def _cell(image: np.ndarray, label: str, css_class: str, width: int) -> str:
  return (f'<div class="mg-cell"><img class="{css_class}" src="{png_data_uri(image)}" '
          f'width="{width}" height="{width}" alt="{html.escape(label)}">'
          f'<span>{html.escape(label)}</span></div>')


def _sample(index: int, sample: engine.Sample, words: Sequence[str]) -> str:
  parts = [f'<div class="mg-sample" id="mg-sample-{index}"><b>sample {index + 1}</b>']
  parts.append('<div class="mg-row">' + ''.join(
      _cell(s, f'stage {i + 1}: {s.shape[0]} px', 'mg-stage', DISPLAY_PX)
      for i, s in enumerate(sample.stages)) + '</div>')
  for r, att in enumerate(sample.attention):
    cells = [_cell(m, w, 'mg-word-map', _MAP_PX) for w, m in att.words]
    if att.sentence is not None:
      cells.append(_cell(att.sentence, 'sentence', 'mg-sentence-map', _MAP_PX))
    parts.append(f'<div class="mg-text">stage {r + 2} ({att.size} px): word attention'
                 + (' and sentence attention' if att.sentence is not None else '')
                 + f'</div><div class="mg-row">{"".join(cells)}</div>')
  said = sample.redescription.split()
  in_caption, in_redescription = word_diff(words, said)
  parts.append(
      '<div class="mg-text mg-redescription">'
      f'<div>caption: {_marked(words, in_caption)}</div>'
      f'<div>STREAM redescription: {_marked(said, in_redescription) or "(nothing)"}</div>'
      '</div></div>')
  return ''.join(parts)


def result_html(result: engine.Result) -> str:
  """The HTML of a request's result: notices, then one block per sample."""
  notices = ''.join(f'<div class="mg-notice">{html.escape(n)}</div>' for n in result.notices)
  samples = ''.join(_sample(j, s, result.caption.words) for j, s in enumerate(result.samples))
  timing = (f'<div class="mg-text">{len(result.samples)} sample(s) in '
            f'{result.seconds:.2f} s</div>')
  return f'<div id="mg-result">{notices}{timing}{samples}</div>'


def error_html(message: str) -> str:
  """An error shown in place of a result."""
  return f'<div id="mg-result"><div class="mg-error">{html.escape(message)}</div></div>'


def header_markdown(info: dict) -> str:
  """The page's header: what the demo is and which run it shows."""
  sizes = ' / '.join(f'{s}' for s in info['stage_sizes'])
  return (
      '# MirrorGAN: text to image, and back\n'
      'Type a caption and press **Generate**. For each sample: the image of every stage '
      f'({sizes} px), the word attention of each refinement stage (which pixels each '
      'word shaped) and its sentence attention, and what the frozen STREAM captioner '
      'says the final image shows, with the words that differ from your caption marked.'
      f'\n\nRun: `{info["workdir"]}` · config `{info["config"]}` · GAN step '
      f'**{info["step"]}** · GLAM `{info["glam"]}` · captions are read up to '
      f'{info["words_num"]} words.')
