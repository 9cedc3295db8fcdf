"""captioned_shapes: the built-in, offline dataset, sized for a laptop CPU.

Three stages at 16/32/64 px with small widths and small-CNN encoders, so every
phase trains in minutes on 2 CPU cores. DAMSM's and STREAM's image backbone is
the `classifier` phase's attribute classifier, pretrained and frozen, as the
paper's are ImageNet networks. Variants: `configs/shapes.py:smoke` (seconds, for
tests), `configs/shapes.py:scratch_backbones` (DAMSM and STREAM train their own
backbones: make runs 4-6 and the README's ablation; both:
`configs/shapes.py:scratch_backbones,smoke`).
"""

from configs import common


def get_config(arg=None):
  """Returns the captioned_shapes config; `arg` may be 'smoke'."""
  c = common.get_base_config()
  c.data.name = 'captioned_shapes'
  c.data.builder_config = '64'  # 64 px images, 20k train / 2k test.
  c.data.captions_per_image = 8  # Every shapes image has 8 captions.
  c.data.words_num = 18  # Shapes captions are at most ~16 words.
  c.data.random_crop_flip = False  # A flip would make 'left of' captions false.
  c.data.shuffle_buffer = 20_000  # The whole train split.

  c.model.text_encoder.embedding_dim = 64  # Small vocabulary (~100 words).
  c.model.text_encoder.hidden_size = 64  # 128-d word / sentence features.
  c.model.image_encoder.backbone = 'small_cnn'
  c.model.image_encoder.input_size = 64
  # A spatial mean forgets where the object is. Test R-precision top-1 (backbone
  # trained from scratch): mean 0.556 (1 epoch); flattened map 0.69 (1 epoch), 0.835
  # (2); spatial max + flattened map (the max reads a shape wherever it is) 0.77, 0.84.
  c.model.image_encoder.small_cnn_pooling = 'max_flatten'
  c.model.generator.ngf = 8  # Paper 32; 16 doubles the GAN step time on CPU.
  c.model.generator.z_dim = 32
  c.model.generator.condition_dim = 32
  c.model.generator.base_size = 16  # Stages at 16, 32, 64 px.
  c.model.generator.num_res_blocks = 1
  # Stage 0 at 128 / 64 / 8 channels (4 / 8 / 16 px); the reference rule gives
  # ngf * 4 = 32 / 16 / 8 at base 16, which draws noise at 16 px.
  c.model.generator.initial_channels = 128
  # Sentence features have rms ~0.13, so the CA mean (rms 0.06) drowned in the unit
  # CA noise; unit-rms input gives a mean of rms ~0.5 at once (ref: raw features).
  c.model.generator.normalize_sentence = True
  # Ref 64. At 8, G fooled D64 with pixel-level colour noise (oracle colour 0.51 after
  # 1,250 steps); at 16 the objects come out flatter and colour reads 0.76 (step time
  # +25%). At the paper's G lr (2e-4), 16 let D win from step 100.
  c.model.discriminator.ndf = 16
  c.model.captioner.backbone = 'small_cnn'
  c.model.captioner.input_size = 64
  # The backbone's spatial max and flattened map, and the image at every decoder step
  # (mean-pooled, first-step image: greedy redescriptions of real test images read
  # colour 0.11, shape 0.14; results/shapes_learning.md).
  c.model.captioner.small_cnn_pooling = 'max_flatten'
  c.model.captioner.image_every_step = True
  c.model.captioner.feature_dim = 128
  c.model.captioner.embed_dim = 64
  c.model.captioner.hidden_size = 128

  c.damsm.batch_size = 32  # The word loss costs B^2: 32 halves an epoch vs 64.
  c.stream.batch_size = 32
  c.stream.learning_rate = 3e-3  # Ref 1e-3: 4 epochs from scratch read shape 0.16.
  c.train.batch_size = 32
  # 1,875 GAN steps. Still learning at the end: 1,250 steps gave R-precision 0.68, oracle
  # colour 0.54 and background 0.66; 1,875 gave 0.74, 0.67 and 0.80 (ndf 8).
  c.train.num_epochs = 3
  # The paper's 2e-4 moves G too little in 1,250 steps: at step 500 the samples'
  # backgrounds were at chance (oracle 0.34); with 1e-3, 0.80 (D stays at 2e-4).
  c.optim.g_learning_rate = 1e-3
  # Ref 0.999 (650 epochs). With the warmup, 0.999 averages the last ~190 of 1,875
  # steps, while shape was still rising ~0.04 per 500 steps; 0.98 averages ~50.
  # Seeds 0 / 1 / 2: oracle shape 0.44 / 0.51 / 0.37 against 0.39 / 0.48 / 0.36,
  # colour 0.85 / 0.84 / 0.87 against 0.85 / 0.85 / 0.88 (results/shapes_learning.md).
  c.optim.ema_decay = 0.98
  c.loss.kl_weight = 0.1  # Ref 1: a weaker pull of the CA mean to 0 (short runs).
  # Ref 0 (no augmentation). Without: G drew the colours with pixel patterns the
  # frozen STREAM reads (redescription colour 0.96, oracle 0.72) and left black /
  # white backgrounds to chance. With STREAM's input shifted by up to 5% and every D
  # input by up to 1/16 (DiffAugment translation), the probe at step 1,000 read
  # background 0.88 / colour 0.74 against 0.51 / 0.44; 10% / 1/8 gave 0.70 / 0.69
  # (results/shapes_learning.md, t1-t4).
  c.loss.stream_translate = 0.05
  c.loss.d_translate = 0.0625
  # Ref 0 (not in MirrorGAN; StackGAN++'s regulariser). The 16 px stage drew every
  # stated background right while the 32 / 64 px stages lost it (64 px: black right
  # 22%, white 33%): oracle background 0.53 at the end. Tying each stage's mean colour
  # and colour covariance to the stage below gave 0.91, colour 0.89 (0.86),
  # R-precision 0.82 (0.72), same frozen networks (results/shapes_learning.md, c1).
  c.loss.color_consistency = 2.0
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 500
  c.train.checkpoint_every_steps = 500
  c.train.probe_samples = 256  # Semantic probe (oracle + redescription) every eval.
  c.eval.num_samples = 2_000

  args = common.parse_arg(arg)
  if args.get('scratch_backbones'):
    _scratch_backbones(c)
  else:
    _classifier_backbones(c)
  if args.get('smoke'):
    common.apply_smoke(c)
    c.data.builder_config = 'tiny'  # 96 train / 32 test images at 64 px.
    c.data.captions_per_image = 8
    c.train.probe_samples = 8
    c.model.generator.initial_channels = 16  # Exercised, at smoke size.
  return c


