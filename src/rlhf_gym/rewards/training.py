"""Fitting a reward model to clip comparisons (Bradley-Terry), and rebuilding one from the store.

The probability that the left clip is preferred is ``sigmoid(R_left - R_right)`` where ``R`` is the
sum of the model's per-step rewards over the clip. The loss is binary cross-entropy against the
label (1 left, 0 right, 0.5 tie), with label smoothing so that a few contradictory answers cannot
push rewards to infinity. Each ensemble member trains on its own bootstrap resample; the pairs a
member did not see give an out-of-bag accuracy even when there are too few labels for a validation
split, and that accuracy is how an inverted reward (accuracy clearly below chance) is caught.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rlhf_gym.rewards import models
from rlhf_gym.rewards.models import PixelFeatures, RewardModel
from rlhf_gym.types import Feedback, PairQuery, Segment, Trajectory

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

log = logging.getLogger(__name__)


FEW_LABELS = 5
"""Below this many labels a fitted reward model is a rough guess (and may come out inverted): said once."""


class InvertedRewardWarning(UserWarning):
    """Held-out preferences are predicted clearly worse than chance: the learned reward looks inverted."""


@dataclass
class RewardTrainConfig:
    """How a reward model is fitted; the same defaults for every task."""

    lr: float = 3e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.05
    max_steps: int = 400
    """Full-batch gradient steps per member for a fresh model."""
    warm_steps: int = 150
    """Steps per member when continuing from the previous round's weights."""
    patience: int = 40
    """Early stopping: steps without a better validation loss."""
    val_frac: float = 0.2
    min_val: int = 10
    """Labels needed before a validation split is held out (below that, out-of-bag pairs only)."""
    bootstrap: bool = True
    batch_pairs: int = 64
    """Pairs per gradient step once there are more (mini-batches keep a round's cost flat as labels grow)."""
    min_delta: float = 1e-5
    """Early stopping: a validation loss must beat the best by this much to count as better."""
    flat: float = 0.0
    """Weight of a penalty on the variance of each member's per-step reward over unlabelled states (the
    policy's recent rollouts, ``fit_reward_model(unlabelled=...)``): of all rewards that order the labelled
    clips, prefer the one that varies least, so states no label compared are paid alike instead of by
    however the network happens to extrapolate. The absorbing state is not among them. 0: off."""
    flat_rows: int = 512
    """Unlabelled rows the penalty is computed on (evenly spaced over those given)."""


@dataclass
class PairData:
    """Clip comparisons as padded tensors: features (P, 2, L, F), mask (P, 2, L), labels (P,).

    For an image model ``x`` is :class:`PixelFeatures`: images (P, 2, L, *obs_shape), still ``uint8``
    (a float copy of every frame of every clip would cost four times the memory), and (P, 2, L, F) rows.
    """

    x: torch.Tensor | PixelFeatures
    mask: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor | None = None
    """Per-pair loss weight (e.g. a flagged annotator's labels down-weighted); None = all 1."""

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> PairData:
        t = torch.as_tensor(idx, dtype=torch.long).to(self.y.device)
        return PairData(self.x[t], self.mask[t], self.y[t], None if self.w is None else self.w[t])

    def to(self, device: torch.device | str) -> PairData:
        """Every tensor on ``device`` (the model's, for a fit or a prediction)."""
        return PairData(self.x.to(device), self.mask.to(device), self.y.to(device),
                        None if self.w is None else self.w.to(device))


