"""Probing: the scheduler that runs checks on time, the runner that owns timeout and timing around
a check's probe, soft/hard check state and trend early warnings.
"""
