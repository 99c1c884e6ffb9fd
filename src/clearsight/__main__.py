"""``python -m clearsight`` is the ``clearsight`` command."""

from clearsight.cli import main

main()
