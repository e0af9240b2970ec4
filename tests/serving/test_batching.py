"""Concurrent requests joined into model calls, each caller given its own rows back."""

import asyncio
import threading
import time

import numpy as np
import pytest

from inception_tf.serving.batching import Batcher


class Model:
    """Doubles its input; records the rows of every call, and fails on a row of -1."""

    def __init__(self, delay=0.0):
        self.calls, self.delay, self.threads = [], delay, set()

    def __call__(self, signature_name, inputs):
        self.threads.add(threading.current_thread().name)
        x = inputs["x"]
        self.calls.append(len(x))
        time.sleep(self.delay)
        if (x == -1).any():
            raise ValueError("row -1 does not decode")
        return {"y": x * 2, "name": np.full(len(x), signature_name, object)}


def run_together(batcher, requests, stagger=0.0):
    async def main():
        async def one(index, rows):
            await asyncio.sleep(stagger * index)
            return await batcher.run("sig", {"x": rows})

        return await asyncio.gather(*(one(i, rows) for i, rows in enumerate(requests)), return_exceptions=True)

    try:
        return asyncio.run(main())
    finally:
        batcher.close()


def rows(start, count):
    return np.arange(start, start + count, dtype=np.float32)[:, None]


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    model = Model()
    requests = [rows(10 * i, 1 + i % 3) for i in range(8)]  # 8 requests, 15 rows
    batcher = Batcher(model, max_batch_size=16, timeout_s=0.05)
    answers = run_together(batcher, requests)
    assert model.calls == [15]
    assert batcher.stats == {"calls": 1, "rows": 15, "largest": 15, "joined": 8}
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer["y"], request * 2)
        assert list(answer["name"]) == ["sig"] * len(request)
    assert model.threads == {"model_0"}  # one model thread, off the event loop


def test_a_batch_closes_at_the_maximum_size():
    model = Model()
    requests = [rows(i, 1) for i in range(10)]
    answers = run_together(Batcher(model, max_batch_size=4, timeout_s=0.05), requests)
    assert model.calls == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([a["y"] for a in answers]), np.concatenate(requests) * 2)


def test_a_batch_closes_when_its_first_request_has_waited_the_timeout():
    model = Model()
    # Requests 0.1 s apart against a 20 ms wait: no two share a call.
    run_together(Batcher(model, max_batch_size=16, timeout_s=0.02), [rows(i, 1) for i in range(3)], stagger=0.1)
    assert model.calls == [1, 1, 1]


def test_a_request_larger_than_the_maximum_runs_alone_in_slices():
    model = Model()
    answers = run_together(Batcher(model, max_batch_size=4, timeout_s=0.01), [rows(0, 10)])
    assert model.calls == [4, 4, 2]
    np.testing.assert_array_equal(answers[0]["y"], rows(0, 10) * 2)


def test_different_shapes_are_never_joined():
    model = Model()
    batcher = Batcher(model, max_batch_size=16, timeout_s=0.05)

    async def main():
        wide = np.zeros((1, 2), np.float32)
        return await asyncio.gather(batcher.run("sig", {"x": rows(0, 1)}), batcher.run("sig", {"x": wide}))

    try:
        narrow, wide = asyncio.run(main())
    finally:
        batcher.close()
    assert sorted(model.calls) == [1, 1] and narrow["y"].shape == (1, 1) and wide["y"].shape == (1, 2)


def test_a_failing_request_does_not_fail_the_others_of_its_batch():
    model = Model()
    requests = [rows(i, 1) for i in range(5)]
    requests[2] = np.array([[-1.0]], np.float32)
    answers = run_together(Batcher(model, max_batch_size=16, timeout_s=0.05), requests)
    assert isinstance(answers[2], ValueError) and "does not decode" in str(answers[2])
    for index in (0, 1, 3, 4):
        np.testing.assert_array_equal(answers[index]["y"], requests[index] * 2)
    assert model.calls == [5, 1, 1, 1, 1, 1]  # joined, failed, then each alone


def test_the_next_batch_fills_while_the_model_runs():
    model = Model(delay=0.2)
    requests = [rows(i, 1) for i in range(6)]
    # The first request runs alone; the other five arrive during its 0.2 s call and wait together.
    run_together(Batcher(model, max_batch_size=16, timeout_s=0.0), requests, stagger=0.02)
    assert model.calls[0] == 1 and sum(model.calls) == 6 and len(model.calls) <= 3


@pytest.mark.parametrize("size", [1, 3])
def test_the_batcher_keeps_the_rows_in_order_across_many_requests(size):
    model = Model()
    requests = [rows(100 * i, size) for i in range(40)]
    answers = run_together(Batcher(model, max_batch_size=8, timeout_s=0.01), requests)
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer["y"], request * 2)
