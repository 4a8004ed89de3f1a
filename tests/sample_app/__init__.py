"""A small application that uses Redis, and its test suite, which uses only the respd
pytest plugin: what a respd user's own project looks like."""
