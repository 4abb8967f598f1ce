"""Structure-only builds are local to the building thread: torch stays unpatched for the
rest of the process, whatever the order in which overlapping builds finish."""

from __future__ import annotations

import threading

from torch import nn

from headswap_gui.core.construction import build_empty

ORIGINAL_REGISTER = nn.Module.register_parameter


def test_layers_made_on_another_thread_during_a_build_are_real():
    inside, created = threading.Event(), threading.Event()
    layers: list[nn.Module] = []

    def builder() -> nn.Module:
        first = nn.Linear(3, 3)
        inside.set()
        assert created.wait(timeout=30)  # the other thread makes its layer right now
        return nn.Sequential(first, nn.Linear(3, 3))

    def other() -> None:
        assert inside.wait(timeout=30)
        layers.append(nn.Linear(4, 2))
        created.set()

    thread = threading.Thread(target=other)
    thread.start()
    built = build_empty(builder)
    thread.join(timeout=30)
    assert all(p.device.type == "meta" for p in built.parameters())
    assert all(p.device.type == "cpu" for p in layers[0].parameters())
    assert nn.Module.register_parameter is ORIGINAL_REGISTER


def test_overlapping_builds_that_finish_out_of_order_leave_torch_unchanged():
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, nn.Module] = {}

    def build_a() -> nn.Module:
        a_inside.set()
        assert b_inside.wait(timeout=30)  # B is inside its own build too
        return nn.Linear(2, 2)

    def build_b() -> nn.Module:
        assert a_inside.wait(timeout=30)
        b_inside.set()
        assert a_done.wait(timeout=30)  # A finishes first
        return nn.Linear(2, 2)

    def run(name, builder, done=None):
        results[name] = build_empty(builder)
        if done is not None:
            done.set()

    threads = [threading.Thread(target=run, args=("a", build_a, a_done)), threading.Thread(target=run, args=("b", build_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results["a"].weight.device.type == "meta" and results["b"].weight.device.type == "meta"
    assert nn.Linear(4, 2).weight.device.type == "cpu"
    assert nn.Module.register_parameter is ORIGINAL_REGISTER
