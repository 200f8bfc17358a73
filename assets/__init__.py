"""Small committed data shipped with mechviz: the example traces."""
