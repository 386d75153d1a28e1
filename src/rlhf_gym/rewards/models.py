"""Learned reward model: an ensemble of small networks over (observation, action) or (observation, next observation).

Every input carries an *absorbing-state indicator*: steps padded past the end of a terminated
episode have their observation/action features zeroed and the flag set, so the absorbing state
learns its own reward (as in Discriminator-Actor-Critic). The reward handed to the RL algorithm is
anchored to that state's reward, ``(r(s, a) - r(absorbing)) / scale``: ending an episode then pays
exactly what the RL algorithm assumes after a ``done`` (nothing), so the model decides whether
ending early is good (reaching a goal) or bad (falling over). Zero-mean normalisation instead would
make half the states pay less than ending, which teaches "fall over" on survival tasks.

Each member's per-step reward is bounded by a ``tanh`` (as in B-Pref/PEBBLE): with a handful of
labels an unbounded network extrapolates huge rewards to states no clip showed (typically just
before a failure), and the policy then rushes there and falls over.

Observations are flat vectors (each member an MLP over normalised features) or images: a 3-D Box,
channel-last ``(H, W, C)`` as Gymnasium's Atari environments give it, or channel-first ``(C, H, W)``.
For images each member is a small strided CNN whose flattened output is concatenated with the action
features and the absorbing flag and fed to the same ``tanh``-bounded MLP head; pixels are scaled by a
fixed ``1 / 255`` (no mean/std statistics), the absorbing state is a black image with its flag set, and
images stay ``uint8`` until a member's forward pass so a batch of clips costs a quarter of the memory.
Image models take ``inputs="obs_act"`` only, and run :meth:`RewardModel.reward` through PyTorch.

Devices: a model is built on the CPU (so a seed gives the same initial weights everywhere) and fitted on the
device it is given (``fit_reward_model(..., device=)``; ``model.to(device)`` works too). Wherever it lives,
:meth:`RewardModel.reward` for flat observations runs in numpy on CPU copies of its weights, refreshed
whenever a weight or statistic changed or the model moved; image models run their CNNs on the model's
device. Saved files always hold CPU tensors; :meth:`RewardModel.load` puts them on the device asked for.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CLIP = 10.0  # normalised inputs are clipped to +-CLIP standard deviations
PIXEL_CHUNK = 1024  # images per forward pass when no gradient is needed (bounds inference memory)


@dataclass
class RewardModelConfig:
    """Shape and size of a reward model; saved as JSON next to the weights."""

    obs_dim: int
    """Flat observation width; 0 for image observations (their shape is ``obs_shape``)."""
    act_dim: int
    """One-hot width for discrete actions, vector width for continuous ones (0 in ``next_obs`` mode)."""
    discrete: bool
    inputs: str = "obs_act"
    """``obs_act`` (reward of taking an action in a state), ``obs_next`` (of a state change) or ``obs`` (of
    being in a state: AIRL's state-only reward, which is what transfers to new dynamics)."""
    hidden: int = 64
    layers: int = 2
    ensemble: int = 3
    act_low: list[float] | None = None
    act_high: list[float] | None = None
    encoder: str = "mlp"
    """``mlp`` for flat observations, ``cnn`` for images (``obs_shape`` then gives their shape)."""
    obs_shape: list[int] | None = None
    """Image shape as the environment gives it, ``[H, W, C]`` or ``[C, H, W]`` (``cnn`` only)."""
    channels_last: bool = True
    """Whether ``obs_shape`` is ``[H, W, C]`` (Gymnasium's Atari) rather than ``[C, H, W]``."""
    pixel_scale: float = 255.0
    """Images are divided by this before the first convolution (255 for ``uint8`` pixels)."""
    conv: list[list[int]] | None = None
    """Convolutions as ``[out_channels, kernel, stride, padding]``; filled in from the image size."""

    def __post_init__(self) -> None:
        if self.inputs not in ("obs_act", "obs_next", "obs"):
            raise ValueError(f"reward model inputs must be 'obs_act', 'obs_next' or 'obs', got {self.inputs!r}")
        if self.ensemble < 1:
            raise ValueError(f"ensemble size must be >= 1, got {self.ensemble}")
        if self.encoder not in ("mlp", "cnn"):
            raise ValueError(f"reward model encoder must be 'mlp' or 'cnn', got {self.encoder!r}")
        if self.encoder == "mlp":
            if self.obs_shape is not None:
                raise ValueError("obs_shape is for image observations: use encoder='cnn'")
            return
        if self.obs_shape is None or len(self.obs_shape) != 3 or min(self.obs_shape) < 1:
            raise ValueError(f"encoder='cnn' needs obs_shape [H, W, C] or [C, H, W], got {self.obs_shape}")
        if self.inputs != "obs_act":
            raise ValueError("image observations support inputs='obs_act' only (a reward of a state change "
                             "between two frames is not implemented)")
        if self.obs_dim != 0:
            raise ValueError(f"image models have no flat observation part: obs_dim must be 0, got {self.obs_dim}")
        self.obs_shape = [int(v) for v in self.obs_shape]
        if self.conv is None:
            h, w = self.image_hw
            self.conv = _default_conv(h, w)

    @property
    def in_dim(self) -> int:
        """Width of a flat feature row; for images, of the part joined to the CNN's output."""
        second = {"obs_act": self.act_dim, "obs_next": self.obs_dim, "obs": 0}[self.inputs]
        return self.obs_dim + second + 1  # + absorbing flag

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) of an image observation."""
        assert self.obs_shape is not None
        h, w = self.obs_shape[:2] if self.channels_last else self.obs_shape[1:]
        return int(h), int(w)

    @property
    def image_channels(self) -> int:
        assert self.obs_shape is not None
        return int(self.obs_shape[-1] if self.channels_last else self.obs_shape[0])


def _default_conv(h: int, w: int) -> list[list[int]]:
    """Three strided convolutions: Nature-CNN's geometry with half its channels for Atari-sized frames,
    3x3 kernels for small images (where an 8x8 kernel would see the whole picture at once)."""
    if min(h, w) >= 36:
        return [[16, 8, 4, 0], [32, 4, 2, 0], [32, 3, 1, 0]]
    return [[16, 3, 2, 1], [32, 3, 2, 1], [32, 3, 1, 1]]


@dataclass(frozen=True)
class PixelFeatures:
    """Inputs of an image model for a batch of steps with any leading shape ``B``: the images
    (``B + obs_shape``, kept in their own dtype, usually ``uint8``) and the flat part (``B + (in_dim,)``:
    action features and the absorbing flag). Indexing indexes both, as a tensor's would."""

    img: torch.Tensor
    vec: torch.Tensor

    def __getitem__(self, idx: Any) -> PixelFeatures:
        return PixelFeatures(self.img[idx], self.vec[idx])

    def __len__(self) -> int:
        return int(self.vec.shape[0])

    def to(self, device: torch.device | str) -> PixelFeatures:
        """Both parts on ``device`` (images keep their dtype)."""
        return PixelFeatures(self.img.to(device), self.vec.to(device))


