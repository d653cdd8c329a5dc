"""Secrets: keys checked when given, redacted from what answers BECAME (never by rewriting answer bytes), and base URLs
that carry credentials refused."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from hostile_server import HostileServer, json_answer, png_bytes, result_item

from kandinsky_nb._media import base64_text
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.errors import AuthenticationError, ConfigurationError, KandinskyNBError, TaskError
from kandinsky_nb.protocol import RetryPolicy
from kandinsky_nb.runlog.store import RunLog
from kandinsky_nb.settings import MAX_API_KEY_LENGTH, ApiKey, api_key
from kandinsky_nb.types import ImageInferenceRequest

FAST = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02, poll_initial=0.02, poll_max=0.05)
LONG_KEY = "rw-hostile-KEY-3b1f9a7c-never-show-me"
MODES = ["sync", "async"]


def request(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(**{"positivePrompt": "a red fox in snow", **fields})


def run(backend: RunwareBackend, mode: str, req: ImageInferenceRequest):
    import asyncio

    if mode == "sync":
        return backend.generate(req)

    async def go():
        try:
            return await backend.agenerate(req)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def everything_about(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))


# -- short keys never corrupt answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", ["k", "demo", "a"])
def test_a_short_key_does_not_corrupt_answers(serve, key, mode):
    """'k' is inside "taskUUID", 'demo' is a field of every demo result, 'a' is everywhere: replacing the key in the
    raw body broke polling (never finished) and logged demo images as real."""
    server = serve([key], demo=True)
    backend = RunwareBackend(key, base_url=server.url, timeout=5, poll_timeout=10, retry_policy=FAST)
    generation = run(backend, mode, request(deliveryMethod="async", numberResults=2))
    backend.close()
    assert len(generation.images) == 2
    assert generation.demo is True
    assert all(item["taskUUID"] == generation.request.taskUUID for item in generation.response)


# -- echoed keys, however escaped, do not reach errors, logs, the run log or notebook outputs ----------------------
def _escaped(text: str) -> str:
    """The key as a JSON string body with every character escaped (\\u0072\\u0077...): the raw bytes never hold it."""
    return "".join(f"\\u{ord(ch):04x}" for ch in text)


@pytest.mark.parametrize("mode", MODES)
def test_a_key_echoed_in_json_escapes_reaches_no_output(mode, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    image = png_bytes()

    def answer(received):
        task = received.tasks[0]
        if received.headers.get("Authorization") != f"Bearer {LONG_KEY}":
            return json_answer({"errors": [{"code": "invalidApiKey", "message": "no"}]}, status=401)
        if "fail" in task.get("positivePrompt", ""):
            echo = _escaped(LONG_KEY)
            body = (
                '{"errors": [{"code": "invalidApiKey", "taskUUID": "' + task["taskUUID"] + '", "parameter": "apiKey", '
                '"message": "key ' + echo + ' is not valid", "echo": {"' + echo + '": ["' + echo + '"]}}]}'
            )
            return 401, "application/json", body.encode()
        item = result_item(task, imageBase64Data=base64_text(image), note=f"served for {LONG_KEY}", cost=0.001)
        return json_answer({"data": [item]})

    with HostileServer(answer) as server:
        assert LONG_KEY.encode() not in _escaped(LONG_KEY).encode()
        backend = RunwareBackend(LONG_KEY, base_url=server.url, timeout=5, retry_policy=FAST)
        generation = run(backend, mode, request())
        with pytest.raises(AuthenticationError) as caught:
            run(backend, mode, request(positivePrompt="this one fails"))
        backend.close()

    error = caught.value
    assert "***" in str(error)  # the message is kept, the key blanked
    log = RunLog(tmp_path / "home")
    log.record_generation(generation)
    log.record_failure(request(), error, engine="runware", demo=False)
    database = b"".join(path.read_bytes() for path in (tmp_path / "home").glob("runs.db*"))
    texts = [
        everything_about(error),
        json.dumps(error.body),
        repr(generation),
        json.dumps(generation.response),
        repr(generation.images),
        generation._repr_html_() if hasattr(generation, "_repr_html_") else "",
        caplog.text,
        repr(backend),
    ]
    for text in texts:
        assert LONG_KEY not in text
    assert LONG_KEY.encode() not in database
    assert generation.images[0].data == image  # image bytes are never touched


def test_a_short_key_is_redacted_as_a_word_only():
    key = ApiKey("demo")
    assert key.redact("key demo refused") == "key *** refused"
    assert key.redact("a demonstration of demo_weights") == "a demonstration of demo_weights"
    assert ApiKey("k").redact("taskUUID k") == "taskUUID ***"
    assert ApiKey(LONG_KEY).redact(f"x{LONG_KEY}y") == "x***y"  # a real key: everywhere


# -- keys are checked when given ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        ("sk-abc\ndef", "whitespace"),
        ("sk-abc def", "whitespace"),
        ("sk-abc\tdef", "whitespace"),
        ("sk-abc\x00def", "control character"),
        ("sk-abc\x1b[31mdef", "control character"),
        ("sk-abcdéf", "printable ASCII"),
        ("k" * (MAX_API_KEY_LENGTH + 1), f"at most {MAX_API_KEY_LENGTH}"),
    ],
)
def test_an_invalid_key_is_refused_naming_the_rule_never_the_key(bad, rule, monkeypatch):
    for make in (lambda: ApiKey(bad), lambda: RunwareBackend(bad), lambda: api_key(bad)):
        with pytest.raises(ConfigurationError) as caught:
            make()
        assert rule in str(caught.value)
        assert bad.strip() not in str(caught.value) and "sk-abc" not in str(caught.value)
    if "\x00" not in bad:  # the environment itself cannot hold a NUL
        monkeypatch.setenv("RUNWARE_API_KEY", bad)
        with pytest.raises(ConfigurationError):
            RunwareBackend()


def test_surrounding_whitespace_of_a_key_read_from_a_file_is_dropped():
    assert ApiKey("  rw-key-123\n").reveal() == "rw-key-123"
    assert api_key("   ") is None


# -- credentials in a base URL -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2secret@127.0.0.1:8765",
        "https://hunter2secret@api.example.org",
        "http://:hunter2secret@127.0.0.1:8765/v1",
    ],
)
def test_credentials_in_a_base_url_are_refused_and_never_shown(url, serve):
    with pytest.raises(ConfigurationError) as caught:
        RunwareBackend(LONG_KEY, base_url=url)
    assert "hunter2secret" not in str(caught.value)
    assert "credentials" in str(caught.value) and "api_key" in str(caught.value)


def test_credentials_never_replace_the_bearer_key():
    seen = []

    def answer(received):
        seen.append(received.headers.get("Authorization"))
        return json_answer({"data": [result_item(received.tasks[0], imageBase64Data=base64_text(png_bytes()))]})

    with HostileServer(answer) as server:
        host = server.url.removeprefix("http://")
        with pytest.raises(ConfigurationError):
            RunwareBackend(LONG_KEY, base_url=f"http://user:pw@{host}")
        backend = RunwareBackend(LONG_KEY, base_url=server.url, retry_policy=FAST)
        backend.generate(request())
        backend.close()
    assert seen == [f"Bearer {LONG_KEY}"]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://127.0.0.1", "http(s)"),
        ("127.0.0.1:8765", "http(s)"),
        ("http://127.0.0.1:8765\n", None),  # trailing whitespace is dropped
        ("http://127.0.0.1:87 65", "whitespace"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://127.0.0.1:8765/?key=x", "query"),
    ],
)
def test_base_urls_are_checked(url, said):
    if said is None:
        assert RunwareBackend(LONG_KEY, base_url=url).base_url == "http://127.0.0.1:8765"
        return
    with pytest.raises(ConfigurationError) as caught:
        RunwareBackend(LONG_KEY, base_url=url)
    assert said in str(caught.value)


def test_the_repr_shows_neither_key_nor_credentials():
    backend = RunwareBackend(LONG_KEY, base_url="http://127.0.0.1:8765")
    assert LONG_KEY not in repr(backend) and "***" in repr(backend)


def test_task_errors_keep_their_shape_after_redaction():
    """Redaction rebuilds wire errors from their fields: code, parameter and taskUUID survive."""

    def answer(received):
        task = received.tasks[0]
        error = {"code": "invalidPrompt", "parameter": "positivePrompt", "taskUUID": task["taskUUID"]}
        return json_answer({"errors": [{**error, "message": f"bad prompt for {LONG_KEY}"}]}, status=400)

    with HostileServer(answer) as server:
        backend = RunwareBackend(LONG_KEY, base_url=server.url, retry_policy=FAST)
        with pytest.raises(TaskError) as caught:
            backend.generate(request())
        backend.close()
    error: KandinskyNBError = caught.value
    assert error.code == "invalidPrompt" and error.parameter == "positivePrompt"
    assert LONG_KEY not in everything_about(error) and "***" in str(error)