def segment_arrays(segs: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated obs, acts, next_obs, absorbing of ``segs``."""
    return (np.concatenate([s.obs for s in segs]), np.concatenate([s.acts for s in segs]),
            np.concatenate([s.next_obs for s in segs]), np.concatenate([s.absorbing for s in segs]))


def make_pair_data(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]],
                   weights: Sequence[float] | None = None) -> PairData:
    """Featurise ``(left, right, label)`` triples for ``model`` (clips of any lengths are padded), on the
    model's device: built on the CPU, then moved in one go."""
    return _cpu_pair_data(model, pairs, weights).to(model.device)


def _cpu_pair_data(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]],
                   weights: Sequence[float] | None) -> PairData:
    if not pairs:
        f = model.cfg.in_dim
        x0: torch.Tensor | PixelFeatures = torch.zeros(0, 2, 1, f)
        if model.pixels:
            x0 = PixelFeatures(torch.zeros(0, 2, 1, *(model.cfg.obs_shape or ()), dtype=torch.uint8), x0)
        return PairData(x0, torch.zeros(0, 2, 1), torch.zeros(0))
    length = max(max(len(a), len(b)) for a, b, _ in pairs)
    segs = [s for a, b, _ in pairs for s in (a, b)]
    if model.pixels:
        return _pixel_pair_data(model, pairs, segs, length, weights)
    obs, acts, nxt, ab = segment_arrays(segs)
    feats = model.features(obs, acts, nxt, ab)
    x = torch.zeros(len(segs), length, feats.shape[1])
    mask = torch.zeros(len(segs), length)
    i = 0
    for k, s in enumerate(segs):
        n = len(s)
        x[k, :n] = feats[i:i + n]
        mask[k, :n] = 1.0
        i += n
    y, w = _labels_and_weights(pairs, weights)
    return PairData(x.view(len(pairs), 2, length, -1), mask.view(len(pairs), 2, length), y, w)


def _labels_and_weights(pairs: Sequence[tuple[Segment, Segment, float]], weights: Sequence[float] | None,
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    y = torch.tensor([float(v) for _, _, v in pairs], dtype=torch.float32)
    if weights is None:
        return y, None
    if len(weights) != len(pairs):
        raise ValueError(f"{len(weights)} weights for {len(pairs)} pairs")
    return y, torch.tensor([float(v) for v in weights], dtype=torch.float32)


def _pixel_pair_data(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]], segs: list[Segment],
                     length: int, weights: Sequence[float] | None) -> PairData:
    """:func:`make_pair_data` for an image model: each clip is featurised straight into one padded
    ``uint8`` tensor, so no concatenated or float copy of all the frames is ever made."""
    shape = tuple(model.cfg.obs_shape or ())
    dtype = torch.uint8 if segs[0].obs.dtype == np.uint8 else torch.float32  # as pixel_features keeps them
    img = torch.zeros(len(segs), length, *shape, dtype=dtype)
    vec = torch.zeros(len(segs), length, model.cfg.in_dim)
    mask = torch.zeros(len(segs), length)
    for k, s in enumerate(segs):
        f = model.pixel_features(s.obs, s.acts, s.absorbing)
        n = len(s)
        img[k, :n], vec[k, :n], mask[k, :n] = f.img, f.vec, 1.0
    y, w = _labels_and_weights(pairs, weights)
    p = len(pairs)
    x = PixelFeatures(img.view(p, 2, length, *shape), vec.view(p, 2, length, -1))
    return PairData(x, mask.view(p, 2, length), y, w)


def member_logits(member: nn.Module, data: PairData) -> torch.Tensor:
    """Bradley-Terry logit ``R_left - R_right`` of one member for every pair: shape (P,)."""
    r = member(data.x).squeeze(-1) * data.mask  # (P, 2, L)
    ret = r.sum(-1)
    return ret[:, 0] - ret[:, 1]


@torch.no_grad()
def member_preferences(model: RewardModel, pairs: Sequence[tuple[Segment, Segment]]) -> np.ndarray:
    """Each ensemble member's ``P(left better)`` for each pair: shape (K, P). The one way to ask the
    ensemble for a preference (query selection and the diagnostics both use it)."""
    data = make_pair_data(model, [(a, b, 0.5) for a, b in pairs])
    return torch.sigmoid(torch.stack([member_logits(m, data) for m in model.members])).cpu().numpy()


