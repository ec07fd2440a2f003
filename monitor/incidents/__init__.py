"""Incidents: from check states to incidents and plan steps. Decisions (cause, plans, maintenance
windows) and the engine that applies them.
"""
