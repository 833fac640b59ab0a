"""The train loop's prefetcher: same batches in the same order, and the checkpointed iterator
state is that of the next batch the loop takes, however far ahead the thread has read."""

import pytest

from vidmix.training.prefetch import Prefetch


class Counter:
    """A data iterator whose state is the index of the next batch; fails at `fail_at`."""

    def __init__(self, fail_at=None):
        self.position, self.fail_at = 0, fail_at

    def __next__(self):
        if self.position == self.fail_at:
            raise OSError(f"cannot read batch {self.position}")
        self.position += 1
        return {"x": self.position - 1}

    def get_state(self):
        return str(self.position).encode()

    def set_state(self, state):
        self.position = int(state)


@pytest.mark.parametrize("size", [0, 1, 3])
def test_batches_and_state_follow_the_loop_not_the_thread(size):
    source = Counter()
    batches = Prefetch(source, put=lambda b: {"x": b["x"] * 10}, size=size)
    assert batches.get_state() == b"0"
    assert [next(batches)["x"] for _ in range(5)] == [0, 10, 20, 30, 40]
    assert batches.get_state() == b"5"  # the thread has read further ahead
    assert source.position >= 5 + (size > 0)  # with a thread, batch 5 is already read
    resumed = Counter()
    resumed.set_state(batches.get_state())  # a resume from this checkpoint
    again = Prefetch(resumed)
    assert next(again)["x"] == 5
    again.close()
    batches.close()
    with pytest.raises(TypeError, match="before wrapping"):
        batches.set_state(b"0")


def test_a_pipeline_error_surfaces_at_its_batch():
    batches = Prefetch(Counter(fail_at=2))
    assert [next(batches)["x"] for _ in range(2)] == [0, 1]
    with pytest.raises(OSError, match="cannot read batch 2"):
        next(batches)
    batches.close()
