"""Run configurations: ``get_config()`` per file, selected with ``--config=PATH``."""
