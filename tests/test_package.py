"""The package surface: exports, the error tree, the CLI skeleton, and importing without the heavy extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from click.testing import CliRunner

import kandinsky_nb as knb
from kandinsky_nb.cli import main


def test_public_names_are_exported_sorted_and_resolvable():
    assert knb.__all__ == sorted(knb.__all__, key=str)
    for name in knb.__all__:
        assert hasattr(knb, name), name
    private = [n for n in knb.__all__ if n.startswith("_") and n != "__version__"]
    assert "CostPanel" in dir(knb)
    assert not private


def test_every_error_has_one_root():
    errors = [
        getattr(knb, n)
        for n in knb.__all__
        if isinstance(getattr(knb, n), type) and issubclass(getattr(knb, n), Exception)
    ]
    assert len(errors) > 15
    assert all(issubclass(e, knb.KandinskyNBError) for e in errors)
    assert issubclass(knb.RequestValidationError, ValueError)
    assert issubclass(knb.MissingDependencyError, ImportError)
    assert issubclass(knb.AuthenticationError, knb.APIStatusError)
    assert issubclass(knb.APITimeoutError, knb.APIConnectionError)


def test_missing_dependency_names_the_extra():
    error = knb.MissingDependencyError("The local engine", "local", "torch")
    assert "pip install 'kandinsky-nb[local]'" in str(error)
    assert error.extra == "local"


def test_budget_error_ends_with_the_fix():
    error = knb.BudgetExceededError(needed=0.5, spent=0.8, cap=1.0)
    assert error.needed == 0.5 and error.cap == 1.0
    assert str(error).rstrip(".").endswith("make the run smaller")


def test_api_key_never_shows_itself():
    from kandinsky_nb.settings import api_key

    key = api_key("sk-very-secret-value")
    assert "very-secret" not in repr(key) and "very-secret" not in str(key) and "very-secret" not in f"{key}"
    assert key.reveal() == "sk-very-secret-value"
    import pickle

    try:
        pickle.dumps(key)
    except TypeError:
        pass
    else:
        raise AssertionError("an ApiKey must refuse to be pickled")


def test_cli_help_and_info():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "info" in result.output
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0
    assert "1280x768" in result.output and "DPM++ 2M Karras" in result.output and "0.0077" in result.output


def test_import_works_without_torch_or_diffusers():
    script = textwrap.dedent(
        """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {"torch", "diffusers", "transformers", "starlette", "uvicorn"}:
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        import kandinsky_nb, kandinsky_nb.cli
        r = kandinsky_nb.ImageInferenceRequest(positivePrompt="a red fox")
        assert r.to_wire()["model"] == "runware:kandinsky-5.0-image-lite@1"
        assert not any(m.split(".")[0] in {"torch", "diffusers"} for m in sys.modules)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
