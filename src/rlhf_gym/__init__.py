"""rlhf-gym: teach Gymnasium agents from human feedback."""

__version__ = "0.1.0"
