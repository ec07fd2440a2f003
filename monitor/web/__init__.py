"""The HTTP face: API, status pages, OpenAPI. It reads a view of the daemon and writes only
through its operations interface.
"""
