"""``python -m kandinsky_nb`` is the ``kandinsky-nb`` command (handy where the script is not on PATH)."""

from .cli import main

main(prog_name="kandinsky-nb")