def bradley_terry_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``P(left) = sigmoid(logit)`` against labels in [0, 1] (0.5 = tie).

    Label smoothing pulls every target towards 0.5 by ``label_smoothing``; its gradient with respect
    to the logit is ``sigmoid(logit) - target``. ``weights`` makes it a weighted mean (a down-weighted
    annotator's labels count less).
    """
    target = labels * (1 - label_smoothing) + 0.5 * label_smoothing
    if weights is None:
        return nn.functional.binary_cross_entropy_with_logits(logits, target)
    per = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weights * per).sum() / weights.sum().clamp_min(1e-8)


def preference_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) over non-tie pairs: the sign of the logit against the label."""
    decided = (labels - 0.5).abs() > 1e-6
    if not bool(decided.any()):
        return 0, 0
    pred_left = logits[decided] > 0
    return int((pred_left == (labels[decided] > 0.5)).sum()), int(decided.sum())


def binomial_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


def _loss_backward(member: nn.Module, data: PairData, tc: RewardTrainConfig) -> float:
    """Back-propagate the Bradley-Terry loss of ``data``; returns it. Image data goes through in chunks
    of about ``models.PIXEL_CHUNK`` frames, each chunk's loss weighted by its share of the (weighted)
    mean, so the gradient is the full batch's while only one chunk's activations are alive at a time."""
    n = len(data)
    if not isinstance(data.x, PixelFeatures) or data.mask.numel() <= models.PIXEL_CHUNK:
        loss = bradley_terry_loss(member_logits(member, data), data.y, tc.label_smoothing, data.w)
        loss.backward()
        return float(loss.detach())
    per_chunk = max(1, models.PIXEL_CHUNK // int(data.mask[0].numel()))
    total = float(n if data.w is None else data.w.sum().clamp_min(1e-8))
    out = 0.0
    for i in range(0, n, per_chunk):
        part = data.subset(np.arange(i, min(i + per_chunk, n)))
        share = (len(part) if part.w is None else float(part.w.sum())) / total
        if share == 0.0:
            continue
        loss = bradley_terry_loss(member_logits(member, part), part.y, tc.label_smoothing, part.w) * share
        loss.backward()
        out += float(loss.detach())
    return out


def _fit_member(member: nn.Module, train: PairData, val: PairData | None, steps: int, tc: RewardTrainConfig,
                rng: np.random.Generator, flat_x: torch.Tensor | None = None) -> dict:
    opt = torch.optim.AdamW(member.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    best, best_state, since, done = float("inf"), None, 0, 0
    for _ in range(steps):
        done += 1
        batch = train if len(train) <= tc.batch_pairs else train.subset(rng.choice(len(train), tc.batch_pairs,
                                                                                      replace=False))
        opt.zero_grad()
        loss = _loss_backward(member, batch, tc)
        if flat_x is not None:
            (tc.flat * member(flat_x).squeeze(-1).var()).backward()
        opt.step()
        if val is not None and len(val):
            with torch.no_grad():
                vl = float(bradley_terry_loss(member_logits(member, val), val.y, tc.label_smoothing, val.w))
            if vl < best - tc.min_delta:
                best, since = vl, 0
                best_state = {k: v.clone() for k, v in member.state_dict().items()}
            else:
                since += 1
                if since >= tc.patience:
                    break
    if best_state is not None:
        member.load_state_dict(best_state)
    return {"steps": done, "train_loss": loss}


def fit_reward_model(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]], rng: np.random.Generator,
                     tc: RewardTrainConfig | None = None, warm: bool = False,
                     weights: Sequence[float] | None = None,
                     device: torch.device | str | None = None,
                     unlabelled: Sequence[Trajectory] = ()) -> dict[str, Any]:
    """Fit ``model`` in place on labelled pairs; returns diagnostics.

    ``unlabelled``: episodes whose states the ``tc.flat`` penalty is computed on (ignored when it is 0, and
    for image models).

    ``device`` (a resolved one: ``cpu``, ``cuda``, ``cuda:N``) moves the model there first, and it stays
    there; None fits it where it is. The pairs are featurised on the CPU and moved to the model's device.

    ``warm=True`` continues from the current weights with fewer steps (incremental training between
    rounds); otherwise members train for up to ``tc.max_steps``. Always stops early on the
    validation loss where there is a validation split. ``weights`` (one per pair) weight the loss,
    e.g. from :func:`rlhf_gym.governance.report.training_weights`.
    """
    tc = tc or RewardTrainConfig()
    if device is not None:
        model.to(device)
    n = len(pairs)
    out: dict[str, Any] = {"labels": n, "val_labels": 0, "val_accuracy": None, "oob_accuracy": None,
                           "heldout_accuracy": None, "inverted": False, "warning": None}
    if n == 0:
        out["warning"] = "no labels yet: the reward model is untrained"
        return out
    if not bool(model.fitted):
        real = [] if model.pixels else [s.obs[~s.absorbing] for a, b, _ in pairs for s in (a, b)]  # images: fixed scale
        model.fit_input_normalisation(np.concatenate(real or [np.zeros((0, model.cfg.obs_dim))]))
    data = make_pair_data(model, pairs, weights)
    perm = rng.permutation(n)
    n_val = int(round(n * tc.val_frac)) if n >= tc.min_val else 0
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    val = data.subset(val_idx) if n_val else None
    if n < FEW_LABELS:
        out["warning"] = f"only {n} label(s): the reward model is a rough guess and may even be inverted"
    elif bool(((data.y - 0.5).abs() < 1e-6).all()):
        out["warning"] = ("every label so far is a tie: the teacher saw no difference between the clips (on "
                          "MountainCar, none reaches the goal), so the reward model has nothing to learn from")
    steps = tc.warm_steps if warm else tc.max_steps
    flat_x = _flat_rows(model, unlabelled, tc) if tc.flat > 0 and not model.pixels else None
    oob_correct = oob_count = 0
    member_steps = []
    model.train()
    for member in model.members:
        if tc.bootstrap and len(train_idx) > 1:
            boot = rng.choice(train_idx, size=len(train_idx), replace=True)
            oob = np.setdiff1d(train_idx, boot)
        else:
            boot, oob = train_idx, np.array([], dtype=int)
        info = _fit_member(member, data.subset(boot), val, steps, tc, rng, flat_x)
        member_steps.append(info["steps"])
        if len(oob):
            with torch.no_grad():
                c, k = preference_accuracy(member_logits(member, data.subset(oob)), data.subset(oob).y)
            oob_correct += c
            oob_count += k
    model.eval()
    with torch.no_grad():
        full = torch.stack([member_logits(m, data) for m in model.members]).mean(0)
        tc_, tk = preference_accuracy(full, data.y)
        out["train_accuracy"] = tc_ / tk if tk else None
        out["train_loss"] = float(bradley_terry_loss(full, data.y))
        if val is not None:
            vlog = torch.stack([member_logits(m, val) for m in model.members]).mean(0)
            vc, vk = preference_accuracy(vlog, val.y)
            out["val_labels"] = n_val
            out["val_accuracy"] = vc / vk if vk else None
            out["val_loss"] = float(bradley_terry_loss(vlog, val.y))
        else:
            vc = vk = 0
    out["oob_accuracy"] = oob_correct / oob_count if oob_count else None
    hc, hk = vc + oob_correct, vk + oob_count
    out["heldout_accuracy"] = hc / hk if hk else None
    out["heldout_judgements"] = hk
    out["steps"] = int(np.mean(member_steps))
    # an inverted reward: held-out judgements clearly below chance (one-sided binomial test)
    if looks_inverted(hc, hk):
        out["inverted"] = True
        msg = inverted_message(hc, hk)
        out["warning"] = msg
        warnings.warn(msg, InvertedRewardWarning, stacklevel=2)
        log.warning(msg)
    return out


def _flat_rows(model: RewardModel, trajs: Sequence[Trajectory], tc: RewardTrainConfig) -> torch.Tensor | None:
    """Feature rows of up to ``tc.flat_rows`` real steps of ``trajs``, evenly spaced (no random draw, so
    turning the penalty on changes no other random stream)."""
    if not trajs:
        return None
    obs = np.concatenate([np.asarray(t.obs)[:-1] for t in trajs])
    acts = np.concatenate([np.asarray(t.acts) for t in trajs])
    nxt = np.concatenate([np.asarray(t.obs)[1:] for t in trajs])
    if len(obs) == 0:
        return None
    idx = np.unique(np.linspace(0, len(obs) - 1, min(len(obs), tc.flat_rows)).astype(int))
    x = model.features(obs[idx], acts[idx], nxt[idx], np.zeros(len(idx), bool))
    return x.to(model.device)


def looks_inverted(correct: int, count: int, min_count: int = 5) -> bool:
    """Whether held-out accuracy ``correct / count`` is clearly below chance (one-sided binomial, p < 0.1)."""
    return count >= min_count and correct / count < 0.5 and binomial_cdf(correct, count) < 0.1


def inverted_message(correct: int, count: int) -> str:
    return (f"the learned reward looks INVERTED: it ranks held-out clip pairs correctly only {correct}/{count} "
            f"times ({correct / count:.0%}, well below chance). Too few or contradictory labels? Policies trained "
            "on it may do worse than random.")


def reinitialise(model: RewardModel, seed: int) -> None:
    """Fresh random weights for every member (normalisation statistics are kept). Drawn on the CPU, as a new
    model's are, and copied to wherever the model lives: the same seed gives the same weights on any device."""
    from rlhf_gym.devices import cpu_seed

    device = model.device
    with cpu_seed(seed):
        model.to("cpu")
        for m in model.members:
            for layer in m.modules():
                if isinstance(layer, nn.Linear | nn.Conv2d):
                    layer.reset_parameters()
    model.to(device)


def pairs_from_store(store: FeedbackStore, run_id: str | None = None,
                     annotator_weights: Mapping[str, float] | None = None
                     ) -> tuple[list[tuple[Segment, Segment, float]], list[int], list[float]]:
    """Labelled clip pairs (withdrawn and skipped answers left out), the feedback ids behind them, and
    one loss weight per pair from ``annotator_weights`` (labels of an annotator weighted 0 are left
    out, and so are not in the lineage of a model trained on the result)."""
    triples, ids, weights = [], [], []
    for q, fb in store.labelled_pairs(run_id):
        assert isinstance(q, PairQuery) and q.left is not None and q.right is not None
        if fb.value is None or not 0.0 <= fb.value <= 1.0:
            continue
        w = 1.0 if annotator_weights is None else float(annotator_weights.get(fb.annotator_id, 1.0))
        if w <= 0.0:
            continue
        triples.append((q.left, q.right, float(fb.value)))
        ids.append(int(fb.id))  # type: ignore[arg-type]
        weights.append(w)
    return triples, ids, weights


def labelled_triples(answers: Sequence[tuple[PairQuery, Feedback]]) -> list[tuple[Segment, Segment, float]]:
    """``(left, right, label)`` for answered (non-skipped) pair queries."""
    out = []
    for q, fb in answers:
        if fb.value is not None and q.left is not None and q.right is not None:
            out.append((q.left, q.right, float(fb.value)))
    return out


def normalise_output(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]],
                     extra_segments: Sequence[Segment] = ()) -> None:
    """Anchor and scale the model's output from the states in ``pairs`` (and ``extra_segments``)."""
    segs = [s for a, b, _ in pairs for s in (a, b)] + list(extra_segments)
    if not segs:
        return
    obs, acts, nxt, ab = segment_arrays(segs)
    real = ~ab
    # anchored at the absorbing state wherever the states it is normalised on hold one: with labels and
    # without (the zero-label control gets the same anchored model as the labelled runs)
    use_abs = bool(any(s.absorbing.any() for s in segs))
    model.set_output_normalisation(obs[real], acts[real], nxt[real], use_absorbing=use_abs)


