"""The `zt` command line: parses, calls zigtensor, prints. No logic of its own."""
