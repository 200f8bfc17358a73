"""The mechviz command: its commands and the terminal report (mechviz inspect).

It imports every stage below it, as mechviz.api does.
"""