def retrain_from_store(store: FeedbackStore, out_dir: str | Path, run_id: str | None = None, seed: int = 0,
                       env_id: str | None = None, tc: RewardTrainConfig | None = None,
                       model_kwargs: dict[str, Any] | None = None,
                       annotator_weights: Mapping[str, float] | None = None,
                       device: torch.device | str | None = None) -> tuple[str, dict[str, Any]]:
    """Rebuild a reward model from the store alone and record it with its lineage.

    Uses every non-withdrawn, non-skipped pair label (of ``run_id`` if given), trains from scratch,
    writes ``out_dir/reward_model.safetensors`` (+ ``.json``) and records it with
    ``store.record_model`` so the ids of the labels that trained it are its lineage.
    ``annotator_weights`` down-weights (or, at 0, drops) flagged annotators' labels. The fit runs on
    ``device`` (a resolved one; None: the CPU); the saved file holds CPU tensors either way.
    Returns ``(model_id, metrics)``.
    """
    from rlhf_gym.envs import make_env

    pairs, ids, weights = pairs_from_store(store, run_id, annotator_weights)
    if not pairs:
        raise ValueError("the store holds no usable preference labels" + (f" for run {run_id}" if run_id else ""))
    env_id = env_id or pairs[0][0].env_id
    if env_id is None:
        raise ValueError("the stored clips name no environment; pass env_id")
    env = make_env(env_id)
    try:
        model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=seed, **(model_kwargs or {}))
    finally:
        env.close()
    metrics = fit_reward_model(model, pairs, np.random.default_rng(seed), tc,
                               weights=None if annotator_weights is None else weights, device=device)
    normalise_output(model, pairs)
    out = Path(out_dir)
    path = model.save(out / "reward_model.safetensors")
    model_id = store.record_model(path, ids, kind="reward", run_id=run_id)
    metrics.update(model_id=model_id, path=str(path), feedback_ids=len(ids), device=str(model.device))
    return model_id, metrics


