"""The shared vocabulary every stage and the check and notifier packages use: results and states,
durations, stored records, text helpers. It imports nothing else of hismon.
"""
