"""REINFORCE with evaluative feedback, done right (and kept stable).

The policy is a softmax over an MLP's outputs. An answer f (+1 good, -1 bad) about action a in state s
is used as the return in the REINFORCE estimator: the update follows ``f * grad log pi(a | s)`` for the
state *the action was taken in* (the widely copied example uses the next observation, never compiles
its model and uses Gymnasium's old 4-tuple step API; this one uses the 5-tuple API throughout).

Plain on-policy updates solve CartPole and then collapse (often to pushing one way): during one long
episode every answer is about nearly the same state, and each step pushes the policy further, so it
forgets everything else. Three things keep it stable, all cheap:

1. **Replay of every past answer.** For a fixed (s, a, f) the sign of the gradient does not depend on
   the policy that collected it, so old answers remain valid training signal; each new answer is
   followed by a few minibatch steps over all answers so far.
2. **A trust-region-style clip.** A replayed answer stops pushing once the policy already agrees with
   it: no gradient when ``pi(a|s) > 1 - clip`` for a good answer or ``pi(a|s) < clip`` for a bad one.
   Without it, ``-log pi`` of bad actions grows without bound under replay and swamps everything.
3. **Balancing good and bad answers.** A good policy mostly hears "good"; each minibatch weighs the
   good and the bad answers equally so the rare corrections are not drowned out.

Under ``annotator_weighting`` each answer's term (its feedback used as the return) is multiplied by its
annotator's weight, after the balancing, so a down-weighted annotator's answers push with that fraction
of their force; answers weighted 0 are not replayed.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_gym.learners.common import Batch, FeedbackLearner


def clipped_feedback_pg_loss(logits: torch.Tensor, act: torch.Tensor, val: torch.Tensor, w: torch.Tensor,
                             clip: float, annotator_weight: torch.Tensor | None = None,
                             label_noise: float = 0.0) -> torch.Tensor:
    """``-sum(w * f * log pi(a|s))`` over answers the policy does not yet agree with, good/bad balanced.

    ``annotator_weight`` (per step, 1 unless its annotator is flagged) multiplies each step's term *after*
    the good/bad balancing: balancing by weighted sums would hand a flagged annotator's answers back half
    the minibatch whenever they are the only ones of their sign. ``label_noise`` > 0 also multiplies each
    term by the probability that its answer is right (:func:`answer_reliability`).
    """
    logp = torch.log_softmax(logits, dim=-1).gather(1, act[:, None]).squeeze(1)
    p = logp.exp().detach()
    if label_noise > 0:
        w = w * answer_reliability(p, val, label_noise)
    active = ((val > 0) & (p < 1 - clip)) | ((val < 0) & (p > clip))
    pos, neg = val > 0, val < 0
    bal = torch.where(pos, 0.5 / (w * pos).sum().clamp_min(1e-8), 0.5 / (w * neg).sum().clamp_min(1e-8))
    if not bool(pos.any()) or not bool(neg.any()):
        bal = torch.full_like(w, 1.0 / w.sum().clamp_min(1e-8).item())
    if annotator_weight is not None:
        w = w * annotator_weight
    return -(active * bal * w * val * logp).sum()


def answer_reliability(p: torch.Tensor, val: torch.Tensor, noise: float) -> torch.Tensor:
    """The probability that an answer is right, reading pi(a|s) as the policy's belief that a is right and
    assuming answers are wrong at rate ``noise`` (Bayes' rule).

    A "bad" about an action the policy takes 95% of the time is most likely a mistake (0.17 at noise 0.2),
    so, after the good/bad balancing (which hands the rare "bad" answers half of each minibatch), the
    mistakes of a teacher wrong one time in five no longer push a learned action away.
    """
    agree = torch.where(val > 0, p, 1 - p)
    return (1 - noise) * agree / ((1 - noise) * agree + noise * (1 - agree)).clamp_min(1e-12)


class ReinforceFeedbackLearner(FeedbackLearner):
    """Softmax policy; feedback-weighted log-likelihood gradient, replayed, clipped and balanced."""

    name = "reinforce"

    def act(self, obs: np.ndarray) -> int:
        logits = self.model.outputs(obs).astype(np.float64)
        p = np.exp(logits - logits.max())
        return int(self.rng.choice(self.n_actions, p=p / p.sum()))

    def loss(self, batch: Batch) -> torch.Tensor:
        return clipped_feedback_pg_loss(self.model(batch.obs), batch.act, batch.value, batch.step_scale, self.s.clip,
                                        batch.step_annotator_weight, self.s.label_noise)