@dataclass(frozen=True)
class DemoPair:
    """A synthetic comparison derived from demonstrations (see :func:`ranked_pairs`).

    ``sources`` are the feedback ids of the demonstrations it was derived from (its provenance): a fit uses
    the pair only while every one of them is still in the store, and records them in the model's lineage.
    """

    left: Segment
    right: Segment
    label: float
    sources: tuple[int, ...]


def ranked_pairs(levels: Sequence[Sequence[Trajectory]], n: int, length: int, rng: np.random.Generator,
                 sources: tuple[int, ...] = ()) -> list[DemoPair]:
    """``n`` synthetic comparisons between clips of episodes ranked by level: a clip of level ``i`` is
    preferred over a clip of level ``j > i``. Each pair's two levels are drawn uniformly among the
    non-empty ones; sides are shuffled.

    D-REX (Brown, Goo and Niekum 2019): level 0 are the demonstrations, the next levels the cloned policy
    with more and more random actions, so the ranking needs no labels and reaches states the
    demonstrations never visit (drifting, falling, ending early).
    """
    from rlhf_gym.feedback.selection import sample_segments

    ranked = [list(ts) for ts in levels if ts]
    if len(ranked) < 2 or n <= 0:
        return []
    length = min(length, max(len(t) for ts in ranked for t in ts))
    out = []
    for _ in range(n):
        i, j = sorted(rng.choice(len(ranked), size=2, replace=False))
        better = sample_segments(ranked[i], 1, length, rng)[0]
        worse = sample_segments(ranked[j], 1, length, rng)[0]
        if rng.random() < 0.5:
            out.append(DemoPair(better, worse, 1.0, sources))
        else:
            out.append(DemoPair(worse, better, 0.0, sources))
    return out
