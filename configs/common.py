"""Defaults shared by every MirrorGAN config: the paper / reference values.

Dataset configs (`shapes.py`, `cub.py`, `coco.py`) start from `get_base_config()`
and override what differs. Every field carries a one-line comment: meaning, unit
and the paper ("paper") or authors' code ("ref") value.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  """Returns the paper-sized MirrorGAN config (CUB values where they differ)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Global seed for parameters, noise and data order.

  # ---------------------------------------------------------------- data
  c.data = ml_collections.ConfigDict()
  c.data.name = 'cub'  # TFDS name: 'captioned_shapes', 'cub', 'coco2014_captions'.
  c.data.builder_config = ''  # TFDS builder config, e.g. '64' for shapes ('' = default).
  c.data.data_dir = ''  # TFDS data dir ('' = TFDS default, ~/tensorflow_datasets).
  c.data.manual_dir = ''  # Where the user put the raw CUB/COCO files ('' = TFDS default).
  c.data.train_split = 'train'  # Split used for training.
  c.data.eval_split = 'test'  # Split used for evaluation and R-precision.
  c.data.captions_per_image = 10  # Captions kept per image (ref: CUB 10, COCO 5).
  c.data.words_num = 18  # Caption length cap; longer captions drop random words (paper L=18).
  c.data.random_crop_flip = True  # Resize to 76/64 of the size, random crop, flip (ref).
  c.data.shuffle_buffer = 10_000  # Examples in the shuffle buffer.
  c.data.cache = True  # Keep the encoded train records in memory (False for COCO).
  c.data.prefetch = 2  # Batches prefetched by tf.data.
  c.data.vocab_path = ''  # Vocabulary JSON ('' = build from train+test captions).

  # ---------------------------------------------------------------- model
  c.model = ml_collections.ConfigDict()
  c.model.compute_dtype = 'float32'  # Activation dtype: 'float32' or 'bfloat16'.

  c.model.text_encoder = ml_collections.ConfigDict()
  c.model.text_encoder.embedding_dim = 300  # Word embedding size (ref 300).
  c.model.text_encoder.hidden_size = 128  # LSTM units per direction; features are 2x (ref 128 -> 256).
  c.model.text_encoder.dropout_rate = 0.5  # Dropout on embeddings while pretraining (ref 0.5).

  c.model.image_encoder = ml_collections.ConfigDict()
  c.model.image_encoder.backbone = 'inception_v3'  # 'inception_v3' (ref) or 'small_cnn'.
  c.model.image_encoder.input_size = 299  # Images are resized to this before the CNN (ref 299).
  c.model.image_encoder.small_cnn_features = (32, 64, 128, 256)  # Widths of the small CNN.
  c.model.image_encoder.small_cnn_pooling = 'mean'  # Small CNN global feature: 'mean' (as ref avg pool), 'flatten' or 'max_flatten'.
  c.model.image_encoder.small_cnn_downsample = 'stride'  # Small CNN: 'stride' (stride-2 convs) or 'maxpool'.
  c.model.image_encoder.train_backbone = False  # Ref: ImageNet Inception frozen; True to train it.

  c.model.generator = ml_collections.ConfigDict()
  c.model.generator.ngf = 32  # Visual feature channels M_i (paper 32).
  c.model.generator.z_dim = 100  # Noise size (ref 100).
  c.model.generator.condition_dim = 100  # Augmented sentence size D' (paper 100).
  c.model.generator.num_stages = 3  # Generator stages (paper 3: 64, 128, 256).
  c.model.generator.base_size = 64  # Side of the first stage's image in px (paper 64).
  c.model.generator.num_res_blocks = 2  # Residual blocks per refinement stage (ref 2).
  c.model.generator.initial_channels = 0  # F_0 width at 4x4 (0 = ref rule ngf * 2**n: 16 ngf at base 64).
  c.model.generator.normalize_sentence = False  # Unit-rms sentence features into CA (ref: raw).
  c.model.generator.word_rms = 0.0  # Word features rescaled to this rms for GLAM (0 = raw, ref).
  c.model.generator.glam = 'paper'  # 'paper' (Eq. 4-5), 'reference' (authors' code), 'word_only' (w/o GA).

  c.model.discriminator = ml_collections.ConfigDict()
  c.model.discriminator.ndf = 64  # Base discriminator width (ref CUB 64, COCO 96).
  c.model.discriminator.sentence_rms = 0.0  # Sentence rescaled to this rms in D's conditional head (0 = raw, ref).

  c.model.captioner = ml_collections.ConfigDict()
  c.model.captioner.backbone = 'resnet152'  # 'resnet152' (ref) or 'small_cnn'.
  c.model.captioner.input_size = 224  # Generated image resized to this for STREAM (ref 224).
  c.model.captioner.small_cnn_features = (32, 64, 128, 256)  # Widths of the small CNN.
  c.model.captioner.small_cnn_pooling = 'mean'  # Small CNN global feature: 'mean' (as ref avg pool), 'flatten' or 'max_flatten'.
  c.model.captioner.small_cnn_downsample = 'stride'  # Small CNN: 'stride' (stride-2 convs) or 'maxpool'.
  c.model.captioner.train_backbone = False  # Ref: ImageNet ResNet frozen while pretraining STREAM.
  c.model.captioner.image_every_step = False  # Image feature added to every word input (ref: first step only).
  c.model.captioner.feature_dim = 256  # Image feature fed as the first LSTM input (ref 256).
  c.model.captioner.embed_dim = 256  # Word embedding size of the decoder (ref 256).
  c.model.captioner.hidden_size = 512  # Decoder LSTM units (ref 2 x 256 = 512).
  c.model.captioner.max_decode_len = 20  # Longest redescription when decoding (ref 20).
  c.model.captioner.beam_size = 3  # Beam width for beam-search redescriptions.

  # ---------------------------------------------------------------- losses
  c.loss = ml_collections.ConfigDict()
  c.loss.stream_weight = 20.0  # lambda on L_stream (paper 20; ref yaml 10).
  c.loss.stream_end_token = True  # STREAM also predicts <end> after the caption (ref: never).
  c.loss.kl_weight = 1.0  # Weight of the conditioning-augmentation KL (ref 1; not in paper).
  c.loss.d_mismatch_term = True  # D also scores real images with wrong captions (ref; not in paper Eq. 10).
  # Random translations, max fraction of the image side (ref 0: no augmentation),
  # edge-padded (`random_translation`): of every D input (DiffAugment), of STREAM's input.
  c.loss.d_translate = 0.0
  c.loss.stream_translate = 0.0
  # Weight of StackGAN++'s colour consistency between consecutive stages' images
  # (`losses.color_consistency`; ref 0: not in MirrorGAN, AttnGAN or their code).
  c.loss.color_consistency = 0.0
  # Weight of the STREAM loss on the images of the `stream_lower_stages` stages below
  # the last, each upsampled bilinearly to the last stage's size (ref 0: MirrorGAN
  # redescribes only the last image).
  c.loss.stream_lower_weight = 0.0
  c.loss.stream_lower_stages = 1
  c.loss.gamma1 = 4.0  # DAMSM region-attention temperature (ref 4).
  c.loss.gamma2 = 5.0  # DAMSM word-relevance smoothing (ref 5).
  c.loss.gamma3 = 10.0  # DAMSM logit scale (ref 10).

  # ---------------------------------------------------------------- optimisers
  c.optim = ml_collections.ConfigDict()
  c.optim.g_learning_rate = 2e-4  # Generator Adam lr (ref 2e-4).
  c.optim.d_learning_rate = 2e-4  # Discriminator Adam lr (ref 2e-4).
  c.optim.b1 = 0.5  # Adam beta1 for G and D (ref 0.5).
  c.optim.b2 = 0.999  # Adam beta2 for G and D (ref 0.999).
  c.optim.ema_decay = 0.999  # EMA of generator parameters (ref 0.999).
  c.optim.ema_warmup = True  # Decay min(ema_decay, (1+n)/(10+n)) at update n (ref: fixed).

  # ---------------------------------------------------------------- phases
  c.damsm = ml_collections.ConfigDict()
  c.damsm.batch_size = 48  # Global batch for DAMSM pretraining (ref 48).
  c.damsm.num_epochs = 600  # DAMSM epochs (ref max 600; released encoders at 200).
  c.damsm.learning_rate = 2e-3  # Adam lr, decayed x0.98 per epoch down to 2e-4 (ref).
  c.damsm.grad_clip = 0.25  # Global-norm clip on the text encoder only (ref 0.25).
  c.damsm.init_text_encoder = ''  # Converted AttnGAN text encoder to start from ('' = scratch).
  c.damsm.init_image_encoder = ''  # Converted AttnGAN image encoder to start from.
  # '' (ref: the image backbone is ImageNet Inception-v3, or fresh) or 'classifier'
  # (captioned_shapes: the small CNN from the `classifier` phase's network).
  c.damsm.pretrained_backbone = ''
  # captioned_shapes only: each caption with one attribute word swapped is a hard
  # negative of its image in the sentence loss (phases/swap_negatives.py; ref: none).
  c.damsm.swap_negatives = False
  c.damsm.eval_every_epochs = 1  # Test R-precision every N epochs (and at the end).

  c.stream = ml_collections.ConfigDict()
  c.stream.batch_size = 128  # Global batch for captioner pretraining (ref tutorial 128).
  c.stream.num_epochs = 100  # Captioner epochs (not documented by the authors).
  c.stream.learning_rate = 1e-3  # Adam lr (ref 1e-3).
  c.stream.lr_schedule = 'constant'  # 'constant' (ref) or 'cosine' (decayed to 0 over the phase).
  c.stream.init_checkpoint = ''  # Converted captioner to start from ('' = scratch).
  # '' (ref: the backbone is ImageNet ResNet-152, or fresh) or 'classifier' (as DAMSM's).
  c.stream.pretrained_backbone = ''
  c.stream.eval_every_epochs = 1  # Test loss, BLEU and redescriptions every N epochs (and at the end).

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 12  # Global GAN batch (ref CUB 12).
  c.train.num_epochs = 650  # GAN epochs (ref CUB 650).
  c.train.log_every_steps = 100  # Scalar summaries cadence.
  c.train.eval_every_steps = 1000  # Sample grids cadence (ref 1000).
  c.train.checkpoint_every_steps = 2000  # Orbax save cadence.
  c.train.keep_checkpoints = 3  # Checkpoints kept.
  c.train.probe_samples = 0  # Test captions of the in-training semantic probe (captioned_shapes; 0 = off).
  c.train.profile_steps = ()  # Steps to capture with jax.profiler, e.g. (10, 11, 12).

  c.parallel = ml_collections.ConfigDict()
  c.parallel.mode = 'jit'  # 'jit' (Mesh, default) or 'pmap'.

  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 30_000  # Images generated for IS / FID / R-precision (field protocol).
  c.eval.batch_size = 50  # Batch for evaluation forward passes.
  c.eval.inception_path = ''  # Converted Inception-v3 artifact for IS/FID ('' = skip them).
  c.eval.inception_random_weights = False  # Random Inception (tests only: numbers mean nothing).
  c.eval.fid_reference_path = ''  # Cached real-image statistics ('' = <workdir>/eval/).
  c.eval.is_splits = 10  # Inception Score splits (field protocol 10).
  c.eval.r_precision_folds = 10  # R-precision folds for mean +- std (AttnGAN 10).
  c.eval.r_precision_mismatched = 99  # Mismatched captions per image (AttnGAN 99).
  c.eval.redescription_beam_size = 1  # STREAM beam width for the BLEU-4 redescriptions (1 = greedy).

  # Oracle classifier of captioned_shapes (ground-truth semantic accuracy).
  c.oracle = ml_collections.ConfigDict()
  c.oracle.image_size = 64  # Images are resized to this side (divisible by 2**blocks).
  c.oracle.features = (8, 32, 64, 128)  # Widths of its conv + max-pool blocks.
  c.oracle.batch_size = 64  # Training batch.
  c.oracle.num_epochs = 2  # Epochs over the real train split (64 px test: >= 99.3% each head).
  c.oracle.learning_rate = 3e-3  # Adam lr, cosine-decayed to 0 over the phase.
  return c


