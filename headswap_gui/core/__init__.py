"""The engine: models, heads, data, training, runs. Pure torch/torchvision/timm — never Qt.

Everything the window and the command line do goes through these modules, so the two can
never disagree about which layer is the head or how a run is saved.
"""
