"""The batcher on its own: batches form, failures stay with their input, dead inputs are dropped."""

import asyncio
import time

import pytest
import torch

from models.networks.rescaler import Encoded
from service.batcher import Batcher, DeadlineExceededError, QueueFullError, ShuttingDownError


class FakeModel:
    """encode doubles its input; a batch containing a NaN fails as a whole."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode(self, x: torch.Tensor) -> Encoded:
        time.sleep(0.02)
        self.batches.append(x.shape[0])
        if torch.isnan(x).any():
            raise ValueError("NaN input")
        return Encoded(rgb=x * 2)

    def decode(self, e: Encoded) -> torch.Tensor:
        return e.rgb / 2


def make(model: FakeModel, **kw) -> Batcher:
    options = dict(max_batch=4, max_wait_s=0.1, max_queue=16) | kw
    batcher = Batcher(engine_for=lambda wid, device: model, devices=[torch.device("cpu")], **options)
    batcher.start()
    return batcher


def inputs(n: int, size: int = 4) -> list[torch.Tensor]:
    return [torch.full((1, 3, size, size), float(i)) for i in range(n)]


async def submit(batcher, payloads, deadline_s: float = 10):
    return await batcher.run("encode", "w", payloads, deadline=time.monotonic() + deadline_s)


def test_same_shaped_inputs_share_a_batch_and_come_back_in_order():
    model = FakeModel()

    async def go():
        batcher = make(model)
        outs = await asyncio.gather(submit(batcher, inputs(2)), submit(batcher, inputs(2)))
        await batcher.drain(5)
        return outs

    outs = asyncio.run(go())
    assert [o.rgb[0, 0, 0, 0].item() for o in outs[0]] == [0.0, 2.0]
    assert model.batches == [4]


def test_a_batch_holds_only_what_the_memory_bound_allows():
    """Inputs whose size fills the bound run alone even when several wait; small ones still batch."""
    model = FakeModel()

    async def go():
        batcher = make(model, batch_pixels=lambda weights_id: 64)  # one 8x8 input, or four 4x4 ones
        big = await asyncio.gather(submit(batcher, inputs(3, size=8)))
        small = await asyncio.gather(submit(batcher, inputs(3)))
        await batcher.drain(5)
        return big, small

    asyncio.run(go())
    assert model.batches == [1, 1, 1, 3]


def test_different_shapes_batch_separately():
    model = FakeModel()

    async def go():
        batcher = make(model)
        await asyncio.gather(submit(batcher, inputs(2, 4)), submit(batcher, inputs(2, 8)))
        await batcher.drain(5)

    asyncio.run(go())
    assert sorted(model.batches) == [2, 2]


def test_a_failing_input_fails_only_its_request():
    model = FakeModel()

    async def go():
        batcher = make(model)
        bad = [torch.full((1, 3, 4, 4), float("nan"))]
        results = await asyncio.gather(submit(batcher, inputs(3)), submit(batcher, bad), return_exceptions=True)
        await batcher.drain(5)
        return results

    good, failed = asyncio.run(go())
    assert len(good) == 3 and isinstance(failed, ValueError)
    assert model.batches[0] == 4 and sorted(model.batches[1:]) == [1, 1, 1, 1]  # retried one by one


def test_queue_bound_deadline_and_shutdown():
    model = FakeModel()

    async def go():
        batcher = make(model, max_queue=3, max_wait_s=0.3, max_batch=8)
        waiting = asyncio.create_task(submit(batcher, inputs(5)))  # an empty queue takes a big request
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError, match="the queue holds 5 of 3 inputs"):
            await submit(batcher, inputs(1))
        assert len(await waiting) == 5
        model.batches.clear()
        with pytest.raises(DeadlineExceededError):
            await submit(batcher, inputs(1), deadline_s=0.05)
        assert await batcher.drain(5)
        with pytest.raises(ShuttingDownError):
            await submit(batcher, inputs(1))

    asyncio.run(go())
    assert model.batches == []  # the expired input never reached the model


def test_cancelled_requests_are_dropped_before_the_model():
    model = FakeModel()

    async def go():
        batcher = make(model, max_wait_s=0.3)
        task = asyncio.create_task(submit(batcher, inputs(2)))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.5)
        await batcher.drain(5)

    asyncio.run(go())
    assert model.batches == []


def test_drain_lets_accepted_work_finish():
    model = FakeModel()

    async def go():
        batcher = make(model, max_wait_s=0.2)
        work = asyncio.create_task(submit(batcher, inputs(2)))
        await asyncio.sleep(0.01)
        drained = await batcher.drain(5)
        return drained, await work

    drained, outs = asyncio.run(go())
    assert drained and len(outs) == 2
