"""Classification model specs (filled in by the classification work)."""


def register_models(register):
    pass
