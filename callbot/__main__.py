"""``python -m callbot``: the same CLI as the ``callbot`` command."""

from callbot.cli import main

main()
