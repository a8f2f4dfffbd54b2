"""Detection / segmentation / backbone / head specs (filled in by the dense-task work)."""


def register_models(register):
    pass


def register_backbones(register):
    pass


def register_heads(register):
    pass
