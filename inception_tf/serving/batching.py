"""Requests joined into one model call, as TensorFlow Serving's `--enable_batching` does.

Requests whose inputs can be stacked (the same signature, and the same shape past the
batch dimension) wait in one queue. A batch closes when it holds `max_batch_size` rows or
when its first request has waited `timeout_s`; it runs on the one model thread while the
next batch fills, and each caller gets its own rows back. A request larger than
`max_batch_size` runs alone, in slices of that size.

One request cannot spoil the others: if a joined call fails (an image that does not
decode, say), each request of that batch is run again alone, so the error reaches only
the request that caused it.
"""

import asyncio
import concurrent.futures
import dataclasses

import numpy as np


@dataclasses.dataclass
class _Pending:
    inputs: dict
    rows: int
    future: asyncio.Future


def batch_key(signature_name, inputs):
    """What must match for two requests to share a batch."""
    return signature_name, tuple(sorted((name, array.shape[1:], array.dtype.str) for name, array in inputs.items()))


def _concatenate(items):
    names = items[0].inputs
    return {name: np.concatenate([item.inputs[name] for item in items]) for name in names}


def _in_slices(call, inputs, rows, size):
    """`call` on `inputs` `size` rows at a time, the outputs joined."""
    if rows <= size:
        return call(inputs)
    parts = [call({name: array[start:start + size] for name, array in inputs.items()}) for start in range(0, rows, size)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class Batcher:
    """`await batcher.run(key, inputs)` -> `call(joined inputs)`'s rows for these inputs.

    `call(signature_name, inputs)` runs the model (from the model thread) and returns
    {name: array}, batch first. `stats` counts the model calls, the rows they took, the
    largest call, and the requests that shared a call with others.
    """

    def __init__(self, call, max_batch_size, timeout_s):
        self.call, self.max_batch_size, self.timeout_s = call, max_batch_size, timeout_s
        self.queues, self.collectors = {}, {}
        self.model_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.stats = {"calls": 0, "rows": 0, "largest": 0, "joined": 0}

    async def run(self, signature_name, inputs):
        key = batch_key(signature_name, inputs)
        loop = asyncio.get_running_loop()
        if key not in self.queues:
            self.queues[key] = asyncio.Queue()
            self.collectors[key] = loop.create_task(self._collect(key))
        pending = _Pending(inputs, len(next(iter(inputs.values()))), loop.create_future())
        await self.queues[key].put(pending)
        return await pending.future

    async def _collect(self, key):
        queue, loop = self.queues[key], asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            rows, deadline = batch[0].rows, loop.time() + self.timeout_s
            while rows < self.max_batch_size:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                if rows + item.rows > self.max_batch_size:
                    await self._run(key[0], batch)
                    batch, rows, deadline = [item], item.rows, loop.time() + self.timeout_s
                    continue
                batch.append(item)
                rows += item.rows
            await self._run(key[0], batch)

    async def _run(self, signature_name, batch):
        loop = asyncio.get_running_loop()
        rows = sum(item.rows for item in batch)
        joined = _concatenate(batch) if len(batch) > 1 else batch[0].inputs
        try:
            outputs = await loop.run_in_executor(
                self.model_thread, _in_slices, lambda inputs: self._counted(signature_name, inputs), joined, rows,
                self.max_batch_size,
            )
        except Exception as error:  # noqa: BLE001: handed to the callers, whose request it answers
            if len(batch) == 1:
                _settle(batch[0].future, error=error)
                return
            for item in batch:  # alone, so that only the request at fault hears of it
                await self._run(signature_name, [item])
            return
        self.stats["joined"] += len(batch) if len(batch) > 1 else 0
        start = 0
        for item in batch:
            _settle(item.future, {name: value[start:start + item.rows] for name, value in outputs.items()})
            start += item.rows

    def _counted(self, signature_name, inputs):
        """`call`, counted in `stats` (from the model thread only)."""
        rows = len(next(iter(inputs.values())))
        self.stats["calls"] += 1
        self.stats["rows"] += rows
        self.stats["largest"] = max(self.stats["largest"], rows)
        return self.call(signature_name, inputs)

    def close(self):
        for task in self.collectors.values():
            task.cancel()
        self.model_thread.shutdown(wait=True)


def _settle(future, result=None, error=None):
    if future.done():  # the caller went away (its connection closed)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
