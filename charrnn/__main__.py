"""``python -m charrnn`` is the ``charrnn`` command."""
from .cli import cli

cli(prog_name="charrnn")
