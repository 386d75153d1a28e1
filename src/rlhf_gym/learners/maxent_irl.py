"""Maximum-entropy inverse RL on a transition table (Ziebart et al. 2008), exactly: no sampling.

For tasks that expose their dynamics as a table (Gymnasium's toy-text tasks: ``env.unwrapped.P[s][a]`` is
a list of ``(prob, next_state, reward, done)``), the reward is one number per state, paid on entering it.
Each iteration runs soft value iteration under the current reward (``Q(s,a) = sum_s' T(s,a,s') [r(s') +
gamma (1 - done) V(s')]``, ``V = logsumexp_a Q``), propagates the soft policy's discounted state-visitation
from the demonstrations' start states, and moves the reward along the gradient of the demonstrations'
log-likelihood: expert visitation minus the policy's (minus a small L2 penalty). Ending an episode leads
to the absorbing state, which pays nothing under every reward, so the reward of the states where episodes
end (goal or hole) is learned like any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TabularMDP:
    """Dense tables: ``T[s, a, s']`` probabilities, ``done[s, a, s']`` episode ends, true ``R[s, a, s']``."""

    T: np.ndarray
    done: np.ndarray
    R: np.ndarray

    @property
    def n_states(self) -> int:
        return self.T.shape[0]

    @property
    def n_actions(self) -> int:
        return self.T.shape[1]


def tabular_mdp(env: Any) -> TabularMDP:
    """The tables of an environment exposing ``unwrapped.P`` (FrozenLake, Taxi, CliffWalking...)."""
    P = getattr(env.unwrapped, "P", None)
    if not isinstance(P, dict):
        raise ValueError(f"{env.spec.id if env.spec else env} exposes no transition table (env.unwrapped.P); "
                         "maxent-irl needs a tabular task such as FrozenLake-v1")
    nS, nA = len(P), len(P[0])
    T = np.zeros((nS, nA, nS))
    done = np.zeros((nS, nA, nS), bool)
    R = np.zeros((nS, nA, nS))
    for s in range(nS):
        for a in range(nA):
            for prob, s2, r, d in P[s][a]:
                T[s, a, s2] += prob
                done[s, a, s2] |= bool(d)
                R[s, a, s2] = r
    return TabularMDP(T, done, R)


def soft_q(mdp: TabularMDP, reward: np.ndarray, gamma: float = 0.99, iters: int = 1000, tol: float = 1e-8) -> np.ndarray:
    """Soft (maximum-entropy) Q-values under a per-state reward paid on entering the state."""
    cont = gamma * (1.0 - mdp.done)
    V = np.zeros(mdp.n_states)
    for _ in range(iters):
        Q = np.einsum("sat,sat->sa", mdp.T, reward[None, None, :] + cont * V[None, None, :])
        m = Q.max(1)
        V_new = m + np.log(np.exp(Q - m[:, None]).sum(1))
        if np.max(np.abs(V_new - V)) < tol:
            V = V_new
            break
        V = V_new
    return np.einsum("sat,sat->sa", mdp.T, reward[None, None, :] + cont * V[None, None, :])


def greedy_q(mdp: TabularMDP, reward_sas: np.ndarray, gamma: float = 0.99, iters: int = 2000,
             tol: float = 1e-10) -> np.ndarray:
    """Ordinary (hard) Q-values for a reward on transitions ``reward_sas[s, a, s']``."""
    cont = gamma * (1.0 - mdp.done)
    V = np.zeros(mdp.n_states)
    for _ in range(iters):
        Q = np.einsum("sat,sat->sa", mdp.T, reward_sas + cont * V[None, None, :])
        V_new = Q.max(1)
        if np.max(np.abs(V_new - V)) < tol:
            return Q
        V = V_new
    return Q


def optimal_policy(mdp: TabularMDP, reward: np.ndarray | None = None, gamma: float = 0.99) -> np.ndarray:
    """The optimal action of every state for a per-state ``reward`` (default: the task's true reward)."""
    r = mdp.R if reward is None else np.broadcast_to(np.asarray(reward)[None, None, :], mdp.T.shape)
    Q = greedy_q(mdp, r, gamma)
    return np.argmax(Q + 1e-9 * np.arange(mdp.n_actions)[::-1], axis=1)  # ties: lowest action


def visitation(mdp: TabularMDP, policy: np.ndarray, start: np.ndarray, gamma: float, horizon: int) -> np.ndarray:
    """Discounted expected number of times each state is *entered* (``policy[s, a]`` probabilities)."""
    d = start.copy()
    out = np.zeros(mdp.n_states)
    for t in range(horizon):
        flow = np.einsum("s,sa,sat->sat", d, policy, mdp.T)
        out += gamma ** t * flow.sum((0, 1))
        d = (flow * (1.0 - mdp.done)).sum((0, 1))
        if d.sum() < 1e-10:
            break
    return out


@dataclass
class MaxEntResult:
    reward: np.ndarray
    policy: np.ndarray
    """Optimal action per state under the recovered reward."""
    history: list[float] = field(default_factory=list)
    """Size of the visitation gap (L1) per iteration."""


def maxent_irl(mdp: TabularMDP, demos: Sequence[tuple[Sequence[int], Sequence[int]]], *, gamma: float = 0.99,
               iters: int = 200, lr: float = 0.5, l2: float = 0.01, horizon: int | None = None) -> MaxEntResult:
    """Recover a per-state reward from demonstrated state sequences.

    Args:
        mdp: the task's tables (:func:`tabular_mdp`).
        demos: each episode as ``(states, actions)`` with one more state than actions.
        horizon: steps of visitation propagated (default: the longest demonstration x 2, at least 50).
    """
    if not demos:
        raise ValueError("maximum-entropy IRL needs at least one demonstration")
    nS = mdp.n_states
    start = np.zeros(nS)
    mu_e = np.zeros(nS)
    longest = 1
    for states, acts in demos:
        states = np.asarray(states, int)
        if len(states) != len(acts) + 1:
            raise ValueError("each demonstration needs one more state than actions")
        start[states[0]] += 1
        for t, s2 in enumerate(states[1:]):
            mu_e[s2] += gamma ** t
        longest = max(longest, len(acts))
    start /= len(demos)
    mu_e /= len(demos)
    H = horizon or max(50, 2 * longest)
    r = np.zeros(nS)
    m = np.zeros(nS)
    v = np.zeros(nS)
    hist = []
    for k in range(1, iters + 1):  # Adam on the (concave) log-likelihood
        Q = soft_q(mdp, r, gamma)
        pi = np.exp(Q - Q.max(1, keepdims=True))
        pi /= pi.sum(1, keepdims=True)
        mu = visitation(mdp, pi, start, gamma, H)
        g = mu_e - mu - l2 * r
        hist.append(float(np.abs(mu_e - mu).sum()))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        r = r + lr * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
    return MaxEntResult(r, optimal_policy(mdp, r, gamma), hist)


# -- saving, loading, plotting ---------------------------------------------------------------------------
class TablePolicy:
    """obs (a state index) -> the table's action."""

    def __init__(self, actions: Sequence[int]) -> None:
        self.actions = np.asarray(actions, int)

    def __call__(self, obs: Any) -> int:
        return int(self.actions[int(np.asarray(obs).item())])


def save_tabular(path: str | Path, policy: np.ndarray, reward: np.ndarray, **meta: Any) -> Path:
    """JSON (no pickle): the action per state and the recovered reward per state."""
    path = Path(path)
    path.write_text(json.dumps({"format": "rlhf-gym-tabular-v1", "actions": np.asarray(policy).tolist(),
                                "reward": np.asarray(reward).tolist(), **meta}, indent=1) + "\n")
    return path


def load_tabular_policy(run_dir: str | Path, info: dict[str, Any]) -> TablePolicy:
    """Policy loader for ``policy.json`` kind ``tabular`` (see ``runs.POLICY_LOADERS``)."""
    path = Path(run_dir) / info["path"]
    if not path.exists():
        raise FileNotFoundError(f"policy table {path} not found")
    d = json.loads(path.read_text())
    if d.get("format") != "rlhf-gym-tabular-v1":
        raise ValueError(f"{path} is not an rlhf-gym tabular policy")
    return TablePolicy(d["actions"])


def plot_reward_heatmap(reward: np.ndarray, path: str | Path, shape: tuple[int, int] | None = None,
                        labels: np.ndarray | None = None, title: str = "recovered reward per state") -> Path:
    """A PNG of the per-state reward laid out as the task's grid (``labels``: e.g. FrozenLake's letters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = np.asarray(reward, float)
    if shape is None:
        side = int(round(np.sqrt(len(r))))
        shape = (side, len(r) // side) if side * (len(r) // side) == len(r) else (1, len(r))
    grid = r.reshape(shape)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * shape[1], 0.8 + 0.6 * shape[0]), dpi=110)
    im = ax.imshow(grid, cmap="viridis")
    for i in range(shape[0]):
        for j in range(shape[1]):
            tag = "" if labels is None else str(labels[i, j])
            ax.text(j, i, f"{tag}\n{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
