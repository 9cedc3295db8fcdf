"""Pure loss functions of MirrorGAN: DAMSM matching, adversarial, KL and STREAM losses.

Every function is a pure, jit-able function of arrays (no Flax modules). Inputs are
cast to float32 and all maths runs in float32, so bfloat16 activations can be fed in.
Layouts are batch-major: images and feature maps NHWC, sequences [B, T, ...].

Where we follow the paper and where the authors' code (see
`reference_spec.md` sections 1.5, 2, 5.3, 6 and 10):

- DAMSM word score (`damsm_word_loss`): the authors' code, S = log sum_w
  exp(gamma2 * R_w), WITHOUT the AttnGAN paper's 1/gamma2 factor. Published DAMSM
  encoders were trained with this score, so fine-tuning or retraining them matches.
- DAMSM padded words (`damsm_word_loss`): the reference slices every caption to its
  own length; we mask the padded words instead (zero weight in the softmax over words,
  no term in the score, zero attention maps), which gives the same numbers.
- Discriminator (`discriminator_loss`): the authors' code by default (a mismatched
  caption term and 1/2, 1/3 weights, `mismatch_term=True`); the paper's Eq. 10
  (four real/fake terms, each weighted 1/2) with `mismatch_term=False`. Our wrong pairs
  come from the input pipeline (one mismatched caption per example, B pairs), not from
  the reference's shifted pairing (image k with caption k + 1, B - 1 pairs).
- Generator adversarial loss (`generator_adversarial_loss`): the paper's Eq. 7 with
  its 1/2 factors; the authors' code has none. So a given lambda weighs L_stream
  against the adversarial terms twice as much here as in the reference code (paper
  lambda ~ reference 2 * lambda, up to the KL weight and an overall scale).
- STREAM loss (`caption_loss`): the authors' code by default, the mean over all valid
  tokens of the batch ('token_mean'). The paper's Eq. 8 writes a per-sentence sum over
  t. The paper's lambda (10 and 20 in its tables) was, as far as we can tell, tuned
  with the authors' token-mean code; a per-sentence sum is about L = 18 times larger,
  so lambda = 20 fits the token mean. The sum is reduction='sentence_sum'.
- Total G loss (`generator_loss`): the paper's Eq. 9 plus the reference's KL term of
  the conditioning augmentation (weight 1 in the code; absent from the paper's equation).
- Colour consistency (`color_consistency`): not in MirrorGAN or its reference code;
  StackGAN++'s regulariser (Zhang et al. 2018, Eq. 8), off by default.
- Adversarial inputs are logits; BCE is computed with log-sigmoid instead of the
  reference's sigmoid followed by BCELoss: the same maths, but with no saturation
  (PyTorch clamps each log at -100 and sigmoid rounds to 0 or 1 in float32, giving
  zero gradients for confident mistakes) and no overflow.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

_COSINE_EPS = 1e-8  # Reference: cosine = dot / max(|x| |y|, 1e-8).
_HIGHEST = jax.lax.Precision.HIGHEST  # float32 matmuls also on TPU/GPU (no bf16 passes).
_REDUCTIONS = ('token_mean', 'sentence_sum')


def _check_ndim(name: str, x: jax.Array, ndim: int, layout: str) -> None:
  if jnp.ndim(x) != ndim:
    raise ValueError(f'{name} must be {layout}, got shape {jnp.shape(x)}')


def _check_batch(names_and_arrays: Sequence[tuple[str, jax.Array]]) -> None:
  sizes = {name: jnp.shape(x)[0] for name, x in names_and_arrays}
  if len(set(sizes.values())) > 1:
    raise ValueError(f'batch sizes differ: {sizes}')


def _safe_norm(x: jax.Array) -> jax.Array:
  """L2 norm over the last axis whose gradient is 0, not NaN, at the zero vector."""
  sq = jnp.sum(x * x, axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _cosine(x: jax.Array, y: jax.Array) -> jax.Array:
  """Cosine similarity over the last axis as the reference computes it (eps 1e-8)."""
  dot = jnp.sum(x * y, axis=-1)
  return dot / jnp.maximum(_safe_norm(x) * _safe_norm(y), _COSINE_EPS)


def _mask_same_class(logits: jax.Array, class_ids: jax.Array | None) -> jax.Array:
  """Sets logits[j, i] to -inf where j != i share a class id (not negatives)."""
  if class_ids is None:
    return logits
  class_ids = jnp.asarray(class_ids)
  n = logits.shape[0]
  same = (class_ids[:, None] == class_ids[None, :]) & ~jnp.eye(n, dtype=bool)
  return jnp.where(same, -jnp.inf, logits)


def _matching_losses(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Cross-entropies with labels arange(B) over rows and over columns of [B, B]."""
  rows = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))
  cols = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=0)))
  return rows, cols


