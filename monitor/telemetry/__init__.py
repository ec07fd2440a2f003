"""Telemetry: Prometheus metrics and structured logs.
"""
