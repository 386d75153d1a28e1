"""The classic human-feedback tutorial, on rlhf-gym: teach CartPole by answering "Was the action correct? (0/1)".

The environment below is written the way most RLHF tutorials wrote it, for the old ``gym`` API (before
0.26): ``seed()`` is a method, ``reset()`` returns only the observation, ``step()`` returns
``(obs, reward, done, info)``, the time limit is reported as ``info["TimeLimit.truncated"]`` and
``render(mode=...)`` takes the mode. Nothing in it is changed for rlhf-gym: ``make_env`` sees the old API
and wraps it in :class:`rlhf_gym.envs.OldApiAdapter`, and the evaluative pipeline (a REINFORCE/TAMER/COACH
learner, the terminal teacher, the store with consent and audit log) runs on it. ``gym`` itself is not
needed; the spaces are Gymnasium's, the one part of the API that did not change.

Run it and answer at the prompt (``1`` = the push was right, ``0`` = wrong, ``s`` skip, ``q`` stop and save)::

    python examples/old_gym_tutorial.py --budget 40 --out runs/tutorial
    rlhf-gym evaluate runs/tutorial

The same environment works from the CLI as an entry point:
``rlhf-gym train --env examples/old_gym_tutorial.py:CartPoleEnv --teacher human``.
A good rule of thumb while answering: pushing towards the side the pole is falling to is right.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from gymnasium import spaces


class CartPoleEnv:
    """Cart-pole balancing in the old gym API: +1 per step, done when the pole passes 12 degrees or the cart
    leaves the track, or (as the old ``TimeLimit`` wrapper did) after 200 steps."""

    metadata = {"render.modes": ["rgb_array"]}
    gravity, cart_mass, pole_mass, half_length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_limit, x_limit, max_steps = 12 * 2 * math.pi / 360, 2.4, 200

    def __init__(self) -> None:
        high = np.array([self.x_limit * 2, np.inf, self.theta_limit * 2, np.inf], dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.state = None
        self.steps = 0
        self.seed()

    def seed(self, seed=None):
        self.np_random = np.random.RandomState(seed)
        return [seed]

    def reset(self):
        self.state = self.np_random.uniform(low=-0.05, high=0.05, size=(4,))
        self.steps = 0
        return np.array(self.state, dtype=np.float32)

    def step(self, action):
        assert self.action_space.contains(action), f"{action!r} invalid"
        x, x_dot, theta, theta_dot = self.state
        force = self.force_mag if action == 1 else -self.force_mag
        total_mass = self.cart_mass + self.pole_mass
        pm_l = self.pole_mass * self.half_length
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + pm_l * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.half_length * (4.0 / 3.0 - self.pole_mass * cos**2 / total_mass))
        x_acc = temp - pm_l * theta_acc * cos / total_mass
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * x_acc
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc
        self.state = (x, x_dot, theta, theta_dot)
        self.steps += 1
        fell = bool(abs(x) > self.x_limit or abs(theta) > self.theta_limit)
        timeout = self.steps >= self.max_steps and not fell
        info = {"TimeLimit.truncated": True} if timeout else {}
        return np.array(self.state, dtype=np.float32), 1.0, fell or timeout, info

    def render(self, mode="rgb_array"):
        """A small drawing: the track, the cart (blue) and the pole (brown)."""
        img = np.full((120, 240, 3), 255, np.uint8)
        img[90, :] = 0
        x, _, theta, _ = self.state if self.state is not None else (0, 0, 0, 0)
        cx = int(120 + x / self.x_limit * 100)
        img[82:90, max(cx - 12, 0):min(cx + 12, 240)] = (40, 80, 200)
        for k in range(60):
            px, py = int(cx + k * math.sin(theta)), int(82 - k * math.cos(theta))
            if 0 <= px < 240 and 0 <= py < 120:
                img[py, max(px - 1, 0):px + 2] = (150, 90, 40)
        return img

    def close(self):
        pass


ENV = f"{Path(__file__).resolve()}:CartPoleEnv"
"""The entry point rlhf-gym makes the environment from (this file, this class)."""


def main(argv: list[str] | None = None) -> int:
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=40, help="questions you will be asked")
    p.add_argument("--learner", default="tamer", help="reinforce, tamer or coach")
    p.add_argument("--teacher", default="human", help="human (you, at the terminal) or a simulated teacher")
    p.add_argument("--out", default="runs/old-gym-tutorial")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = TrainConfig(env=ENV, feedback="evaluative", learner=args.learner, teacher=args.teacher, budget=args.budget,
                      seed=args.seed, out=args.out, eval_episodes=10, progress=False).validate()
    result = train(cfg)
    print(f"true return of the trained agent: {result['mean_return']:.1f} +/- {result['std_return']:.1f} "
          f"over {result['episodes']} episodes ({result['feedback_used']} answers used); results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
