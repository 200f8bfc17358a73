"""Analyses of a traced model: attribution, dictionaries, weights, heads, shared readings.

They import mechviz.tracing and below; scenes read what they add to the trace.
"""
