"""The server extension's run-log API in a real jupyter_server (pytest-jupyter), over a run log the demo engine made:
auth on every route, filters, pagination, one run, images and thumbnails, path containment, sweeps, cost, and that
the log is only ever read."""

from __future__ import annotations

import hashlib
import io
import sqlite3

import pytest

pytestmark = pytest.mark.local  # the run log is made by the demo engine

# Every route, with an id or name that exists in the demo log (the auth test must reach real handlers).
ROUTES = ("status", "revision", "runs", "runs/1", "runs/1/image", "runs/1/thumbnail", "sweeps", "sweeps/cats", "cost")


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_refuses_a_request_without_credentials(api, route):
    assert api(route, token=False).code == 403


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_answers_with_the_token(api, route):
    assert api(route).code == 200


def test_a_wrong_token_is_refused(api, jp_fetch, jp_asyncio_loop):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as error:
        jp_asyncio_loop.run_until_complete(
            jp_fetch("kandinsky-nb", "api", "runs", headers={"Authorization": "token not-the-token"})
        )
    assert error.value.code == 403


def test_status_names_the_log_and_its_schema(api, log_home, demo_log):
    status = api("status").json()
    assert status["db"] == str((log_home / "runs.db").resolve())
    assert status["exists"] is True and status["read_only"] is True
    assert status["schema"]["current"] is True
    assert status["schema"]["version"] == status["schema"]["known_version"] >= 1
    runs = api("runs").json()["runs"]
    assert status["runs"] == len(demo_log.run_ids) + 1 + demo_log.sweep_cells == len(runs)
    assert status["latest_id"] == runs[0]["id"]


def test_the_revision_changes_when_a_run_is_logged(api, log_home):
    import kandinsky_nb as knb

    before = api("revision").json()["revision"]
    assert before == api("status").json()["revision"] == api("revision").json()["revision"]
    with knb.RunLog(log_home) as log:
        request = knb.ImageInferenceRequest(positivePrompt="a new run", width=1024, height=1024)
        log.record_submitted(request, engine="local", demo=True)
    assert api("revision").json()["revision"] != before


def test_runs_are_newest_first_with_the_columns_a_sidebar_shows(api, demo_log):
    page = api("runs").json()
    ids = [run["id"] for run in page["runs"]]
    assert ids == sorted(ids, reverse=True)
    assert page["total"] == len(ids) == len(demo_log.run_ids) + 1 + demo_log.sweep_cells
    first = next(run for run in page["runs"] if run["id"] == demo_log.run_ids[0])
    assert first["prompt"] == "a red fox in snow" and first["seed"] == 7 and first["steps"] == 10
    assert first["status"] == "ok" and first["has_image"] is True and first["demo"] is True
    assert {"CFGScale", "scheduler", "width", "height", "cost_usd", "latency_s", "engine"} <= set(first)
    assert "image_path" not in first and "request_json" not in first  # no paths and no large JSON in a page


def test_pagination_walks_every_run_once(api, demo_log):
    total = api("runs").json()["total"]
    seen = []
    for offset in range(0, total, 3):
        page = api("runs", limit=3, offset=offset).json()
        assert page["limit"] == 3 and page["offset"] == offset and page["total"] == total
        seen += [run["id"] for run in page["runs"]]
    assert seen == sorted(set(seen), reverse=True) and len(seen) == total
    assert api("runs", offset=total).json()["runs"] == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "failed"}, lambda run: run["status"] == "failed"),
        ({"status": "ok,failed"}, lambda run: run["status"] in ("ok", "failed")),
        ({"sweep": "cats"}, lambda run: run["sweep_id"] == "cats"),
        ({"q": "LIGHTHOUSE"}, lambda run: "lighthouse" in run["prompt"]),
        ({"q": "100%"}, lambda run: run["prompt"].startswith("100%")),  # LIKE wildcards are matched literally
        ({"q": "e_i"}, lambda run: "e_i" in run["prompt"]),
        ({"engine": "local"}, lambda run: run["engine"] == "local"),
        ({"demo": "true"}, lambda run: run["demo"]),
        ({"since": "2000-01-01", "until": "2999-12-31"}, lambda run: True),
    ],
)
def test_filters_select_exactly_the_matching_runs(api, params, expected):
    everything = api("runs", limit=500).json()["runs"]
    page = api("runs", limit=500, **params).json()
    assert page["runs"], f"the demo log has runs matching {params}"
    assert [run["id"] for run in page["runs"]] == [run["id"] for run in everything if expected(run)]
    assert page["total"] == len(page["runs"])


