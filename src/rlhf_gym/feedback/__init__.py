"""Feedback sources: people and simulated teachers behind one interface."""

from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback

__all__ = ["FeedbackSource", "StopFeedback"]
