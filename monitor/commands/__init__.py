"""The hismon command line: one module per command family (cli entry point, demo, drill, report).
"""
