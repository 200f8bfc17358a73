"""Changed runs: heads ablated, states frozen, activations patched.

It imports mechviz.tracing and below.
"""
