"""Signed links in messages (SPEC §13.2-13.4): acknowledge, department confirms, vendor."""
