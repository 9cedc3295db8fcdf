r"""Converts the authors' PyTorch checkpoints into MirrorGAN-JAX artifacts.

  python -m mirrorgan_jax.pretrained damsm --text-encoder text_encoder200.pth \
      --image-encoder image_encoder200.pth --vocab vocab.txt \
      --config configs/cub.py --out WORKDIR/damsm/artifact
  python -m mirrorgan_jax.pretrained stream --encoder cnn_encoder.ckpt \
      --decoder rnn_decoder.ckpt --vocab vocab.txt --config configs/cub.py \
      --out WORKDIR/stream/artifact
  python -m mirrorgan_jax.pretrained inception --weights pt_inception.pth --out DIR

Checkpoints may be PyTorch files (needs `pip install torch`, loaded with
weights_only=True) or .npz files of numpy arrays keyed by state_dict names. The
vocabulary is our vocab.json or a text file with one word per line, line 1
`<end>`. `--config` takes the ml_collections syntax (`configs/cub.py:smoke`,
`--config.model.captioner.hidden_size=512`).
"""

import argparse
import sys
from typing import Sequence

from absl import logging

from mirrorgan_jax.infra import config_loading
from mirrorgan_jax.pretrained import converters


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m mirrorgan_jax.pretrained', allow_abbrev=False,
      description='Convert PyTorch checkpoints (.pth or .npz) into artifacts.',
      epilog='Config overrides (--config.a.b=value) follow --config.')
  commands = parser.add_subparsers(dest='command', required=True)
  damsm = commands.add_parser('damsm', allow_abbrev=False,
                              help="AttnGAN's DAMSM text and image encoders.")
  damsm.add_argument('--text-encoder', required=True, help='text_encoder*.pth / .npz')
  damsm.add_argument('--image-encoder', required=True, help='image_encoder*.pth / .npz')
  stream = commands.add_parser('stream', allow_abbrev=False,
                               help="MirrorGAN's STREAM captioner.")
  stream.add_argument('--encoder', required=True, help='cnn_encoder*.ckpt / .npz')
  stream.add_argument('--decoder', required=True, help='rnn_decoder*.ckpt / .npz')
  for command in (damsm, stream):
    command.add_argument('--vocab', required=True,
                         help='vocab.json, or one word per line (line 1 <end>)')
    command.add_argument('--config', required=True,
                         help='experiment config, e.g. configs/cub.py')
    command.add_argument('--out', required=True, help='artifact directory')
  inception = commands.add_parser(
      'inception', allow_abbrev=False,
      help='Inception-v3 for FID / IS (pytorch-fid or torchvision weights).')
  inception.add_argument('--weights', required=True,
                         help='pt_inception-*.pth or inception_v3_google-*.pth / .npz')
  inception.add_argument('--out', required=True, help='output directory')
  return parser


def main(argv: Sequence[str]) -> int:
  """Runs the CLI. Args: argv with the program name first. Returns: exit code."""
  parser = _parser()
  args, extra = parser.parse_known_args(list(argv[1:]))
  if extra and args.command == 'inception':
    parser.error(f'unrecognized arguments: {" ".join(extra)}')
  try:
    if args.command == 'inception':
      meta = converters.convert_inception(args.weights, args.out)
    else:
      config = config_loading.load_config(args.config, extra, 'pretrained')
      if args.command == 'damsm':
        meta = converters.convert_damsm(args.text_encoder, args.image_encoder,
                                       args.vocab, config, args.out)
      else:
        meta = converters.convert_stream(args.encoder, args.decoder, args.vocab,
                                        config, args.out)
  except (FileNotFoundError, ImportError, ValueError, KeyError) as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f'error: {message}', file=sys.stderr)
    return 1
  print(f'{args.command}: wrote {args.out}')
  for key in ('vocab_size', 'num_classes', 'variant'):
    if key in meta:
      print(f'  {key}: {meta[key]}')
  return 0


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  sys.exit(main(sys.argv))
