"""CPU threads are one setting of the whole process: jobs claim it, nobody changes it under another."""

from __future__ import annotations

import threading

import torch

from headswap_gui.core.devices import cpu_threads, feature_pass_dtype, one_cpu_thread, training_precision

CPU = torch.device("cpu")


def _count_on_a_new_thread() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join(30)
    return seen[0]


def test_a_job_that_comes_in_during_another_runs_with_its_count_and_the_last_one_out_restores():
    before = _count_on_a_new_thread()
    first_in, second_done, first_may_leave = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first_job() -> None:
        with cpu_threads(CPU, 1):
            seen["first"] = torch.get_num_threads()
            first_in.set()
            second_done.wait(30)
            seen["first after the second"] = torch.get_num_threads()
            seen["a thread started meanwhile"] = _count_on_a_new_thread()
            first_may_leave.wait(30)

    def second_job() -> None:
        with cpu_threads(CPU, 2):  # another job while the first holds the count
            seen["second"] = torch.get_num_threads()
            with one_cpu_thread():  # not alone: nothing changes
                seen["second, small work"] = torch.get_num_threads()
        second_done.set()

    first = threading.Thread(target=first_job)
    first.start()
    try:
        assert first_in.wait(30)
        second = threading.Thread(target=second_job)
        second.start()
        second.join(30)
    finally:
        first_may_leave.set()
        first.join(30)
    assert seen == {
        "first": 1, "second": 1, "second, small work": 1, "first after the second": 1, "a thread started meanwhile": 1,
    }
    assert _count_on_a_new_thread() == before  # the last one out put it back


def test_one_job_alone_may_drop_to_one_thread_for_tiny_work():
    before = torch.get_num_threads()
    with cpu_threads(CPU, 2):
        assert torch.get_num_threads() == 2
        with one_cpu_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_other_devices_leave_the_threads_alone_and_a_cpu_trains_in_fp32():
    before = torch.get_num_threads()
    with cpu_threads(torch.device("meta"), 1):
        assert torch.get_num_threads() == before
    precision = training_precision("bf16", None, CPU, native_bf16=False)
    assert precision.autocast_dtype is None and precision.features_dtype is None and precision.channels_last
    assert precision.note == "mixed precision trains on CUDA only; training in fp32 on cpu"
    assert not training_precision("fp32", False, CPU).channels_last


def test_the_feature_pass_runs_in_bf16_on_cpus_that_multiply_bf16_natively():
    for precision in ("auto", "bf16"):
        chosen = training_precision(precision, None, CPU, native_bf16=True)
        assert chosen.autocast_dtype is None and chosen.features_dtype == torch.bfloat16, precision
    assert feature_pass_dtype("fp32", CPU, native_bf16=True) is None  # fp32 asked for: fp32 everywhere
    assert feature_pass_dtype("auto", CPU, native_bf16=False) is None  # emulated bf16 would be slower
    assert feature_pass_dtype("fp16", CPU, native_bf16=True) is None