def damsm_word_loss(
    region_features: jax.Array,
    words: jax.Array,
    lengths: jax.Array,
    class_ids: jax.Array | None,
    gamma1: float,
    gamma2: float,
    gamma3: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """DAMSM word-level (attention-driven) matching loss (AttnGAN Eqs. 7-11, ref code).

  For every pair (image j, caption i): scores e_i[w] . v_j[r]; softmax over the
  caption's real words for each region; softmax over regions of gamma1 times that,
  per word; region context c_w; relevance R_w = cos(c_w, e_i[w]); score
  S(j, i) = log sum_w exp(gamma2 R_w) (no 1/gamma2, as in the reference code and the
  published encoders). Logits gamma3 * S; entries j != i of the same class are set to
  -inf; cross-entropy with labels arange(B) in both directions. All pairs are computed
  at once ([B, B, T, H*W] intermediates).

  Args:
    region_features: image region features v [B, H, W, D] (NHWC).
    words: word features e [B, T, D]; positions at or past `lengths` are ignored.
    lengths: real words per caption [B], int, each >= 1.
    class_ids: class id per example [B], int, or None to mask nothing (e.g. COCO).
    gamma1: region-attention temperature (ref 4).
    gamma2: word-relevance smoothing (ref 5).
    gamma3: logit scale (ref 10).

  Returns:
    (loss_images_to_captions, loss_captions_to_images, attention_maps):
    the mean cross-entropy over the batch of each image against all captions (the
    reference's loss0) and of each caption against all images (loss1), scalars; and
    the region attention of each image with its own caption [B, T, H, W], zero for
    padded words.
  """
  _check_ndim('region_features', region_features, 4, '[B, H, W, D]')
  _check_ndim('words', words, 3, '[B, T, D]')
  _check_ndim('lengths', lengths, 1, '[B]')
  _check_batch([('region_features', region_features), ('words', words),
                ('lengths', lengths)] +
               ([('class_ids', class_ids)] if class_ids is not None else []))
  b, h, w, d = region_features.shape
  t = words.shape[1]
  if words.shape[2] != d:
    raise ValueError(f'feature sizes differ: region_features {region_features.shape}, '
                     f'words {words.shape}')

  regions = jnp.asarray(region_features, jnp.float32).reshape(b, h * w, d)
  mask = jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]  # [B_cap, T]
  # Zeroed padded words cannot leak NaN/Inf garbage into values or gradients.
  words = jnp.where(mask[..., None], jnp.asarray(words, jnp.float32), 0.0)

  # Axes: j image, i caption, w word, r region.
  scores = jnp.einsum('iwd,jrd->jiwr', words, regions, precision=_HIGHEST)
  word_mask = jnp.broadcast_to(mask[None, :, :, None], scores.shape)
  word_weights = jax.nn.softmax(scores, axis=2, where=word_mask)
  word_weights = jnp.where(word_mask, word_weights, 0.0)
  attention = jax.nn.softmax(gamma1 * word_weights, axis=3)  # Over regions.
  context = jnp.einsum('jiwr,jrd->jiwd', attention, regions, precision=_HIGHEST)
  relevance = _cosine(context, words[None])  # [B_img, B_cap, T]
  pair_mask = jnp.broadcast_to(mask[None], relevance.shape)
  similarity = jax.nn.logsumexp(gamma2 * relevance, axis=2, where=pair_mask)

  logits = _mask_same_class(gamma3 * similarity, class_ids)
  loss_images_to_captions, loss_captions_to_images = _matching_losses(logits)

  diag = jnp.arange(b)
  own = attention[diag, diag] * mask[:, :, None]  # Each image with its own caption.
  attention_maps = own.reshape(b, t, h, w)
  return loss_images_to_captions, loss_captions_to_images, attention_maps