def test_date_filters_exclude_by_creation_time(api):
    assert api("runs", since="2999-01-01").json()["total"] == 0
    assert api("runs", until="2000-01-01").json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"status": "done"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"demo": "maybe"}, "demo"),
        ({"q": "ab"}, "q"),  # the prompt index matches 3 characters or more
    ],
)
def test_a_bad_parameter_is_a_400_that_names_it_and_what_is_allowed(api, params, named):
    reply = api("runs", **params)
    assert reply.code == 400
    message = reply.json()["message"]
    value = next(iter(params.values()))
    assert f"{named}={value!r}" in message and "must be" in message


def test_one_run_carries_its_request_response_and_reproducing_code(api, demo_log):
    run = api(f"runs/{demo_log.run_ids[1]}").json()
    assert run["request"]["positivePrompt"] == "a lighthouse at dusk"
    assert run["request"]["taskUUID"] == run["task_uuid"]
    assert isinstance(run["response"], dict)
    assert "knb.Session(engine='demo')" in run["code"] and "'seed': 8" in run["code"]
    assert "'taskUUID'" not in run["code"]  # a new task: reusing the id would overwrite the original's row
    assert "image_path" not in run


def test_an_unknown_run_is_a_404_that_says_so(api):
    reply = api("runs/99999")
    assert reply.code == 404 and "no run with id 99999" in reply.json()["message"]


def test_the_image_is_the_logged_file(api, demo_log, log_home):
    from PIL import Image

    run = api(f"runs/{demo_log.run_ids[0]}").json()
    reply = api(f"runs/{demo_log.run_ids[0]}/image")
    assert reply.code == 200
    with Image.open(io.BytesIO(reply.body)) as image:
        assert reply.headers["Content-Type"] == image.get_format_mimetype()
    assert hashlib.sha256(reply.body).hexdigest() == run["image_sha256"]
    assert "immutable" in reply.headers["Cache-Control"]


def test_a_failed_run_has_no_image(api, demo_log):
    assert api(f"runs/{demo_log.failed_id}/image").code == 404
    assert api(f"runs/{demo_log.failed_id}/thumbnail").code == 404


def test_the_thumbnail_is_a_small_jpeg(api, demo_log):
    from PIL import Image

    reply = api(f"runs/{demo_log.run_ids[0]}/thumbnail", size=64)
    assert reply.code == 200 and reply.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(reply.body)) as image:
        assert image.format == "JPEG" and max(image.size) == 64
    assert api(f"runs/{demo_log.run_ids[0]}/thumbnail", size=4096).code == 400


@pytest.mark.parametrize("stored", ["../outside.png", "/etc/hostname", "images/../../outside.png"])
def test_files_outside_the_home_are_never_served(api, log_home, demo_log, stored):
    # A row is data, not a licence to read the disk: point one at a real file outside the home.
    (log_home.parent / "outside.png").write_bytes((log_home / _image_path(log_home, demo_log.run_ids[0])).read_bytes())
    with sqlite3.connect(log_home / "runs.db") as db:
        db.execute("UPDATE runs SET image_path = ? WHERE id = ?", (stored, demo_log.run_ids[0]))
    db.close()
    assert api(f"runs/{demo_log.run_ids[0]}/image").code == 404
    assert api(f"runs/{demo_log.run_ids[0]}/thumbnail").code == 404


def test_a_symlink_out_of_the_home_is_never_followed(api, log_home, demo_log):
    outside = log_home.parent / "secret.png"
    outside.write_bytes((log_home / _image_path(log_home, demo_log.run_ids[0])).read_bytes())
    (log_home / "images" / "link.png").symlink_to(outside)
    with sqlite3.connect(log_home / "runs.db") as db:
        db.execute("UPDATE runs SET image_path = 'images/link.png' WHERE id = ?", (demo_log.run_ids[0],))
    db.close()
    assert api(f"runs/{demo_log.run_ids[0]}/image").code == 404


def test_a_path_in_the_url_is_not_a_route(api):
    assert api("runs/..%2F..%2Fetc%2Fpasswd/image").code == 404
    assert api("runs/1/image", path="/etc/passwd").code == 200  # extra parameters are ignored, never used as paths


