"""What an action number means to a person, per environment (shown on the evaluative and demo pages).

Where an environment's actions are known the page says "push cart left" instead of "action 0";
elsewhere it falls back to "action N" (and, for Atari games, to the game's own action names when the
environment can report them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

#: environment id prefix -> meaning of each discrete action, in action order
ACTION_MEANINGS: dict[str, tuple[str, ...]] = {
    "CartPole": ("push cart left", "push cart right"),
    "MountainCar-": ("accelerate left", "coast", "accelerate right"),
    "Acrobot": ("torque -1 (swing left)", "no torque", "torque +1 (swing right)"),
    "LunarLander": ("do nothing", "fire left engine", "fire main engine", "fire right engine"),
    "FrozenLake": ("move left", "move down", "move right", "move up"),
    "CliffWalking": ("move up", "move right", "move down", "move left"),
    "Taxi": ("move south", "move north", "move east", "move west", "pick up passenger", "drop off passenger"),
    "Blackjack": ("stick", "hit"),
}

#: environment id prefix -> the task in a person's words (shown above a state to label)
TASKS: dict[str, str] = {
    "CartPole": "Keep the pole upright and the cart near the middle of the track.",
    "MountainCar-": "Drive the car up to the flag on the right hill (rock back and forth to gain speed).",
    "Acrobot": "Swing the free end of the two-link arm up above the line.",
    "LunarLander": "Land gently between the flags.",
    "FrozenLake": "Walk to the goal without falling into a hole.",
    "CliffWalking": "Walk to the goal without stepping off the cliff.",
    "Taxi": "Pick the passenger up and drop them off at their destination.",
    "Blackjack": "Beat the dealer without going over 21.",
}

#: keys for playing a demonstration, per environment id prefix: (key, action)
DEMO_KEYS: dict[str, tuple[tuple[str, int], ...]] = {
    "CartPole": (("ArrowLeft", 0), ("ArrowRight", 1)),
    "MountainCar-": (("ArrowLeft", 0), ("ArrowDown", 1), ("ArrowRight", 2)),
    "Acrobot": (("ArrowLeft", 0), ("ArrowDown", 1), ("ArrowRight", 2)),
}


@lru_cache(maxsize=64)
def _ale_meanings(env_id: str) -> tuple[str, ...] | None:
    if not env_id.startswith("ALE/"):
        return None
    try:
        import gymnasium as gym

        env = gym.make(env_id)
        try:
            names = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        finally:
            env.close()
        return tuple(str(n).lower() for n in names)
    except Exception:  # not installed here: the fallback names are used
        return None


def meanings(env_id: str | None) -> tuple[str, ...] | None:
    """The meaning of each action of this environment, when known."""
    if not env_id:
        return None
    for prefix, names in ACTION_MEANINGS.items():
        if env_id.startswith(prefix):
            return names
    return _ale_meanings(env_id)


def task_text(env_id: str | None) -> str:
    """What the task is, in a person's words, when known; else a generic line naming the environment."""
    for prefix, text in TASKS.items():
        if env_id and env_id.startswith(prefix):
            return text
    return f"Choose what the agent should do next in {env_id}." if env_id else ""


def action_meaning(env_id: str | None, action: Any) -> str:
    """A person's words for one action: "push cart left", else "action N" (vectors: their rounded values)."""
    if isinstance(action, int | float) and float(action).is_integer():
        a = int(action)
        names = meanings(env_id)
        if names is not None and 0 <= a < len(names):
            return names[a]
        return f"action {a}"
    if isinstance(action, list | tuple):
        return "action [" + ", ".join(f"{float(x):.2f}" for x in action) + "]"
    return f"action {action}"


def demo_keys(env_id: str, n_actions: int) -> list[dict[str, Any]]:
    """The keys (and buttons) that play each action of a demonstration, with what each action means."""
    for prefix, keys in DEMO_KEYS.items():
        if env_id.startswith(prefix) and all(a < n_actions for _k, a in keys):
            return [{"key": k, "label": action_meaning(env_id, a), "action": a} for k, a in keys]
    return [{"key": str(a), "label": action_meaning(env_id, a), "action": a} for a in range(min(n_actions, 10))]