def damsm_sentence_loss(
    image_code: jax.Array,
    sentence: jax.Array,
    class_ids: jax.Array | None,
    gamma3: float,
) -> tuple[jax.Array, jax.Array]:
  """DAMSM sentence-level matching loss (AttnGAN Eqs. 12-13, ref code).

  Logits[j, i] = gamma3 * cos(image_code_j, sentence_i), same-class entries j != i set
  to -inf, cross-entropy with labels arange(B) in both directions.

  Args:
    image_code: global image features [B, D].
    sentence: sentence features [B, D].
    class_ids: class id per example [B], int, or None to mask nothing.
    gamma3: logit scale (ref 10).

  Returns:
    (loss_images_to_sentences, loss_sentences_to_images): scalar batch means (the
    reference's loss0 and loss1).
  """
  _check_ndim('image_code', image_code, 2, '[B, D]')
  _check_ndim('sentence', sentence, 2, '[B, D]')
  _check_batch([('image_code', image_code), ('sentence', sentence)] +
               ([('class_ids', class_ids)] if class_ids is not None else []))
  if image_code.shape[1] != sentence.shape[1]:
    raise ValueError(f'feature sizes differ: image_code {image_code.shape}, '
                     f'sentence {sentence.shape}')
  image_code = jnp.asarray(image_code, jnp.float32)
  sentence = jnp.asarray(sentence, jnp.float32)
  logits = gamma3 * _cosine(image_code[:, None, :], sentence[None, :, :])
  return _matching_losses(_mask_same_class(logits, class_ids))


def _bce_real(logits: jax.Array) -> jax.Array:
  """Mean BCE against label 1: -log sigmoid(x), overflow-free."""
  return -jnp.mean(jax.nn.log_sigmoid(jnp.asarray(logits, jnp.float32)))


def _bce_fake(logits: jax.Array) -> jax.Array:
  """Mean BCE against label 0: -log(1 - sigmoid(x)) = -log sigmoid(-x)."""
  return -jnp.mean(jax.nn.log_sigmoid(-jnp.asarray(logits, jnp.float32)))


