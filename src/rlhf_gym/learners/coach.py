"""COACH: feedback as the advantage in a policy-gradient (actor) update, with eligibility traces.

MacGlashan et al. observed that people's feedback depends on the agent's current policy, much like an
advantage A(s, a), so COACH uses it where an actor-critic uses the critic's advantage:
``theta += lr * f * e`` with an eligibility trace ``e = sum_k lambda^(t-k) grad log pi(a_k | s_k)`` over
the steps leading up to the judged one. (Deep COACH, Arumugam et al., adds a replay of past windows;
this file follows that.) Here:

* the actor is a softmax MLP; an answer f (+1/-1) is credited to the judged step t and, decayed by
  ``trace_decay`` per step, to the ``trace_length`` steps before it (the eligibility trace). When only the
  time of the answer is known (a delayed teacher), each step of the credit window starts its own trace.
* windows of past answers are replayed after each new answer, with the same clip and good/bad
  balancing as REINFORCE-with-feedback (see that file): without them the on-policy update solves
  CartPole and then collapses during a long episode of near-identical states.
* under ``annotator_weighting`` the advantage an answer supplies is multiplied by its annotator's weight
  along the whole trace (after the good/bad balancing); answers weighted 0 are not replayed.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_gym.learners.common import Batch, Credit, FeedbackLearner, History, Seen
from rlhf_gym.learners.reinforce_feedback import clipped_feedback_pg_loss


class CoachLearner(FeedbackLearner):
    """Actor updated with feedback as advantage along an eligibility trace, with replay of windows."""

    name = "coach"

    def act(self, obs: np.ndarray) -> int:
        logits = self.model.outputs(obs).astype(np.float64)
        p = np.exp(logits - logits.max())
        return int(self.rng.choice(self.n_actions, p=p / p.sum()))

    def credit(self, value: float, judged: Seen | None, answer_step: int, history: History) -> Credit | None:
        base = super().credit(value, judged, answer_step, history)
        if base is None:
            return None
        # each credited step t starts a trace over t, t-1, ..., weighted lambda^(t-k)
        if judged is not None:
            starts = [(judged, 1.0)]
        else:
            lo, hi = self.s.credit_window
            seen = history.window(answer_step - hi, answer_step - lo)
            if self.s.credit_asked and any(s.asked for s in seen):  # as credit_by_time: the asked steps
                seen = [s for s in seen if s.asked]
            starts = [(s, 1.0 / len(seen)) for s in seen]
        weights: dict[int, float] = {}
        for start, w0 in starts:
            for d in range(self.s.trace_length):
                weights[start.step - d] = weights.get(start.step - d, 0.0) + w0 * self.s.trace_decay ** d
        steps = []
        episode = {start.episode for start, _ in starts}
        for t, w in sorted(weights.items()):
            s = history.get(t)
            if s is not None and s.episode in episode:  # a trace does not reach back into the last episode
                steps.append((s.obs, s.action, w))
        if not steps:  # the judged step is older than the remembered history (a slow web answer)
            return base
        total = sum(w for _, _, w in steps)
        return Credit(value, tuple((o, a, w / total) for o, a, w in steps), answer_step)

    def loss(self, batch: Batch) -> torch.Tensor:
        return clipped_feedback_pg_loss(self.model(batch.obs), batch.act, batch.value, batch.step_scale, self.s.clip,
                                        batch.step_annotator_weight, self.s.label_noise)
