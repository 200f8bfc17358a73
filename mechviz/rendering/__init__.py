"""A scene to a file (gif, mp4, png, mov, webm, svg), and the GIF encoder.

It imports mechviz.visual, mechviz.scenes and below.
"""