def _classifier_backbones(c) -> None:
  """DAMSM's and STREAM's image backbone: the `classifier` phase's network (the
  oracle's from another seed, trained on the labelled train split), frozen; the
  paper's are a frozen ImageNet Inception-v3 and ResNet-152.

  Trained from scratch (`_scratch_backbones`), DAMSM hardly read shape (a test image
  was closer to its caption than to the caption with the shape word swapped 0.68 of
  the time; colour 0.99) and STREAM named it 0.71-0.79, and the GAN drew shapes at
  chance (oracle 0.14). With these backbones DAMSM reads shape 0.93 and STREAM
  0.94; with DAMSM's swap negatives the GAN draws the stated shape 0.39, background
  0.93, colour 0.85 (results/shapes_learning.md).
  """
  for section, encoder in ((c.damsm, c.model.image_encoder), (c.stream, c.model.captioner)):
    section.pretrained_backbone = 'classifier'
    encoder.small_cnn_features = c.oracle.features
    encoder.small_cnn_downsample = 'maxpool'
    encoder.train_backbone = False
  # 1 epoch: R-precision top-1 0.92, background swap accuracy 0.95 (sentence distance
  # 0.14); the GAN drew background 0.73, shape 0.38 (make run 8). 2 epochs: 0.96, 0.96
  # (0.17); background 0.83, shape 0.42, colour 0.81 against 0.85 (e5), for 53 s more.
  c.damsm.num_epochs = 2
  c.damsm.eval_every_epochs = 2
  # Near-copy captions (one colour, shape, size, background or position word swapped)
  # as hard negatives of the sentence loss (phases/swap_negatives.py; ref: none).
  # Without them the sentence hardly moved with a background word at its start
  # (0.045) and the GAN drew such backgrounds 0.49 of the time; with them the GAN
  # drew background 0.93 (0.83), colour 0.85 (0.81), position 0.99, shape 0.39
  # (0.42); DAMSM takes ~30 s more.
  c.damsm.swap_negatives = True
  # Greedy redescriptions of real test images: shape 0.94, colour 1.00, position 1.00.
  c.stream.num_epochs = 3
  c.stream.eval_every_epochs = 3
  # This DAMSM leaves smaller features (word rms 0.084, sentence 0.104) than the one
  # of `_scratch_backbones` (0.140, 0.166); at those sizes GLAM and D's sentence head
  # learnt every attribute more slowly (make run 7 against gS: background 0.65 / 0.75).
  c.model.generator.word_rms = 0.14
  c.model.discriminator.sentence_rms = 0.166


def _scratch_backbones(c) -> None:
  """DAMSM and STREAM train their own small-CNN backbones (make runs 4-6)."""
  c.model.image_encoder.small_cnn_features = (32, 64, 128)
  c.model.image_encoder.train_backbone = True
  c.damsm.num_epochs = 2  # R-precision top-1 0.69 after 1 epoch, 0.83 after 2 (0.82 after 3).
  c.damsm.eval_every_epochs = 2  # Only at the end (each test evaluation ~14 s).
  # Four stride-2 layers (receptive field 31 px, a 4x4 map): greedy redescriptions of
  # 500 real test images name the colour 1.0, position 0.96, size 0.85 and shape 0.79.
  c.model.captioner.small_cnn_features = (16, 32, 64, 128)  # Wider (32, ..., 128) read shape worse.
  c.model.captioner.train_backbone = True
  # Shape words are learnt last: after 8 epochs at lr 3e-3, shape 0.79 with batch 32
  # (5,000 steps), 0.63 with batch 64; at the ref lr 1e-3 and 4 epochs, 0.16.
  c.stream.num_epochs = 8
  c.stream.eval_every_epochs = 4  # Epochs 4 and 8 (each test evaluation ~10 s).
