"""Demonstrations: stored as feedback, read back for the learners, and written to or read from files."""

from rlhf_gym.demos.data import (
    ActionLabel,
    Demo,
    action_labels_from_store,
    check_demos,
    demos_from_store,
    import_demos,
    load_trajectories,
    record_demos,
    write_trajectories,
)

__all__ = ["ActionLabel", "Demo", "action_labels_from_store", "check_demos", "demos_from_store", "import_demos",
           "load_trajectories", "record_demos", "write_trajectories"]
