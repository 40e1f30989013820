"""Sub-commands of the ``gleansr`` CLI (see ``gleansr.cli``)."""
