"""A minimal zoo plugin: the ``tinycnn`` classifier family (see ``plugin.py`` and ``models.py``)."""

__version__ = "0.1.0"
