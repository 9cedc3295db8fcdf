"""The web demo's page (Gradio Blocks): a caption in, samples, attention and redescriptions out.

`build(engine, examples)` returns the Blocks app: a caption box with clickable
example captions, the number of samples (1 to `engine.max_samples`), the seed, a
"drop unknown words" box and a Generate button; the answer is one HTML block
(`render.result_html`) or an error in its place (`render.error_html`). Requests run
one at a time (the model uses every core), in the one compiled program of
`engine.Engine`.
"""

from typing import Sequence

from absl import logging
import gradio as gr

from mirrorgan_jax.demo import engine as engine_lib
from mirrorgan_jax.demo import render
from mirrorgan_jax.infra import ports


def answer(engine: engine_lib.Engine, text: str, num_samples: float, seed: float,
           drop_unknown: bool) -> str:
  """The HTML answer to one request; bad input gives an error block, not an exception."""
  try:
    result = engine.generate(text or '', int(num_samples), int(seed), bool(drop_unknown))
  except engine_lib.CaptionProblem as e:
    return render.error_html(str(e))
  logging.info('Generated %d sample(s) of %r in %.2f s.', len(result.samples), text,
               result.seconds)
  return render.result_html(result)


def build(engine: engine_lib.Engine, examples: Sequence[str]) -> gr.Blocks:
  """The demo page for `engine`, with `examples` as clickable captions."""
  with gr.Blocks(title='MirrorGAN demo', analytics_enabled=False) as page:
    gr.Markdown(render.header_markdown(engine.info))
    with gr.Row():
      caption = gr.Textbox(label='Caption', elem_id='mg-caption', scale=4,
                           placeholder='a small red star on the left')
      generate = gr.Button('Generate', variant='primary', elem_id='mg-generate', scale=1)
    with gr.Row():
      num_samples = gr.Slider(1, engine.max_samples, value=4, step=1,
                              label='Samples', elem_id='mg-num-samples')
      seed = gr.Number(value=0, precision=0, minimum=0, label='Seed', elem_id='mg-seed')
      drop_unknown = gr.Checkbox(label='Drop unknown words', elem_id='mg-drop-unknown')
    if examples:
      gr.Examples(examples=[[e] for e in examples], inputs=[caption],
                  label='Captions from the test set (click one)')
    output = gr.HTML(elem_id='mg-output')
    inputs = [caption, num_samples, seed, drop_unknown]
    run = lambda *args: answer(engine, *args)
    generate.click(run, inputs, output, concurrency_limit=1)
    caption.submit(run, inputs, output, concurrency_limit=1)
  return page


def launch(page: gr.Blocks, host: str, port: int) -> str:
  """Serves `page` on host:port (0: a free port) in a background thread; returns its URL.

  Nothing leaves the machine: no share link, no usage analytics, system fonts
  (the default theme would fetch Google Fonts). `page.block_thread()` then serves
  until interrupted; `page.close()` stops it.
  """
  theme = gr.themes.Default(font=['ui-sans-serif', 'system-ui', 'sans-serif'],
                            font_mono=['ui-monospace', 'monospace'])
  _, url, _ = page.launch(server_name=host, server_port=port or ports.free_port(host),
                          share=False,
                          prevent_thread_lock=True, quiet=True, theme=theme,
                          css=render.STYLE, footer_links=[], ssr_mode=False,
                          mcp_server=False, enable_monitoring=False)
  return url
