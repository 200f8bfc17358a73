"""Readouts trained on a corpus: the corpus, the tuned lens, sparse autoencoders.

They import mechviz.tracing and below, and make their own trace sections.
"""
