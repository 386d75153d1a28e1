"""Behavioural cloning: a supervised policy on the demonstrated (state, action) pairs.

Discrete actions: an MLP's logits trained with cross-entropy; the policy takes the argmax. Continuous
actions: the MLP predicts the action rescaled to [-1, 1] by the action space's bounds, trained with
squared error; the policy clips it back into the bounds. A share of the *episodes* (steps when there are
too few episodes) is held out; training stops when the held-out loss has not improved for ``patience``
epochs and the best weights are kept (early stopping, so a long run cannot over-fit the demonstrations).

The network is built on the CPU (a seed gives the same initial weights everywhere) and trained on the device it
is given, where it stays; the policy then acts there (see :mod:`rlhf_gym.learners.common`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlhf_gym.learners.common import MLP, load_mlp, save_mlp


@dataclass
class BCSettings:
    """Defaults for every task (override with ``--set bc_lr=...`` etc. in the run job).

    Patience is long on purpose: a held-out set of one or two demonstrated episodes gives a noisy loss that
    plateaus for dozens of epochs while the policy still improves; stopping after 15 flat epochs left
    MountainCar-v0, Pendulum-v1 and InvertedPendulum-v5 policies under-fitted (``benchmarks/demonstrations.py``).
    """

    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 2000
    patience: int = 100
    val_frac: float = 0.2
    weight_decay: float = 1e-5

    def __post_init__(self) -> None:
        """Refuse values no fit could use, naming the setting (``--set bc_max_epochs=0`` would train nothing)."""
        import math

        for name in ("lr", "val_frac", "weight_decay"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"bc_{name} must be a finite number, got {getattr(self, name)!r}")
        for name in ("lr", "batch_size", "max_epochs", "patience"):
            if getattr(self, name) <= 0:
                raise ValueError(f"bc_{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.val_frac < 1:
            raise ValueError(f"bc_val_frac must be in [0, 1) (0: no held-out set), got {self.val_frac!r}")
        if self.weight_decay < 0:
            raise ValueError(f"bc_weight_decay must be >= 0, got {self.weight_decay!r}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"bc_hidden must be layer widths >= 1, got {self.hidden!r}")


@dataclass
class BCResult:
    model: MLP
    discrete: bool
    act_low: np.ndarray | None
    act_high: np.ndarray | None
    epochs: int
    best_epoch: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)

    def policy(self) -> Any:
        """The deterministic obs -> action callable of the trained model."""
        if self.discrete:
            from rlhf_gym.learners.common import GreedyPolicy

            return GreedyPolicy(self.model)
        assert self.act_low is not None and self.act_high is not None
        return ContinuousPolicy(self.model, self.act_low, self.act_high)

    def save(self, path: str | Path, **meta: Any) -> Path:
        """Safetensors weights with the architecture and the action bounds in the header."""
        info = {"learner": "bc", "discrete": self.discrete, **meta}
        if not self.discrete:
            assert self.act_low is not None and self.act_high is not None
            info.update(act_low=self.act_low.tolist(), act_high=self.act_high.tolist())
        return save_mlp(self.model, path, info)


class ContinuousPolicy:
    """obs -> the network's action in [-1, 1] mapped back into the action bounds."""

    def __init__(self, model: MLP, low: np.ndarray, high: np.ndarray) -> None:
        self.model, self.low, self.high = model, np.asarray(low, np.float32), np.asarray(high, np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        z = np.clip(self.model.outputs(obs), -1.0, 1.0)
        return (self.low + (z + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)


def load_continuous_policy(run_dir: str | Path, info: dict[str, Any]) -> ContinuousPolicy:
    """Policy loader for ``policy.json`` kind ``torch-mlp-continuous`` (see ``runs.POLICY_LOADERS``)."""
    path = Path(run_dir) / info["path"]
    if not path.exists():
        raise FileNotFoundError(f"policy weights {path} not found")
    model, meta = load_mlp(path)
    return ContinuousPolicy(model, np.asarray(meta["act_low"]), np.asarray(meta["act_high"]))


def _split(n: int, groups: np.ndarray | None, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices: whole episodes held out when there are at least 5, else single steps."""
    if n < 2 or frac <= 0:
        return np.arange(n), np.arange(0)
    if groups is not None and len(np.unique(groups)) >= 5:
        ids = np.unique(groups)
        held = rng.choice(ids, size=max(1, int(round(frac * len(ids)))), replace=False)
        mask = np.isin(groups, held)
        return np.flatnonzero(~mask), np.flatnonzero(mask)
    perm = rng.permutation(n)
    k = max(1, int(round(frac * n)))
    return perm[k:], perm[:k]


def train_bc(obs: np.ndarray, acts: np.ndarray, *, discrete: bool, n_actions: int | None = None,
             act_low: np.ndarray | None = None, act_high: np.ndarray | None = None,
             groups: np.ndarray | None = None, seed: int = 0, settings: BCSettings | None = None,
             init: MLP | None = None, device: torch.device | str | None = None) -> BCResult:
    """Fit a policy to (state, action) pairs.

    Args:
        obs: (N, obs_dim) states; acts: (N,) action indices or (N, act_dim) continuous actions.
        discrete, n_actions: the action space (``n_actions`` for discrete); ``act_low``/``act_high`` the
            bounds of a continuous one.
        groups: episode index of each row, so whole episodes are held out for validation.
        init: continue from this model (DAgger refits on the growing data set); its scaling is refit.
        device: where to train (a resolved device); None: where ``init`` lives, else the CPU.
    """
    st = settings or BCSettings()
    obs = np.asarray(obs, np.float32).reshape(len(obs), -1)
    if len(obs) == 0:
        raise ValueError("behavioural cloning needs at least one demonstrated step")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    if discrete:
        if n_actions is None:
            raise ValueError("n_actions is needed for discrete actions")
        y = torch.as_tensor(np.asarray(acts).astype(np.int64).reshape(-1))
        n_out = int(n_actions)
        low = high = None
    else:
        if act_low is None or act_high is None:
            raise ValueError("act_low and act_high are needed for continuous actions")
        low, high = np.asarray(act_low, np.float32).ravel(), np.asarray(act_high, np.float32).ravel()
        a = np.asarray(acts, np.float32).reshape(len(obs), -1)
        y = torch.as_tensor(np.clip(2.0 * (a - low) / (high - low) - 1.0, -1.0, 1.0))
        n_out = a.shape[1]
    from rlhf_gym.devices import cpu_seed

    if init is None:
        with cpu_seed(seed):
            model = MLP(obs.shape[1], n_out, st.hidden)
    else:
        model = init
    if device is not None:
        model.to(device)
    dev = model.obs_mean.device
    mean, std = obs.mean(0), obs.std(0) + 1e-3
    model.obs_mean.copy_(torch.as_tensor(mean))
    model.obs_std.copy_(torch.as_tensor(std))
    x, y = torch.as_tensor(obs).to(dev), y.to(dev)
    tr, va = _split(len(obs), groups, st.val_frac, rng)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if discrete else nn.MSELoss()
    opt = torch.optim.Adam(model.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    best, best_epoch, best_state = np.inf, 0, None
    res = BCResult(model, discrete, low, high, 0, 0)
    for epoch in range(1, st.max_epochs + 1):
        model.train()
        perm = torch.as_tensor(tr)[torch.randperm(len(tr), generator=gen)].to(dev)
        total = 0.0
        for i in range(0, len(perm), st.batch_size):
            idx = perm[i:i + st.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        res.train_loss.append(total / max(len(tr), 1))
        model.eval()
        with torch.no_grad():
            va_t = torch.as_tensor(va, dtype=torch.long).to(dev)
            val = float(loss_fn(model(x[va_t]), y[va_t])) if len(va) else res.train_loss[-1]
        res.val_loss.append(val)
        res.epochs = epoch
        if val < best - 1e-6:
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= st.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    res.best_epoch = best_epoch
    model.eval()
    return res


#: the SB3 pre-training's own early stopping, as measured in the demonstrations + preferences benchmark rows
#: (it starts RL, which goes on improving the policy, so it needs no long plateau)
PRETRAIN_SETTINGS = BCSettings(max_epochs=200, patience=15)


def pretrain_sb3_policy(algo: Any, obs: np.ndarray, acts: np.ndarray, *, groups: np.ndarray | None = None,
                        seed: int = 0, settings: BCSettings | None = None) -> dict[str, Any]:
    """Behavioural cloning of an SB3 policy in place (PPO or SAC): maximum likelihood of the demonstrated
    actions under its own action distribution, whole episodes held out, early stopping on their loss.

    Used to start RL from the demonstrator's behaviour (``--feedback preference --demos ... --set
    demo_bc=true``). The critic is left as it is. Returns the epochs run, the best epoch and its held-out loss.
    """
    from stable_baselines3 import SAC

    st = settings or PRETRAIN_SETTINGS
    policy = algo.policy
    dev = policy.device  # the demonstrations go where SB3 put the policy (the run's --device)
    obs_t = torch.as_tensor(np.asarray(obs, np.float32).reshape(len(obs), *algo.observation_space.shape)).to(dev)
    acts_np = np.asarray(acts)
    if isinstance(algo, SAC):
        actor = policy.actor
        scaled = torch.as_tensor(policy.scale_action(acts_np.astype(np.float32).reshape(len(obs), -1))).to(dev)
        params = list(actor.parameters())

        def nll(idx: torch.Tensor) -> torch.Tensor:
            mean, log_std, kw = actor.get_action_dist_params(obs_t[idx])
            dist = actor.action_dist.proba_distribution(mean, log_std, **kw)
            return -dist.log_prob(scaled[idx].clamp(-0.999, 0.999)).mean()
    else:
        acts_t = torch.as_tensor(acts_np).to(dev)
        if acts_t.dim() == 1 and algo.action_space.shape:
            acts_t = acts_t[:, None]
        params = [p for n, p in policy.named_parameters() if not n.startswith("value_net")]

        def nll(idx: torch.Tensor) -> torch.Tensor:
            _v, lp, _e = policy.evaluate_actions(obs_t[idx], acts_t[idx])
            return -lp.mean()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    tr, va = _split(len(obs_t), groups, st.val_frac, rng)
    opt = torch.optim.Adam(params, lr=st.lr, weight_decay=st.weight_decay)
    best, best_epoch, best_state, epoch = np.inf, 0, None, 0
    policy.set_training_mode(True)
    for epoch in range(1, st.max_epochs + 1):
        perm = torch.as_tensor(tr)[torch.randperm(len(tr), generator=gen)].to(dev)
        for i in range(0, len(perm), st.batch_size):
            loss = nll(perm[i:i + st.batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = float(nll(torch.as_tensor(va if len(va) else tr).to(dev)))
        if val < best - 1e-6:
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        elif epoch - best_epoch >= st.patience:
            break
    if best_state is not None:
        policy.load_state_dict(best_state)
    policy.set_training_mode(False)
    return {"epochs": epoch, "best_epoch": best_epoch, "val_nll": float(best)}
