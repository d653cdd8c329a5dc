"""Fixtures for the client side of issue 13: the project's real Runware-speaking server on 127.0.0.1 in front of an
engine that charges a scripted price (tests/session's testkit), and the fault proxy of tests/runware for answers no
well-behaved server gives."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for kit in ("session", "runware"):  # sweep_testkit (PricedEngine, served, runware) and fault_proxy
    if str(TESTS / kit) not in sys.path:
        sys.path.append(str(TESTS / kit))
