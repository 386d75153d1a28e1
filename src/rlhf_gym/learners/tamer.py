"""TAMER: learn the teacher's judgement H(s, a) by regression, then act greedily on it.

Knox & Stone's TAMER treats each answer as a sample of a "human reinforcement function" H(s, a) and
acts to maximise it directly (no discounting, no environment reward). Here:

* H is a small MLP with one output per action; an answer becomes a target of +1 (good) or -1 (bad) for
  the (state, action) it judges, and H(s, a) is fitted by weighted least squares.
* Every past answer is kept and replayed (a few minibatch steps after each new answer): TAMER's targets
  do not depend on the current policy, so old answers stay valid, and replay keeps the net from
  forgetting varied early states during a long episode of near-identical ones.
* Credit assignment: when the teacher says which step it judged, that step gets the answer; when only
  the time of the answer is known (a delayed teacher, a person pressing a key while the agent moves),
  the answer is spread uniformly over the steps 1-6 steps before it (``credit_window``), and, as in
  TAMER, the *credit-weighted sum* of H over those steps is regressed on the answer (not each step
  separately, which would teach every step in the window the same label).
* With two actions, "wrong" also says "the other action was right", and "right" says "the other was
  wrong": each answer adds a (half-weight) mirrored target for the other action, in both directions
  (``mirror_bad`` and ``mirror_good``, on by default for TAMER). Mirroring only "wrong" answers failed
  with a teacher wrong 20% of the time: once the agent is good it rarely takes the other action, so that
  action's H was fitted *only* to mirrored +1 targets from the wrong "bad" answers, ended up above the
  taken action's noisy ~0.6, and the greedy policy flipped. Mirroring both ways keeps the two actions'
  targets symmetric. With asking about 5% of steps (more episodes, more varied states per answer) this
  halved the answers CartPole needs (see the README's benchmark).
* As every evaluative learner (the shared defaults), questions go more often to states unlike those asked
  about before (``ask_novelty``): a good policy visits a narrow band of states, and the rare ones (a cart
  drifting towards the track's end) otherwise get almost no answers; and weight decay (``weight_decay=1``)
  keeps H from memorising a noisy teacher's wrong answers. With a 20%-wrong teacher TAMER stayed solved
  over the 1,000 answers after its solve on 6 of 10 seeds without them and 10 of 10 with both.
* Acts greedily on H with a little exploration (``epsilon``).
* Under ``annotator_weighting`` each answer's squared error is weighted by its annotator's weight (a
  weighted mean, as the preference loop's Bradley-Terry loss), so a flagged annotator's answer pulls H
  towards its target with that fraction of an answer's weight; at weight 0 it is not replayed at all.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_gym.learners.common import Batch, Credit, FeedbackLearner


class TamerLearner(FeedbackLearner):
    """H(s, a) regression on feedback with replay and a credit window; greedy acting."""

    name = "tamer"
    defaults = {"ask_rate": 0.05, "mirror_bad": True, "mirror_good": True}

    def act(self, obs: np.ndarray) -> int:
        if self.rng.random() < self.s.epsilon:
            return int(self.rng.integers(self.n_actions))
        return self.greedy(obs)

    def replay_records(self, c: Credit) -> list[Credit]:
        records = [c]
        if self.n_actions == 2 and ((c.value < 0 and self.s.mirror_bad) or (c.value > 0 and self.s.mirror_good)):  # "a was wrong" also says "the other action was right"
            records.append(Credit(-c.value, tuple((o, 1 - a, w) for o, a, w in c.steps), c.answer_step,
                                  scale=0.5 * c.scale))
        return records

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.model(batch.obs).gather(1, batch.act[:, None]).squeeze(1)
        if self.s.label_noise > 0:
            return noisy_answer_nll(h, batch, self.s.label_noise)
        post = credit_posterior(h.detach(), batch)
        per_group = torch.zeros_like(batch.group_value).index_add(0, batch.group, post * (h - batch.value) ** 2)
        w = batch.group_scale * batch.group_annotator_weight  # weighted least squares, as the preference loss
        return (w * per_group).sum() / w.sum()


def credit_posterior(h: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Which step of its window did each answer judge? The prior credit reweighted by how well each step
    explains the answer under the current H (a "bad" answer in a window of good steps goes to the one H
    thinks was bad). Sums to 1 within each answer; a one-step answer keeps weight 1.
    """
    p_good = 0.1 + 0.8 * (h.clamp(-1, 1) + 1) / 2
    lik = batch.weight * torch.where(batch.value > 0, p_good, 1 - p_good)
    total = torch.zeros_like(batch.group_value).index_add(0, batch.group, lik)
    return lik / total[batch.group]


def noisy_answer_nll(h: torch.Tensor, batch: Batch, noise: float) -> torch.Tensor:
    """Negative log-likelihood of the answers when each is right with probability ``1 - noise``.

    H(s, a) is the log-odds that a is right in s: P(answer "good") = noise + (1 - 2 noise) sigmoid(H). A
    delayed answer's likelihood is the credit-weighted mixture over the steps of its window (its gradient
    re-weights each step by how well it explains the answer, as :func:`credit_posterior` does). Unlike the
    squared error, a contradicting answer's pull on a confident H fades (its likelihood cannot drop below
    ``noise``), so one wrong answer cannot flip a well-supported action.
    """
    p_good = noise + (1 - 2 * noise) * torch.sigmoid(h)
    lik = batch.weight * torch.where(batch.value > 0, p_good, 1 - p_good)
    per_group = torch.zeros_like(batch.group_value).index_add(0, batch.group, lik)
    w = batch.group_scale * batch.group_annotator_weight
    return -(w * per_group.clamp_min(1e-12).log()).sum() / w.sum()
