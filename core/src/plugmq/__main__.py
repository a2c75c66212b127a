"""``python -m plugmq`` runs the command line."""

from plugmq.cli.app import main

main()
