"""Configuration: the pydantic model of a hismon config (model) and the loader that turns YAML
files into it with FILE:LINE errors (loader).
"""