def test_sweeps_list_cells_states_and_spend(api, demo_log):
    sweeps = api("sweeps").json()["sweeps"]
    assert [s["name"] for s in sweeps] == ["cats"]
    assert sweeps[0]["cells"] == demo_log.sweep_cells and sweeps[0]["states"] == {"ok": demo_log.sweep_cells}


def test_one_sweep_has_its_axes_and_every_cell(api, demo_log):
    sweep = api("sweeps/cats").json()
    assert {axis["name"]: axis["values"] for axis in sweep["axes"]} == {"steps": [10, 12], "seed": [1, 2]}
    assert len(sweep["cells"]) == demo_log.sweep_cells and sweep["failed"] == []
    assert all(cell["run"]["has_image"] for cell in sweep["cells"])
    assert sweep["definition"] is not None
    assert sweep["spent_usd"] == pytest.approx(sum(cell["spent_usd"] for cell in sweep["cells"]))


def test_an_unknown_sweep_is_a_404(api):
    assert api("sweeps/dogs").code == 404


def test_cost_sums_this_session_today_and_all(api, demo_log):
    cost = api("cost").json()
    everything = api("runs", limit=500).json()
    assert cost["all"]["runs"] == everything["total"]
    assert cost["all"]["cost_usd"] == pytest.approx(everything["total_cost_usd"])
    assert cost["today"]["runs"] == everything["total"]  # the demo log was made during this test session
    # "This session" is since the server started: the log was written before it.
    assert cost["session"]["runs"] == 0
    assert {row["engine"] for row in cost["by_engine"]} == {"local"}


def test_reads_never_write_the_log(api, log_home):
    def snapshot():
        # A WAL reader may create the empty -wal/-shm side files (SQLite's shared-memory index); the database and
        # every image must stay byte for byte what they were.
        files = [p for p in log_home.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))]
        return {str(p.relative_to(log_home)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = snapshot()
    for route in ROUTES:
        assert api(route).code == 200
    assert snapshot() == before
    wal = log_home / "runs.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_missing_log_is_reported_and_never_created(api, log_home):
    (log_home / "runs.db").unlink()
    for suffix in ("-wal", "-shm"):
        (log_home / f"runs.db{suffix}").unlink(missing_ok=True)
    status = api("status").json()
    assert status["exists"] is False and status["runs"] == 0
    assert api("runs").json()["total"] == 0
    assert api("runs/1").code == 404
    assert not (log_home / "runs.db").exists()


def _image_path(home, run_id):
    with sqlite3.connect(f"{(home / 'runs.db').as_uri()}?mode=ro", uri=True) as db:
        path = db.execute("SELECT image_path FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    db.close()
    return path


def test_reading_never_holds_a_lock_a_writer_needs(api, log_home):
    """A sweep keeps logging while the sidebar reads: a writer that refuses to wait for any lock (timeout 0) commits
    every row while the API pages through the log from another thread's point of view."""
    import threading

    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        writer = sqlite3.connect(log_home / "runs.db", timeout=0, isolation_level=None)
        try:
            for index in range(200):
                writer.execute("BEGIN IMMEDIATE")
                writer.execute(
                    "INSERT INTO runs (created_utc, status, engine, model, task_uuid, request_json) "
                    "VALUES ('2026-01-01T00:00:00+00:00', 'submitted', 'local', 'm', ?, '{}')",
                    (f"lock-test-{index}",),
                )
                writer.execute("COMMIT")
        except BaseException as exc:
            errors.append(exc)
        finally:
            writer.close()
            done.set()

    before = api("runs").json()["total"]
    thread = threading.Thread(target=write)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 5:
        assert api("runs", limit=500).code == 200
        assert api("cost").code == 200
        reads += 1
    thread.join()
    assert errors == []
    assert api("runs").json()["total"] == before + 200


def test_thumbnails_are_cached_within_a_byte_budget(tmp_path):
    from PIL import Image

    from kandinsky_nb.jupyter.thumbnails import ThumbnailCache

    paths = []
    for index in range(5):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (256, 256), (index * 40, 10, 10)).save(path)
        paths.append(path)
    one = len(ThumbnailCache().get(paths[0], 64))
    cache = ThumbnailCache(max_bytes=one * 3)
    for path in paths:
        cache.get(path, 64)
    assert len(cache) <= 3 and cache.misses == 5
    cache.get(paths[-1], 64)
    assert cache.hits == 1  # the most recent stays; the oldest went first
    cache.get(paths[0], 64)
    assert cache.misses == 6
