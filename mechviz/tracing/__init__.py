"""The trace: one forward pass recorded, its sections and the Trace, JSON io, validation.

It imports mechviz.model and below; nothing here calls an analysis or a scene.
"""
