"""Loading a causal LM: the cache, the architecture adapter, token text, torch threads.

It imports only mechviz.errors and mechviz.files: the first stage after the prompt.
"""