def discriminator_loss(
    real_uncond: jax.Array,
    real_cond: jax.Array,
    fake_uncond: jax.Array,
    fake_cond: jax.Array,
    wrong_cond: jax.Array | None = None,
    mismatch_term: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Loss of one discriminator (ref code, or paper Eq. 10 without `mismatch_term`).

  With `mismatch_term` (reference):
    1/2 [BCE(real_u, 1) + BCE(real_c, 1)]
      + 1/3 [BCE(fake_u, 0) + BCE(fake_c, 0) + BCE(wrong_c, 0)].
  Without (paper Eq. 10): 1/2 [BCE(real_u, 1) + BCE(fake_u, 0) + BCE(real_c, 1)
  + BCE(fake_c, 0)]. Each BCE is a batch mean.

  Args:
    real_uncond: unconditional logits of real images [B] (pre-sigmoid).
    real_cond: conditional logits of real images with their captions [B].
    fake_uncond: unconditional logits of generated images [B].
    fake_cond: conditional logits of generated images with their captions [B].
    wrong_cond: conditional logits of real images with mismatched captions [B];
      required with `mismatch_term`, ignored without.
    mismatch_term: include the wrong-caption term (reference) or not (paper).

  Returns:
    (loss, aux): the scalar loss; aux maps 'bce/<term>' to each term's mean BCE and
    'acc/<term>' to the fraction of its logits on the correct side of 0.
  """
  terms = {'real_uncond': real_uncond, 'real_cond': real_cond,
           'fake_uncond': fake_uncond, 'fake_cond': fake_cond}
  if mismatch_term:
    if wrong_cond is None:
      raise ValueError('mismatch_term=True needs wrong_cond (logits of real images '
                       'with mismatched captions)')
    terms['wrong_cond'] = wrong_cond
  for name, logits in terms.items():
    _check_ndim(name, logits, 1, '[B] logits')

  aux = {}
  for name, logits in terms.items():
    is_real = name.startswith('real')
    aux[f'bce/{name}'] = _bce_real(logits) if is_real else _bce_fake(logits)
    correct = (logits > 0) if is_real else (logits < 0)
    aux[f'acc/{name}'] = jnp.mean(correct.astype(jnp.float32))

  real = aux['bce/real_uncond'] + aux['bce/real_cond']
  fake = aux['bce/fake_uncond'] + aux['bce/fake_cond']
  if mismatch_term:
    loss = real / 2.0 + (fake + aux['bce/wrong_cond']) / 3.0
  else:
    loss = (real + fake) / 2.0
  return loss, aux


def generator_adversarial_loss(fake_uncond: jax.Array,
                               fake_cond: jax.Array) -> jax.Array:
  """Non-saturating G loss of one stage, paper Eq. 7.

  L_G_i = -1/2 E log D(I) - 1/2 E log D(I, s). The reference code omits the 1/2
  factors (see the module docstring).

  Args:
    fake_uncond: unconditional D logits of generated images [B] (pre-sigmoid).
    fake_cond: conditional D logits of generated images with their captions [B].

  Returns:
    The scalar loss.
  """
  _check_ndim('fake_uncond', fake_uncond, 1, '[B] logits')
  _check_ndim('fake_cond', fake_cond, 1, '[B] logits')
  return 0.5 * _bce_real(fake_uncond) + 0.5 * _bce_real(fake_cond)


def kl_loss(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, exp(logvar)) || N(0, I)) of conditioning augmentation, ref code.

  -0.5 * mean over all B*K elements of (1 + logvar - mu^2 - exp(logvar)); a mean over
  elements, not a per-example sum, as in the reference.

  Args:
    mu: means [B, K].
    logvar: log-variances [B, K].

  Returns:
    The scalar loss.
  """
  if jnp.shape(mu) != jnp.shape(logvar):
    raise ValueError(f'mu {jnp.shape(mu)} and logvar {jnp.shape(logvar)} differ')
  mu = jnp.asarray(mu, jnp.float32)
  logvar = jnp.asarray(logvar, jnp.float32)
  return -0.5 * jnp.mean(1.0 + logvar - mu**2 - jnp.exp(logvar))


def color_consistency(images: Sequence[jax.Array], mean_weight: float = 1.0,
                      cov_weight: float = 5.0) -> jax.Array:
  """StackGAN++'s colour-consistency regulariser between consecutive stages.

  For each pair of consecutive stages (i - 1, i) and each example: the squared
  distance between the mean colours of the two images plus `cov_weight` times
  the squared Frobenius distance between their 3 x 3 colour covariances (over
  pixels); summed over the pairs, averaged over the batch. StackGAN++'s values:
  mean_weight 1, cov_weight 5. The mean colour of a shapes image is mostly its
  background, so this ties every stage's background to the one before.

  Args:
    images: per-stage images [B, H_i, W_i, C] (any sizes), lowest first.
    mean_weight: weight of the mean term (lambda_1).
    cov_weight: weight of the covariance term (lambda_2).
  Returns:
    The scalar loss (0 for a single stage).
  """
  def moments(x):
    _check_ndim('images[i]', x, 4, 'NHWC')
    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1, x.shape[-1])  # [B, N, C]
    mu = jnp.mean(x, axis=1)
    centred = x - mu[:, None]
    cov = jnp.einsum('bnc,bnd->bcd', centred, centred, precision=_HIGHEST) / x.shape[1]
    return mu, cov

  stats = [moments(x) for x in images]
  total = jnp.zeros((), jnp.float32)
  for (mu_a, cov_a), (mu_b, cov_b) in zip(stats, stats[1:]):
    if mu_a.shape != mu_b.shape:
      raise ValueError(f'stages differ in batch or channels: {mu_a.shape} vs {mu_b.shape}')
    total += jnp.mean(mean_weight * jnp.sum(jnp.square(mu_b - mu_a), axis=-1)
                      + cov_weight * jnp.sum(jnp.square(cov_b - cov_a), axis=(-2, -1)))
  return total


