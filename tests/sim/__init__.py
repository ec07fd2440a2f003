"""The incident simulator (issue 10): a scripted hospital on a virtual clock, driven through the
real incident rules and applier, with failure patterns from hypothesis. See docs/testing.md."""
