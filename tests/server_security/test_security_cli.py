"""`kandinsky-nb serve`'s security options: refused with the option named, before any engine loads."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kandinsky_nb.cli import main


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--delivery-host", "https://hooks.example.com/path?token=1"], "--delivery-host"),
        (["--image-host", "user@images.example.com"], "--image-host"),
        (["--lora", "style"], "NAME=FILE"),
        (["--lora", "style=/no/such/lora.safetensors"], "there is no file or folder"),
        (["--poll-wait", "-1"], "--poll-wait"),
    ],
)
def test_a_bad_security_option_is_a_usage_error(arguments, said):
    result = CliRunner().invoke(main, ["serve", "--demo", *arguments])
    assert result.exit_code == 2 and said in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "DEMO weights" not in result.output  # refused before the engine was built


def test_the_security_options_are_documented_in_help():
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for option in ("--delivery-host", "--image-host", "--lora", "--allow-origin"):
        assert option in help_text
