"""Asynchronous stale updates blow up where mini-batch accumulation does not."""

import numpy as np

from jaxembed.stream import async_sim


def test_no_staleness_is_plain_sgd_for_both():
    problem = async_sim.make_problem(num_examples=4096)
    a = np.asarray(async_sim.run_async(problem, 0, 0.002))
    b = np.asarray(async_sim.run_accumulated(problem, 0, 0.002))
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_async_diverges_where_accumulation_converges():
    problem = async_sim.make_problem()
    result = async_sim.sweep(problem, stalenesses=(8, 64), learning_rate=0.002)
    blown_async = async_sim.blown_up(result["async"])
    blown_acc = async_sim.blown_up(result["accumulate"])
    assert not blown_async[0] and not blown_acc[0]  # little staleness: both fine
    assert blown_async[1] and not blown_acc[1]  # τ = 64: only the stale updates blow up


def test_plot_is_written(tmp_path):
    problem = async_sim.make_problem(num_examples=2048)
    result = async_sim.sweep(problem, stalenesses=(0, 4), learning_rate=0.002)
    out = tmp_path / "async.png"
    async_sim.plot(result, str(out), 0.002)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
