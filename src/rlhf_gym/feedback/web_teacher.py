"""``--teacher web``: the annotation server, registered for every feedback type."""

from __future__ import annotations

from rlhf_gym.feedback.registry import ANY, TeacherRequest, register_teacher
from rlhf_gym.feedback.sources import FeedbackSource


@register_teacher(ANY, "web", person=True, help="people in the web annotation app (rlhf-gym serve)")
def web_teacher(req: TeacherRequest) -> FeedbackSource:
    """Queries go to the server at ``--server``; with no ``--annotator`` any consenting annotator answers."""
    if not req.server:
        raise ValueError("--teacher web needs --server URL of a running `rlhf-gym serve`")
    try:
        from rlhf_gym.feedback.web_source import WebSource
    except ModuleNotFoundError as e:
        raise ValueError("--teacher web needs the web extra, which this installation lacks "
                         f"({e}); install it with: pip install 'rlhf-gym[web]'") from e
    return WebSource(server=req.server, token=req.token or "", store=req.store, run_id=req.run_id,
                     annotator_id=req.annotator_id, env_id=req.env_id, log=req.log)