def parse_arg(arg):
  """Parses `get_config` arguments like 'smoke' or 'smoke,stages=2' into a dict."""
  out = {}
  for item in (arg or '').split(','):
    item = item.strip()
    if not item:
      continue
    key, _, value = item.partition('=')
    out[key] = value if value else True
  return out


def apply_smoke(c: ml_collections.ConfigDict) -> None:
  """Shrinks any config to a seconds-long CPU run, keeping its structure."""
  c.data.shuffle_buffer = 64
  c.data.words_num = 12
  c.model.text_encoder.embedding_dim = 16
  c.model.text_encoder.hidden_size = 8
  c.model.image_encoder.backbone = 'small_cnn'
  c.model.image_encoder.input_size = 32
  c.model.image_encoder.small_cnn_features = (8, 16)
  c.model.image_encoder.train_backbone = True
  c.model.generator.ngf = 4
  c.model.generator.z_dim = 8
  c.model.generator.condition_dim = 4
  c.model.generator.num_stages = 2
  c.model.generator.base_size = 16
  c.model.generator.num_res_blocks = 1
  c.model.discriminator.ndf = 4
  c.model.captioner.backbone = 'small_cnn'
  c.model.captioner.input_size = 32
  c.model.captioner.small_cnn_features = (8, 16)
  c.model.captioner.train_backbone = True
  c.model.captioner.feature_dim = 16
  c.model.captioner.embed_dim = 16
  c.model.captioner.hidden_size = 16
  c.model.captioner.max_decode_len = 12
  c.model.captioner.beam_size = 2
  c.damsm.batch_size = 8
  c.damsm.num_epochs = 1
  c.stream.batch_size = 8
  c.stream.num_epochs = 1
  c.train.batch_size = 8
  c.train.num_epochs = 1
  c.train.log_every_steps = 1
  c.train.eval_every_steps = 2
  c.train.checkpoint_every_steps = 2
  c.eval.num_samples = 16
  c.eval.batch_size = 8
  c.eval.is_splits = 2
  c.eval.r_precision_folds = 2
  c.eval.r_precision_mismatched = 7
  c.oracle.image_size = 32
  c.oracle.features = (8, 16)
  c.oracle.batch_size = 16
  c.oracle.num_epochs = 1
