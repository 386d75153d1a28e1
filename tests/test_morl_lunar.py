"""mo-lunar-lander-v3 (4 objectives, needs the ``box2d`` and ``morl`` extras): the trade-off loop runs end to end."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("Box2D", reason="mo-lunar-lander-v3 needs the box2d extra (pip install 'rlhf-gym[box2d]')")
pytest.importorskip("mo_gymnasium", reason="needs the morl extra")


def test_tradeoff_job_runs_on_mo_lunar_lander(tmp_path):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import evaluate_run, train

    out = tmp_path / "ll"
    res = train(TrainConfig(env="mo-lunar-lander-v3", feedback="tradeoff", teacher="oracle", budget=4, out=str(out),
                            eval_episodes=1, progress=False,
                            extra={"teacher_weights": "0.4,0.3,0.2,0.1", "n_policies": 2, "policy_timesteps": 256,
                                   "final_timesteps": 0, "outcomes_per_policy": 2, "reference": False}))
    info = json.loads((out / "tradeoff.json").read_text())
    assert len(info["objectives"]) == 4 and len(res["learned_weights"]) == 4
    assert res["feedback_used"] == 4 and (out / "policy.zip").exists() and (out / "front.png").exists()
    ev = evaluate_run(out, episodes=1)
    assert len(ev["objective_returns"]) == 4 and "weights_cosine" in ev
