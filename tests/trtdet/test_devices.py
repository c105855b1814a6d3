"""Device names (``cpu``, ``cuda``, ``cuda:N``): parsing, the one-line errors, and where they reach."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import trtdet
from trtdet.cli.main import cli
from trtdet.devices import Device, check_present, device_kind, normalize_device, parse_device
from trtdet.errors import UsageError
from trtdet.options import DetectorOptions


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("cpu", Device("cpu")), ("cuda", Device("cuda")), ("cuda:0", Device("cuda", 0)), (" CUDA:12 ", Device("cuda", 12))],
)
def test_valid_names_parse(text, parsed):
    assert parse_device(text) == parsed
    assert normalize_device(text) == str(parsed)
    assert device_kind(text) == parsed.kind


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda1", "cpu:0", "", "cuda:0:1"])
def test_bad_names_are_one_line(text):
    with pytest.raises(UsageError) as caught:
        parse_device(text)
    message = str(caught.value)
    assert "\n" not in message and repr(text) in message and "'cuda:N'" in message


def test_options_normalise_the_device():
    assert DetectorOptions(device="CUDA:1").device == "cuda:1"
    with pytest.raises(UsageError, match="device: expected"):
        DetectorOptions(device="cuda:one")


def test_an_absent_gpu_is_one_line(monkeypatch):
    import trtdet.devices as devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    check_present("cuda:1")
    check_present("cpu")
    with pytest.raises(UsageError, match=r"^device cuda:2: only 2 CUDA GPUs are visible \(cuda:0..cuda:1\)$"):
        check_present("cuda:2")
    monkeypatch.setattr(devices, "visible_gpus", lambda: 1)
    with pytest.raises(UsageError, match=r"^device cuda:5: only 1 CUDA GPU is visible \(cuda:0..cuda:0\)$"):
        check_present("cuda:5")


@pytest.mark.skipif(__import__("trtdet.devices").devices.visible_gpus() > 0, reason="checks a machine without GPUs")
def test_load_on_a_missing_gpu_says_so_before_loading_anything():
    with pytest.raises(UsageError, match=r"^device cuda:0: no CUDA GPU is visible to this process$"):
        trtdet.load("yolo", device="cuda:0")


@pytest.mark.parametrize(
    ("device", "message"),
    [("gpu", "error: device: expected 'cpu', 'cuda' or 'cuda:N'"), ("cuda:99", "error: device cuda:99: ")],
)
def test_cli_reports_a_bad_or_absent_device_in_one_line(device, message, photos):
    result = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", str(photos["grace_hopper"]), "-q", "--device", device])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.output


def test_plain_cuda_without_a_gpu_is_the_same_one_line_as_cuda_n(monkeypatch, photos):
    """``--device cuda`` used to print every backend's reason (~400 characters); ``cuda:7`` said it plainly."""
    import trtdet.devices as devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    for device in ("cuda", "cuda:7"):
        with pytest.raises(UsageError, match=rf"^device {device}: no CUDA GPU is visible to this process$"):
            check_present(device)
        result = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", str(photos["grace_hopper"]), "-q", "--device", device])
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines() == [f"error: device {device}: no CUDA GPU is visible to this process"]
    monkeypatch.setattr(devices, "visible_gpus", lambda: 1)
    check_present("cuda")  # one GPU: plain cuda is fine


def test_a_cpu_only_torch_asks_the_driver(monkeypatch):
    """A CPU build of torch sees no GPU even where onnxruntime-gpu could use one: the driver is asked."""
    import torch

    import trtdet.devices as devices

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(devices, "_driver_gpus", lambda: 3)
    assert devices.visible_gpus() == 3
    monkeypatch.setattr(devices, "_driver_gpus", lambda: 0)
    assert devices.visible_gpus() == 0


def _no_parsing(monkeypatch):
    """Make any parse of a device name fail the test: a ``Device`` must be used as it is."""
    import trtdet.devices as devices

    def refuse(text):
        raise AssertionError(f"parsed {text!r} again")

    monkeypatch.setattr(devices, "parse_device", refuse)


def test_on_device_takes_a_parsed_device_as_it_is(monkeypatch):
    torch = pytest.importorskip("torch")
    from trtdet.devices import on_device, torch_device

    expected_gpu = torch.cuda.device(1)  # what on_device("cuda:1") gives, built here by torch itself
    _no_parsing(monkeypatch)
    with on_device(Device("cpu")) as entered:  # nothing to switch on the CPU or on plain cuda
        assert entered is None
    with on_device(Device("cuda")) as entered:
        assert entered is None
    gpu = on_device(Device("cuda", 1))  # not entered: this machine may have no GPU 1
    assert isinstance(gpu, torch.cuda.device) and gpu.idx == expected_gpu.idx == 1
    assert torch_device(Device("cuda", 2)) == torch.device("cuda", 2)
    assert torch_device(Device("cpu")) == torch.device("cpu")


def test_on_device_of_a_name_and_of_its_device_agree():
    pytest.importorskip("torch")
    from trtdet.devices import on_device

    assert on_device("cuda:3").idx == on_device(parse_device("cuda:3")).idx == 3
    assert type(on_device("cpu")) is type(on_device(Device("cpu")))


def test_a_parsed_absent_gpu_is_the_same_one_line(monkeypatch):
    import trtdet.devices as devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: 1)
    _no_parsing(monkeypatch)
    check_present(Device("cpu"))
    check_present(Device("cuda", 0))
    with pytest.raises(UsageError, match=r"^device cuda:2: only 1 CUDA GPU is visible \(cuda:0..cuda:0\)$"):
        check_present(Device("cuda", 2))


def test_load_parses_the_device_once(monkeypatch):
    """``trtdet.load`` parses the (already validated) device name once; the backend, the stages and the
    detector receive that ``Device`` through the ``RunContext``."""
    import trtdet.api as api
    import trtdet.devices as devices

    options = DetectorOptions(device="cpu")  # the boundary: the name is checked and normalised here
    parsed: list[str] = []
    real = devices.parse_device

    def counting(text):
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(devices, "parse_device", counting)
    monkeypatch.setattr(api, "parse_device", counting)
    detector = api.load_detector("yolo", options)
    try:
        assert parsed == ["cpu"] and detector.device == "cpu"
    finally:
        detector.close()
