"""The budget cap against a server that charges more than the list price, answers costs that cannot be counted, or is
given a cap that is not a number. The engine sits behind the project's real Runware-speaking server on 127.0.0.1 and
charges a scripted multiple of the list price; nothing here patches the session, the budget or the wire."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from fault_proxy import Fault, FaultProxy
from sweep_testkit import KEY, PricedEngine, runware, served

from kandinsky_nb import spec
from kandinsky_nb.cli import main
from kandinsky_nb.errors import BudgetExceededError, ConfigurationError
from kandinsky_nb.session import Session, UnusableCostError
from kandinsky_nb.session.budget import DEFAULT_MARGIN, Budget
from kandinsky_nb.types import ImageInferenceRequest

PRICE_10 = spec.list_price_estimate(1024, 1024, 10)  # one default-size image at 10 steps, at the list price
FACTORS = [1.5, 3.0]  # what the server really charges, as a multiple of the list price


def _logged_cost(session: Session) -> float:
    frame = session.runs.df
    return float(frame.loc[frame["status"] == "ok", "cost_usd"].sum())


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("mode", ["threads", "async"])
async def test_a_batched_concurrent_sweep_stays_under_the_cap_when_the_server_charges_more(factor, mode, tmp_path):
    # 8 cells fit the cap at the list price with its margin, so the sweep is allowed to start; at the real price they
    # do not. Before the fix, batches of 2 with 4 in flight were reserved at the list price and overran the cap.
    cap = 8 * PRICE_10 * DEFAULT_MARGIN
    engine = PricedEngine(delay=0.05, price_factor=factor)
    with served(engine) as (url, state):
        session = Session(runware(url), home=tmp_path, budget=cap)
        plan = session.sweep("a red fox in snow", name=f"over-{mode}-{factor}", steps=10, seed="1-8")
        if mode == "threads":
            report = await asyncio.to_thread(plan.run, 4, progress=False, batch_size=2)
        else:
            report = await plan.arun(4, progress=False, batch_size=2)
        logged, left_to_do = _logged_cost(session), plan.status()["new"]
        await session.aclose()
    assert session.budget.spent <= cap + 1e-12
    assert logged <= cap + 1e-12
    assert report.ok == len(state.generations) >= 1
    assert report.not_run > 0 and "Budget exceeded" in (report.stopped_by or "")
    # It learned the real price per megapixel-step from the answers and reserves at it now.
    assert session.budget.rate == pytest.approx(factor * PRICE_10 / 1.048576 / 10)
    assert left_to_do == report.not_run  # what the cap stopped stays to do


@pytest.mark.parametrize("factor", FACTORS)
async def test_concurrent_generations_stay_under_the_cap_when_the_server_charges_more(factor, tmp_path):
    cap = PRICE_10 * 7.3
    engine = PricedEngine(delay=0.05, price_factor=factor)
    with served(engine) as (url, state):
        session = Session(runware(url), home=tmp_path, budget=cap)

        async def one(seed: int) -> str:
            try:
                await session.agenerate("a red fox in snow", steps=10, seed=seed)
            except BudgetExceededError:
                return "refused"
            return "ok"

        outcomes = await asyncio.gather(*(one(seed) for seed in range(16)))
        logged = _logged_cost(session)
        await session.aclose()
    assert session.budget.spent <= cap + 1e-12
    assert logged <= cap + 1e-12
    assert outcomes.count("ok") == len(state.generations) and "refused" in outcomes


@pytest.mark.parametrize("factor", FACTORS)
def test_threads_calling_generate_stay_under_the_cap_when_the_server_charges_more(factor, tmp_path):
    cap = PRICE_10 * 7.3
    with (
        served(PricedEngine(delay=0.05, price_factor=factor)) as (url, state),
        Session(runware(url), home=tmp_path, budget=cap) as session,
    ):

        def one(seed: int) -> str:
            try:
                session.generate("a red fox in snow", steps=10, seed=seed)
            except BudgetExceededError:
                return "refused"
            return "ok"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(16)))
        assert session.budget.spent <= cap + 1e-12
        assert _logged_cost(session) <= cap + 1e-12
    assert outcomes.count("ok") == len(state.generations) and "refused" in outcomes


async def test_without_a_cap_nothing_waits_for_the_price(tmp_path):
    # The probe exists to protect a cap; with none, concurrent requests go out together as before.
    engine = PricedEngine(delay=0.2, price_factor=3.0)
    with served(engine) as (url, _):
        async with Session(runware(url), home=tmp_path) as session:
            assert not session.budget.learning
            await asyncio.gather(*(session.agenerate("a red fox", steps=10, seed=s) for s in range(4)))
    assert engine.max_in_flight == 4
    assert session.budget.spent == pytest.approx(4 * 3.0 * PRICE_10)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, -1e-9])
def test_an_answer_whose_cost_cannot_be_counted_is_a_failed_row_never_summed(bad, tmp_path):
    def poison(body: dict) -> dict:
        for item in body.get("data", []):
            if "cost" in item:
                item["cost"] = bad
        return body

    with served(PricedEngine()) as (url, _), FaultProxy(url) as proxy:
        proxy.script.append(Fault("rewrite", rewrite=poison))
        with Session(runware(proxy.url), home=tmp_path, budget=1.0) as session:
            with pytest.raises(UnusableCostError, match=r"cost=.*a cost must be a finite number of USD of at least 0"):
                session.generate("a red fox in snow", steps=10, seed=1)
            [row] = session.runs.rows()
            assert row["status"] == "failed" and row["error_type"] == "UnusableCostError"
            assert row["cost_usd"] is None
            # It may have been charged: its hold is counted, never the poisoned figure, and the cap still holds.
            assert math.isfinite(session.budget.spent) and 0 < session.budget.spent <= PRICE_10 * DEFAULT_MARGIN
            assert session.budget.rate is None  # nothing learned from it
            good = session.generate("a red fox in snow", steps=10, seed=2)  # the next answer is counted normally
            assert good.cost == pytest.approx(PRICE_10)


def test_a_batch_slot_with_an_unusable_cost_fails_alone(tmp_path):
    def poison_first(body: dict) -> dict:
        body["data"][0]["cost"] = math.nan
        return body

    requests = [ImageInferenceRequest(positivePrompt="a red fox", steps=10, seed=s) for s in (1, 2)]
    with (
        served(PricedEngine()) as (url, _),
        FaultProxy(url) as proxy,
        Session(runware(proxy.url), home=tmp_path) as session,
    ):
        proxy.script.append(Fault("rewrite", rewrite=poison_first))
        outcomes = session.generate_many(requests)
    kinds = sorted(type(outcome).__name__ for outcome in outcomes)
    assert kinds == ["Generation", "UnusableCostError"]
    assert math.isfinite(session.budget.spent)


@pytest.mark.parametrize("cap", [math.nan, math.inf, -math.inf, -1, -0.01, True, "5"])
def test_a_cap_that_is_not_a_finite_non_negative_number_is_refused(cap, tmp_path):
    with pytest.raises(ConfigurationError, match=r"a cap is a finite number of USD of at least 0.*budget=None"):
        Session("demo", home=tmp_path, budget=cap)


@pytest.mark.parametrize("margin", [math.nan, math.inf, 0.5])
def test_a_margin_below_one_or_not_finite_is_refused(margin):
    with pytest.raises(ConfigurationError, match="margin="):
        Budget(1.0, margin=margin)


def test_settling_an_unusable_cost_is_refused():
    budget = Budget(1.0)
    reservation = budget.reserve(0.1, work=1.0)
    with pytest.raises(ConfigurationError, match="forfeit"):
        budget.settle(reservation, math.nan)
    budget.forfeit(reservation)
    assert budget.spent == pytest.approx(0.1 * DEFAULT_MARGIN) and budget.reserved == 0


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1", "-0.5", "abc", "1e999"])
def test_the_cli_refuses_a_budget_that_is_not_a_finite_non_negative_number(value, tmp_path, monkeypatch):
    with served(PricedEngine()) as (url, state):
        monkeypatch.setenv("RUNWARE_API_KEY", KEY)
        monkeypatch.setenv("RUNWARE_BASE_URL", url)
        result = CliRunner().invoke(
            main, ["sweep", "a fox", "--steps", "10", f"--budget={value}", "--out", str(tmp_path)]
        )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--budget'" in result.output
    assert "finite number of USD of at least 0" in result.output or "is not a number" in result.output
    assert not state.generations


def test_a_sweep_estimate_after_answers_shows_the_price_the_engine_charged(tmp_path):
    with served(PricedEngine(price_factor=3.0)) as (url, _), Session(runware(url), home=tmp_path) as session:
        session.generate("a red fox in snow", steps=10, seed=1)  # teaches the budget the real price
        estimate = session.sweep("a red fox in snow", name="after", steps=10, seed="1-4").estimate()
    assert estimate.cost_to_run_usd == pytest.approx(4 * 3.0 * PRICE_10)
    assert "per megapixel-step the engine charged" in estimate.cost_source


@pytest.mark.parametrize("estimate", [math.nan, math.inf, -1.0])
def test_an_estimate_that_is_not_a_finite_cost_cannot_slip_past_the_cap(estimate):
    budget = Budget(1.0)
    with pytest.raises(ConfigurationError, match="estimate="):
        budget.reserve(estimate, work=1.0)
    assert budget.reserved == 0 and budget.spent == 0
