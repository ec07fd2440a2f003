"""People in the loop (SPEC §13.1): who is on duty, and how a message reaches a person."""
