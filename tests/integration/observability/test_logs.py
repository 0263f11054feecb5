"""JSON log lines, and the request id every line logged during a call carries."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from custody.observability.logs import JsonFormatter, RequestIdFilter, call_notes, note, request_context


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A handler built like the daemon's, on a private logger so the test sees only its own lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("custody.test.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_line_is_one_json_object_with_the_fixed_fields(captured: io.StringIO) -> None:
    logger = logging.getLogger("custody.test.observability")
    logger.info('plain %s with "quotes"\nand a newline', "text")
    logger.warning("ünïcode")
    parsed = lines(captured)
    assert len(parsed) == 2
    assert parsed[0]["message"] == 'plain text with "quotes"\nand a newline'
    assert parsed[0]["level"] == "INFO" and parsed[1]["level"] == "WARNING"
    assert parsed[0]["logger"] == "custody.test.observability"
    assert str(parsed[0]["time"]).endswith("+00:00")
    assert "request_id" not in parsed[0]


def test_lines_inside_a_call_carry_its_request_id_and_only_those(captured: io.StringIO) -> None:
    logger = logging.getLogger("custody.test.observability")
    with request_context("req_0123") as named:
        logger.info("inside a call that names a request")
        with request_context(None) as nested:
            logger.info("a nested call")
        logger.info("back in the outer call")
    logger.info("outside")
    parsed = lines(captured)
    assert named == "req_0123"
    assert nested.startswith("call_") and len(nested) == len("call_") + 16
    assert [line.get("request_id") for line in parsed] == [named, nested, named, None]


def test_concurrent_calls_keep_their_own_ids(captured: io.StringIO) -> None:
    logger = logging.getLogger("custody.test.observability")
    barrier = threading.Barrier(4)

    def call(index: int) -> None:
        with request_context(None) as correlation_id:
            barrier.wait()
            for _ in range(20):
                logger.info("call %d %s", index, correlation_id)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsed = lines(captured)
    assert len(parsed) == 80
    for line in parsed:
        assert str(line["message"]).endswith(str(line["request_id"]))


def test_exceptions_are_kept_inside_the_one_line(captured: io.StringIO) -> None:
    logger = logging.getLogger("custody.test.observability")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    (line,) = lines(captured)
    assert "ValueError: boom" in str(line["exception"])


def test_notes_inside_a_call_end_its_one_line_and_outside_are_lines_of_their_own(
    captured: io.StringIO,
) -> None:
    logger = logging.getLogger("custody.test.observability")
    with request_context(None) as correlation_id, call_notes() as notes:
        note(logger, "request %s on key %s: %s", "req_1", "ops", "APPROVED")
        note(logger, "request %s signed", "req_1")
        logger.warning("a warning is a line of its own at once")
        logger.info("SubmitRequest by backend: OK%s", notes)
    note(logger, "request %s signed by the worker", "req_2")
    parsed = lines(captured)
    assert [line["message"] for line in parsed] == [
        "a warning is a line of its own at once",
        "SubmitRequest by backend: OK; request req_1 on key ops: APPROVED; request req_1 signed",
        "request req_2 signed by the worker",
    ]
    assert [line.get("request_id") for line in parsed] == [correlation_id, correlation_id, None]


def test_notes_are_not_formatted_when_info_is_off(captured: io.StringIO) -> None:
    logger = logging.getLogger("custody.test.observability")
    logger.setLevel(logging.WARNING)

    class Unformattable:
        def __str__(self) -> str:
            raise AssertionError("formatted although INFO is off")

    with call_notes() as notes:
        note(logger, "request %s", Unformattable())
        logger.info("Call: OK%s", notes)
    assert lines(captured) == []
    assert str(notes) == ""