def caption_loss(
    logits: jax.Array,
    targets: jax.Array,
    lengths: jax.Array,
    reduction: str = 'token_mean',
) -> jax.Array:
  """STREAM cross-entropy of the redescription (paper Eq. 8), padding masked.

  Args:
    logits: decoder logits [B, T, V]; logits[:, t] predicts targets[:, t].
    targets: word ids [B, T]; positions t >= lengths[b] are padding and ignored.
    lengths: real tokens per caption [B], int.
    reduction: 'token_mean' (default, ref code): the mean over all real tokens of the
      batch, the form lambda = 20 goes with; 'sentence_sum' (paper Eq. 8): the sum
      over each caption's tokens, averaged over the batch.

  Returns:
    The scalar loss.
  """
  if reduction not in _REDUCTIONS:
    raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')
  _check_ndim('logits', logits, 3, '[B, T, V]')
  _check_ndim('targets', targets, 2, '[B, T]')
  _check_ndim('lengths', lengths, 1, '[B]')
  if jnp.shape(logits)[:2] != jnp.shape(targets):
    raise ValueError(f'logits {jnp.shape(logits)} do not match targets '
                     f'{jnp.shape(targets)} in [B, T]')
  _check_batch([('targets', targets), ('lengths', lengths)])

  t = targets.shape[1]
  mask = jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]  # [B, T]
  log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  # A padding id outside the vocabulary gathers NaN; the mask drops it, gradient too.
  nll = jnp.where(mask, nll, 0.0)
  if reduction == 'token_mean':
    return jnp.sum(nll) / jnp.maximum(jnp.sum(mask), 1)
  return jnp.mean(jnp.sum(nll, axis=1))


def caption_target_lengths(lengths: jax.Array, max_len: int,
                           end_token: bool) -> jax.Array:
  """Caption positions scored by the STREAM loss.

  With `end_token`, each caption also gets the target <end> (id 0, the padding
  right after its last word) when it fits in `max_len`, so the captioner learns
  where to stop and redescriptions end by themselves. The reference never
  scores <end> (its decoder always runs to the maximum length); ours does when
  `config.loss.stream_end_token`, in STREAM pretraining and in the GAN loss alike.
  """
  lengths = jnp.asarray(lengths)
  return jnp.minimum(lengths + 1, max_len) if end_token else lengths


def generator_loss(
    adv_losses: Sequence[jax.Array],
    caption_ce: jax.Array,
    kl: jax.Array,
    stream_weight: float,
    kl_weight: float,
    color: jax.Array | None = None,
    color_weight: float = 0.0,
    lower_caption_ce: Sequence[jax.Array] = (),
    lower_stream_weight: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total generator loss: paper Eq. 9 plus the reference's KL term.

  L_G = sum_i L_G_i + stream_weight * L_stream + kl_weight * KL
        [+ color_weight * colour consistency, when `color` is given]
        [+ lower_stream_weight * sum_j L_stream(lower stage j), when given].

  Args:
    adv_losses: per-stage adversarial losses L_G_i (scalars), e.g. from
      `generator_adversarial_loss`.
    caption_ce: STREAM loss L_stream (scalar), from `caption_loss`.
    kl: conditioning-augmentation KL (scalar), from `kl_loss`.
    stream_weight: lambda (paper 20; ref YAML 10).
    kl_weight: KL weight (ref 1; not in the paper).
    color: optional colour consistency of the stages (`color_consistency`).
    color_weight: its weight (not in the paper or the reference).
    lower_caption_ce: STREAM losses of lower stages' (upsampled) images.
    lower_stream_weight: their weight (not in the paper or the reference).

  Returns:
    (total, aux): the scalar loss; aux holds 'adv' (sum of the stage losses),
    'caption_ce', 'kl', and the weighted terms 'weighted_stream', 'weighted_kl';
    with `color`, also 'color_consistency' and 'weighted_color'; with
    `lower_caption_ce`, also 'weighted_lower_stream'.
  """
  if not adv_losses:
    raise ValueError('adv_losses is empty; pass one adversarial loss per stage')
  adv = sum(jnp.asarray(x, jnp.float32) for x in adv_losses)
  caption_ce = jnp.asarray(caption_ce, jnp.float32)
  kl = jnp.asarray(kl, jnp.float32)
  weighted_stream = stream_weight * caption_ce
  weighted_kl = kl_weight * kl
  total = adv + weighted_stream + weighted_kl
  aux = {'adv': adv, 'caption_ce': caption_ce, 'kl': kl,
         'weighted_stream': weighted_stream, 'weighted_kl': weighted_kl}
  if color is not None:
    aux['color_consistency'] = jnp.asarray(color, jnp.float32)
    aux['weighted_color'] = color_weight * aux['color_consistency']
    total = total + aux['weighted_color']
  if lower_caption_ce:
    aux['weighted_lower_stream'] = lower_stream_weight * sum(
        jnp.asarray(x, jnp.float32) for x in lower_caption_ce)
    total = total + aux['weighted_lower_stream']
  return total, aux
