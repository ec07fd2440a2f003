"""Running on more than one machine: leadership on a store lease, shards and quorum.
"""
