"""The model page's Examples section, as test data (a fixture copy, checked against the page when at hand)."""

from __future__ import annotations

import json
import re
from pathlib import Path

SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def model_page_examples() -> list[list[dict]]:
    """The (request, response) pairs of the model page's Examples section, read from the fixture copy."""
    return json.loads((FIXTURES / "model_page_examples.json").read_text())


def extract_examples(markdown: str) -> list[list[dict]]:
    requests = re.findall(r"\*\*Request\*\*:\n\n```json\n(.*?)```", markdown, re.S)
    responses = re.findall(r"\*\*Response\*\*:\n\n```json\n(.*?)```", markdown, re.S)
    return [[json.loads(a), json.loads(b)] for a, b in zip(requests, responses, strict=True)]