Features = torch.Tensor | PixelFeatures  # what a member's forward takes


class PixelMember(nn.Module):
    """One ensemble member for images: strided convolutions, flattened, joined to the action features
    and absorbing flag, then the same ``tanh``-bounded MLP head as a flat member."""

    def __init__(self, cfg: RewardModelConfig) -> None:
        super().__init__()
        assert cfg.conv is not None
        self.channels_last, self.inv_scale = cfg.channels_last, 1.0 / float(cfg.pixel_scale)
        self.obs_shape = tuple(cfg.obs_shape or ())
        mods: list[nn.Module] = []
        c = cfg.image_channels
        for out, kernel, stride, pad in cfg.conv:
            mods += [nn.Conv2d(c, out, kernel, stride, pad), nn.LeakyReLU()]
            c = out
        mods.append(nn.Flatten())
        self.encoder = nn.Sequential(*mods)
        with torch.no_grad():
            h, w = cfg.image_hw
            try:
                flat = int(self.encoder(torch.zeros(1, cfg.image_channels, h, w)).shape[1])
            except RuntimeError as e:
                raise ValueError(f"image {cfg.obs_shape} is too small for the convolutions {cfg.conv}") from e
        self.head = _mlp(flat + cfg.in_dim, cfg.hidden, cfg.layers)

    def forward(self, x: PixelFeatures) -> torch.Tensor:
        """Per-step reward of shape ``B + (1,)``. Without a gradient, images go through in chunks."""
        lead = x.vec.shape[:-1]
        img, vec = x.img.reshape(-1, *self.obs_shape), x.vec.reshape(-1, x.vec.shape[-1])
        if torch.is_grad_enabled() or len(img) <= PIXEL_CHUNK:
            out = self._rows(img, vec)
        else:
            out = torch.cat([self._rows(img[i:i + PIXEL_CHUNK], vec[i:i + PIXEL_CHUNK])
                             for i in range(0, len(img), PIXEL_CHUNK)])
        return out.reshape(*lead, 1)

    def _rows(self, img: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        z = img.to(torch.float32) * self.inv_scale
        if self.channels_last:
            z = z.permute(0, 3, 1, 2)
        return self.head(torch.cat([self.encoder(z), vec], -1))


def _mlp(in_dim: int, hidden: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.LeakyReLU()]
        d = hidden
    mods += [nn.Linear(d, 1), nn.Tanh()]  # bounded per-step reward: no state can pay without limit
    return nn.Sequential(*mods)


def _clip(x: np.ndarray) -> np.ndarray:
    """``x`` clipped to +-CLIP (``np.clip`` costs several times more on the small arrays of one step)."""
    return np.minimum(np.maximum(x, -CLIP), CLIP)


def _stacked_layers(members: nn.ModuleList) -> list[tuple[np.ndarray, np.ndarray, str, float]] | None:
    """The ensemble as one wide network: per layer a (K*in, K*out) weight that is block-diagonal past
    the first layer, its bias, and the activation that follows. None if a member is not the plain
    Linear/LeakyReLU/Tanh stack :func:`_mlp` builds (an image model's members never are)."""
    if not all(isinstance(seq, nn.Sequential) for seq in members):
        return None
    per_member: list[list[tuple[np.ndarray, np.ndarray, str, float]]] = []
    for seq in members:
        layers: list[tuple[np.ndarray, np.ndarray, str, float]] = []
        for mod in seq:  # type: ignore[attr-defined]
            if isinstance(mod, nn.Linear):
                layers.append((mod.weight.detach().cpu().numpy().T.copy(), mod.bias.detach().cpu().numpy().copy(),
                               "", 0.0))
            elif isinstance(mod, nn.LeakyReLU | nn.Tanh) and layers and not layers[-1][2]:
                w, b, _, _ = layers[-1]
                act = "leaky" if isinstance(mod, nn.LeakyReLU) else "tanh"
                layers[-1] = (w, b, act, float(getattr(mod, "negative_slope", 0.0)))
            else:
                return None
        per_member.append(layers)
    out = []
    for li in range(len(per_member[0])):
        ws = [m[li][0] for m in per_member]
        w = np.concatenate(ws, axis=1) if li == 0 else _block_diag(ws)
        out.append((w, np.concatenate([m[li][1] for m in per_member]), per_member[0][li][2], per_member[0][li][3]))
    return out


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    rows, cols = sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols), np.float32)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


