"""Delivery: rendering messages from templates, their context, and the persistent outbox that
hands them to notifiers with retries and fallback.
"""
