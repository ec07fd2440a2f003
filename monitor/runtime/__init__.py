"""The daemon process: wires config, probing, incidents, delivery, web and store together; systemd
notify and memory trimming.
"""