class RewardModel(nn.Module):
    """Ensemble reward model with input normalisation and an absorbing-anchored output scale.

    Use :meth:`reward` for inference (numpy in, numpy out). Training lives in
    :mod:`rlhf_gym.rewards.training`. Members are MLPs over flat feature rows, or
    :class:`PixelMember` CNNs for image observations (``cfg.encoder == "cnn"``).
    """

    def __init__(self, cfg: RewardModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        from rlhf_gym.devices import cpu_seed

        with cpu_seed(seed):  # built on the CPU: the same initial weights on every machine
            if cfg.encoder == "cnn":
                self.members = nn.ModuleList([PixelMember(cfg) for _ in range(cfg.ensemble)])
            else:
                self.members = nn.ModuleList([_mlp(cfg.in_dim, cfg.hidden, cfg.layers) for _ in range(cfg.ensemble)])
        self.register_buffer("obs_mean", torch.zeros(cfg.obs_dim))
        self.register_buffer("obs_std", torch.ones(cfg.obs_dim))
        # output normalisation: reward = (raw - anchor) / scale; anchor is r(absorbing) once seen
        self.register_buffer("anchor", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("anchored_to_absorbing", torch.zeros((), dtype=torch.bool))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def for_spaces(cls, obs_space: Any, act_space: Any, seed: int = 0, **kw: Any) -> RewardModel:
        """A model sized for Gymnasium spaces: a flat Box (MLP members) or a 3-D image Box (CNN
        members, ``(H, W, C)`` or ``(C, H, W)``; ``channels_last=`` overrides the guess) observation
        space; Discrete or Box actions. ``kw`` are further :class:`RewardModelConfig` fields."""
        import gymnasium as gym

        shape = getattr(obs_space, "shape", None) or ()
        if not isinstance(obs_space, gym.spaces.Box) or len(shape) not in (1, 3):
            raise ValueError(f"reward model needs a flat Box (vector) or a 3-D Box (image, (H, W, C) or "
                             f"(C, H, W)) observation space, got {obs_space} (grayscale frames: keep a "
                             "channel axis, e.g. GrayscaleObservation(env, keep_dim=True))")
        image = len(shape) == 3
        encoder = kw.pop("encoder", "cnn" if image else "mlp")
        if encoder != ("cnn" if image else "mlp"):
            raise ValueError(f"encoder={encoder!r} does not fit observations of shape {shape}: "
                             "images need 'cnn', flat vectors 'mlp'")
        if image:
            channels_last = kw.pop("channels_last", None)
            if channels_last is None:
                channels_last = _guess_channels_last(shape)
            kw.update(encoder="cnn", obs_shape=list(shape), channels_last=bool(channels_last),
                      pixel_scale=kw.get("pixel_scale", _pixel_scale(obs_space)))
        discrete = isinstance(act_space, gym.spaces.Discrete)
        if discrete:
            act_dim, lo, hi = int(act_space.n), None, None
        elif isinstance(act_space, gym.spaces.Box):
            act_dim = int(np.prod(act_space.shape))
            lo, hi = act_space.low.reshape(-1).tolist(), act_space.high.reshape(-1).tolist()
        else:
            raise ValueError(f"reward model supports Discrete or Box actions, got {act_space}")
        if kw.get("inputs") == "obs_next":
            act_dim = 0 if not discrete else act_dim
        cfg = RewardModelConfig(obs_dim=0 if image else int(obs_space.shape[0]), act_dim=act_dim,
                                discrete=discrete, act_low=lo, act_high=hi, **kw)
        return cls(cfg, seed=seed)

    @property
    def pixels(self) -> bool:
        """Whether observations are images (CNN members)."""
        return self.cfg.encoder == "cnn"

    @property
    def device(self) -> torch.device:
        """Where the model's weights live (the CPU unless it was moved or fitted elsewhere)."""
        return self.anchor.device

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> RewardModel:
        """Moving or casting (``.to``, ``.cuda``, ``.cpu``) makes new tensors: the numpy copies are rebuilt."""
        self.__dict__.pop("_np_tensors", None)
        self.__dict__.pop("_np_cache", None)
        return super()._apply(fn, *args, **kwargs)

    # -- features --------------------------------------------------------------------------------
    def fit_input_normalisation(self, obs: np.ndarray) -> None:
        """Set observation mean/std from data (called once, before the first training). Images keep
        their fixed ``1 / pixel_scale`` scaling: per-pixel statistics would make a static background
        pixel that flickers once look enormous."""
        if self.pixels:
            self.fitted.fill_(True)
            return
        o = np.asarray(obs, np.float64).reshape(-1, self.cfg.obs_dim)
        if len(o) == 0:
            return
        self.obs_mean.copy_(torch.as_tensor(o.mean(0), dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.maximum(o.std(0), 1e-3), dtype=torch.float32))
        self.fitted.fill_(True)

    def renormalise_inputs(self, obs: np.ndarray) -> None:
        """Refit the observation mean/std on ``obs`` *without changing the function*: each member's first
        layer is rewritten so its output on every input inside the old clipping range, and on the absorbing
        state, is what it was (the new statistics only widen what the network can tell apart).

        Why: statistics fitted once on random-policy states put the states a later policy reaches (a CartPole
        cart far from the centre: 25 standard deviations of the random policy's ``x``) at the clip, where the
        network extrapolates; measured there, a drifting cart was paid the model's highest reward. Images keep
        their fixed scaling."""
        if self.pixels or not bool(self.fitted):
            self.fit_input_normalisation(obs)
            return
        o = np.asarray(obs, np.float64).reshape(-1, self.cfg.obs_dim)
        if len(o) == 0:
            return
        m0, s0 = self.obs_mean.detach().cpu().double(), self.obs_std.detach().cpu().double()
        m1 = torch.as_tensor(o.mean(0), dtype=torch.float64)
        s1 = torch.as_tensor(np.maximum(o.std(0), 1e-3), dtype=torch.float64)
        # x_old = (o - m0) / s0 = c + a * x_new with x_new = (o - m1) / s1
        a, c = s1 / s0, (m1 - m0) / s0
        d = self.cfg.obs_dim
        blocks = [slice(0, d)] + ([slice(d, 2 * d)] if self.cfg.inputs == "obs_next" else [])
        with torch.no_grad():
            for member in self.members:
                first = next(mod for mod in member.modules() if isinstance(mod, nn.Linear))
                w = first.weight
                shift = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
                for cols in blocks:
                    wc = w[:, cols].double()
                    shift += wc @ c.to(w.device)
                    w[:, cols] = (wc * a.to(w.device)).to(w.dtype)
                first.bias += shift.to(w.dtype)
                w[:, -1] -= shift.to(w.dtype)  # the absorbing state (obs features zero, flag 1) keeps its output
            self.obs_mean.copy_(m1.float())
            self.obs_std.copy_(s1.float())

    def features_np(self, obs: np.ndarray, acts: np.ndarray | None, next_obs: np.ndarray | None,
                    absorbing: np.ndarray | None) -> np.ndarray:
        """Network input for ``N`` steps as float32 (N, in_dim): normalised obs, action (one-hot or
        scaled to [-1, 1]) or normalised next obs, then the absorbing flag. Flat models only: an image
        model's input is :meth:`pixel_features`. Reads the observation statistics alone (not the cached copy
        of every weight, which a training step would make it rebuild on each call)."""
        mean = self.obs_mean.detach().cpu().numpy()
        std = self.obs_std.detach().cpu().numpy()
        return self._features_np(mean, std, obs, acts, next_obs, absorbing)

    def _features_np(self, mean: np.ndarray, std: np.ndarray, obs: np.ndarray, acts: np.ndarray | None,
                     next_obs: np.ndarray | None, absorbing: np.ndarray | None) -> np.ndarray:
        cfg = self.cfg
        o = np.asarray(obs, np.float32).reshape(-1, cfg.obs_dim)
        n = o.shape[0]
        on = _clip((o - mean) / std)
        if cfg.inputs == "obs_act":
            second = self._action_features(acts, n)
        elif cfg.inputs == "obs":
            second = np.zeros((n, 0), np.float32)
        else:
            if next_obs is None:
                raise ValueError("this reward model needs next observations (inputs='obs_next')")
            nx = np.asarray(next_obs, np.float32).reshape(-1, cfg.obs_dim)
            second = _clip((nx - mean) / std)
        x = np.empty((n, cfg.in_dim), np.float32)
        x[:, :cfg.obs_dim] = on
        x[:, cfg.obs_dim:-1] = second
        x[:, -1] = 0.0
        if absorbing is not None:
            ab = np.asarray(absorbing, bool).reshape(-1)
            x[ab] = 0.0  # the absorbing state has no features but its flag
            x[ab, -1] = 1.0
        return x

    def _action_features(self, acts: np.ndarray | None, n: int) -> np.ndarray:
        """Actions of ``n`` steps as float32 (n, act_dim): one-hot, or scaled to [-1, 1] where bounded."""
        cfg = self.cfg
        if acts is None:
            raise ValueError("this reward model needs actions (inputs='obs_act')")
        if cfg.discrete:
            a = np.asarray(acts).reshape(-1).astype(np.int64)
            a = np.minimum(np.maximum(a, 0), cfg.act_dim - 1)
            return np.eye(cfg.act_dim, dtype=np.float32)[a]
        a = np.asarray(acts, np.float32).reshape(n, cfg.act_dim)
        lo, hi = np.asarray(cfg.act_low, np.float32), np.asarray(cfg.act_high, np.float32)
        finite = np.isfinite(lo) & np.isfinite(hi)
        scaled = np.where(finite, 2 * (a - np.where(finite, lo, 0)) / np.where(finite, hi - lo, 1) - 1, a)
        return _clip(scaled)

    def pixel_features(self, obs: np.ndarray, acts: np.ndarray | None,
                       absorbing: np.ndarray | None) -> PixelFeatures:
        """Image-model input for ``N`` steps: the images (their own dtype, float32 unless ``uint8``;
        black where absorbing) and float32 (N, in_dim) rows of action features and absorbing flag."""
        shape = tuple(self.cfg.obs_shape or ())
        o = np.asarray(obs)
        if o.shape[-3:] != shape:
            raise ValueError(f"this reward model needs images of shape {shape}, got observations of shape {o.shape}")
        o = o.reshape(-1, *shape)
        o = o.copy() if o.dtype == np.uint8 else o.astype(np.float32)  # a copy: Segment arrays are read-only
        n = len(o)
        vec = np.zeros((n, self.cfg.in_dim), np.float32)
        vec[:, :-1] = self._action_features(acts, n)
        if absorbing is not None:
            ab = np.asarray(absorbing, bool).reshape(-1)
            o[ab] = 0  # the absorbing state has no features but its flag
            vec[ab] = 0.0
            vec[ab, -1] = 1.0
        return PixelFeatures(torch.from_numpy(o), torch.from_numpy(vec))

    def features(self, obs: np.ndarray, acts: np.ndarray | None, next_obs: np.ndarray | None,
                 absorbing: np.ndarray | None) -> Features:
        """:meth:`features_np` as a tensor (for training); :meth:`pixel_features` for an image model."""
        if self.pixels:
            return self.pixel_features(obs, acts, absorbing)
        return torch.from_numpy(self.features_np(obs, acts, next_obs, absorbing))

    def member_rewards(self, x: Features) -> torch.Tensor:
        """Raw (un-normalised) per-member rewards for feature rows ``x``: shape (K, N), on the model's device
        (``x`` is moved there if it is elsewhere)."""
        x = x.to(self.device)
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    def absorbing_raw(self) -> torch.Tensor:
        """Each member's raw reward for the absorbing state: shape (K,)."""
        if self.pixels:
            vec = torch.zeros(1, self.cfg.in_dim)
            vec[0, -1] = 1.0
            img = torch.zeros(1, *(self.cfg.obs_shape or ()), dtype=torch.uint8)
            return self.member_rewards(PixelFeatures(img, vec))[:, 0]
        x = torch.zeros(1, self.cfg.in_dim)
        x[0, -1] = 1.0
        return self.member_rewards(x)[:, 0]

    # -- the public inference entry point ---------------------------------------------------------
    @torch.no_grad()
    def reward(self, obs: np.ndarray, acts: np.ndarray | None = None, next_obs: np.ndarray | None = None,
               absorbing: np.ndarray | None = None) -> np.ndarray:
        """Normalised learned reward for ``N`` steps (ensemble mean), as float32 array of shape (N,).

        ``absorbing`` marks padded steps (they get the anchor, i.e. 0 once anchored to the absorbing
        state). This is the only function RL code should call. It runs in numpy on views of the
        current weights: the RL loop calls it once per environment step with a handful of rows, where
        PyTorch's per-operation overhead would cost more than the arithmetic. Image models run their
        CNNs in PyTorch.
        """
        st = self._numpy_state()
        if st.layers is None:
            raw = self.member_rewards(self.features(obs, acts, next_obs, absorbing)).mean(0).cpu().numpy()
        else:
            x = self._features_np(st.mean, st.std, obs, acts, next_obs, absorbing)
            for w, b, act, slope in st.layers:
                x = x @ w + b
                if act == "leaky":
                    x = np.maximum(x, slope * x) if 0 <= slope <= 1 else np.where(x > 0, x, slope * x)
                elif act == "tanh":
                    x = np.tanh(x)
            raw = x.mean(1)
        return ((raw - st.anchor) / st.scale).astype(np.float32)

    def _numpy_state(self) -> _NumpyState:
        """CPU (numpy) copies of what :meth:`reward` reads: the ensemble's weights stacked (None for image
        models), the observation statistics and the output anchor and scale. Rebuilt whenever any of them
        changed (PyTorch bumps a tensor's ``_version`` on every in-place update: optimiser steps, loading,
        ``fill_``) or the model moved (:meth:`_apply`), so they follow the weights on any device; reading a
        GPU model's weights back costs a copy only after they changed, not on every call."""
        tensors = self.__dict__.get("_np_tensors")
        if tensors is None:  # the same tensors until the model moves (loading copies in place)
            tensors = self.__dict__["_np_tensors"] = [*self.parameters(), self.obs_mean, self.obs_std,
                                                      self.anchor, self.scale]
        key = tuple(t._version for t in tensors)
        cached = self.__dict__.get("_np_cache")
        if cached is None or cached[0] != key:
            state = _NumpyState(_stacked_layers(self.members), self.obs_mean.detach().cpu().numpy().copy(),
                                self.obs_std.detach().cpu().numpy().copy(), float(self.anchor), float(self.scale))
            cached = self.__dict__["_np_cache"] = (key, state)
        return cached[1]

    @torch.no_grad()
    def set_output_normalisation(self, obs: np.ndarray, acts: np.ndarray | None, next_obs: np.ndarray | None,
                                 use_absorbing: bool) -> None:
        """Anchor the output to r(absorbing) (or the mean, where episodes never end) and scale to RMS 1.

        ``use_absorbing`` should be True when the labelled data contained absorbing steps, so the
        absorbing reward was learned from labels rather than left at its random initial value.
        """
        x = self.features(obs, acts, next_obs, None)
        raw = self.member_rewards(x).mean(0)
        anchor = self.absorbing_raw().mean() if use_absorbing else raw.mean()
        rms = torch.sqrt(((raw - anchor) ** 2).mean()).clamp_min(1e-6)
        self.anchor.fill_(float(anchor))
        self.scale.fill_(float(rms))
        self.anchored_to_absorbing.fill_(bool(use_absorbing))

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors weights) and ``path.json`` (config). No pickle anywhere."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}  # CPU always
        save_file(tensors, str(path))
        path.with_suffix(".json").write_text(json.dumps({"format": "rlhf-gym-reward-v1", **asdict(self.cfg)},
                                                        indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> RewardModel:
        """Load a model written by :meth:`save`; ``path`` may be the file or a run folder holding one.
        Its weights go to ``device`` (default: the CPU)."""
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():
            path = path / "reward_model.safetensors"
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise FileNotFoundError(f"no reward model at {path} (needs {path.name} and {meta_path.name})")
        meta = json.loads(meta_path.read_text())
        if meta.pop("format", None) != "rlhf-gym-reward-v1":
            raise ValueError(f"{meta_path} is not an rlhf-gym reward model description")
        model = cls(RewardModelConfig(**meta))
        model.load_state_dict(load_file(str(path), device="cpu"))
        if device is not None:
            model.to(device)
        model.eval()
        return model


@dataclass(frozen=True)
class _NumpyState:
    """What :meth:`RewardModel.reward` computes with, as CPU copies (see :meth:`RewardModel._numpy_state`)."""

    layers: list[tuple[np.ndarray, np.ndarray, str, float]] | None
    mean: np.ndarray
    std: np.ndarray
    anchor: float
    scale: float


def _guess_channels_last(shape: tuple[int, ...]) -> bool:
    """Whether an image shape is (H, W, C): its last axis is a handful of channels and its first not."""
    if shape[-1] <= 4:
        return True
    if shape[0] <= 4:
        return False
    raise ValueError(f"cannot tell which axis of the image shape {shape} holds the channels (at most 4 "
                     "expected at one end); pass channels_last=True or False")


def _pixel_scale(space: Any) -> float:
    """What to divide an image by: 255 for ``uint8`` pixels, else the space's upper bound (or 1)."""
    if np.dtype(space.dtype) == np.uint8:
        return 255.0
    high = np.asarray(space.high, np.float64)
    return float(high.max()) if np.all(np.isfinite(high)) and high.max() > 0 else 1.0
