"""The terminal teacher driven by scripted input: valid, invalid, skip, quit, Ctrl-C, consent."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_gym.feedback.terminal import TerminalSource
from rlhf_gym.types import StepQuery


def scripted(answers):
    it = iter(answers)

    def input_fn(prompt: str) -> str:
        a = next(it)
        if isinstance(a, BaseException):
            raise a
        return a

    return input_fn


def make_source(store, answers, consent=True):
    out: list[str] = []
    store.add_annotator("person-1", kind="human")
    run = store.add_run("run-1")
    if consent:  # the store refuses a person's label without a recorded agreement
        store.record_consent("person-1", "v-test", "purpose and consent text", agreed=True)
    src = TerminalSource("person-1", store=store, run_id=run, env_id="CartPole-v1", input_fn=scripted(answers),
                         out=out.append, consent_fn=None if consent is None else (lambda: consent))
    return src, out


def queries(n):
    return [StepQuery.make(np.array([0.1, -0.2, 0.03, 0.4]), i % 2, step=i, episode=0, run_id="run-1",
                           frame_path="/tmp/f.png" if i == 0 else None) for i in range(n)]


def test_valid_invalid_and_skip_answers_are_stored(store):
    src, out = make_source(store, ["1", "maybe", "n", "s", "Y", "0"])
    qs = queries(4)
    got = src.ask(qs)
    assert [f.value for f in got] == [1.0, 0.0, None, 1.0]
    assert any("got 'maybe'" in line for line in out), "invalid input must re-ask with a message"
    text = "\n".join(out)
    assert "pole angle" in text and "push right" in text and "Frame: /tmp/f.png" in text
    stored = store.feedback()
    assert [f.value for f in stored] == [1.0, 0.0, None, 1.0]
    assert all(f.annotator_id == "person-1" for f in stored)


def test_quit_keeps_earlier_answers_and_stops(store):
    src, out = make_source(store, ["1", "0", "q"])
    got = src.ask(queries(5))
    assert [f.value for f in got] == [1.0, 0.0]
    assert src.stopped
    assert len(store.feedback()) == 2
    assert any("2 answers are saved" in line for line in out)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), EOFError()])
def test_ctrl_c_saves_answers_so_far(store, exc):
    src, _ = make_source(store, ["y", exc])
    got = src.ask(queries(3))
    assert [f.value for f in got] == [1.0]
    assert src.stopped
    assert [f.value for f in store.feedback()] == [1.0]


def test_no_consent_asks_nothing(store):
    src, out = make_source(store, [], consent=False)
    assert src.ask(queries(2)) == []
    assert src.stopped and store.feedback() == []
    assert any("consent" in line for line in out)


def test_real_consent_prompt_is_shown_before_first_question(store):
    src, out = make_source(store, ["yes", "1"], consent=None)
    got = src.ask(queries(1))
    assert [f.value for f in got] == [1.0]
    assert store.has_consent("person-1")
    assert any("Purpose" in line for line in out)
