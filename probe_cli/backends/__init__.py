"""One backend per model family (see :mod:`probe_cli.backends.base`); :mod:`.registry` picks one for a file.

Kept empty so that importing :mod:`probe_cli.backends.tfenv` (the CLI does, for ``-v``) costs nothing.
"""
