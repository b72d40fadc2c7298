"""`netc check`: exit codes, the JSON report, the summary table, and its import budget."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_netc

RESNET = ROOT / "tests" / "conformance" / "ok" / "resnet50.net"


def test_check_prints_a_summary_table():
    proc = run_netc("check", RESNET)
    assert proc.returncode == 0, proc.stderr
    assert "stage_1.bottleneck_0.conv2d_2" in proc.stdout
    assert "25,557,032" in proc.stdout
    assert "f32[N, 1000]" in proc.stdout


def test_check_json_report():
    proc = run_netc("check", "--json", RESNET)
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["network"] == "resnet50"
    assert report["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["N", 3, 224, 224]}]
    assert report["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["N", 1000]}]
    layer = next(layer for layer in report["layers"] if layer["name"] == "conv2d_0")
    assert layer == {
        "name": "conv2d_0",
        "op": "conv2d",
        "shape": ["N", 64, 112, 112],
        "parameters": 9408,
    }
    assert sum(layer["parameters"] for layer in report["layers"]) == report["parameters"] == 25_557_032


def test_derived_dimensions_print_as_python(tmp_path):
    spec = tmp_path / "sym.net"
    spec.write_text("network sym(x: [N, 3, H, W]) {\n  return x -> conv2d(8, kernel=3, stride=2, padding=1)\n}\n")
    report = json.loads(run_netc("check", "--json", spec).stdout)
    assert report["outputs"][0]["shape"] == ["N", 8, "(H - 1) // 2 + 1", "(W - 1) // 2 + 1"]
    assert report["outputs"][0]["name"] == "output_0"


def test_errors_exit_1_and_render_with_a_caret():
    proc = run_netc("check", ROOT / "tests" / "conformance" / "errors" / "add_mismatch.net")
    assert proc.returncode == 1
    assert (
        "add_mismatch.net:7:17: error: cannot add tensors of shapes [N, 256, 32, 32] and [N, 64, 32, 32]" in proc.stderr
    )
    assert "    7 |     return relu(y + skip)\n      |                 ^^^^^^^^" in proc.stderr
    assert "note:" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["check"],
        ["frobnicate"],
        ["check", "x.net", "--max-nodes", "zero"],
        ["check", "x.net", "--bogus"],
    ],
    ids=["no-command", "no-file", "unknown-command", "bad-number", "unknown-option"],
)
def test_usage_errors_exit_2(args):
    proc = run_netc(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_missing_file_is_a_clean_error(tmp_path):
    for as_json in ([], ["--json"]):
        proc = run_netc("check", *as_json, tmp_path / "missing.net")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["errors"][0]["message"].startswith("no such file")


def test_unused_layers_warn_and_are_not_counted(tmp_path):
    spec = tmp_path / "dead.net"
    spec.write_text("network dead(x: [N, 8]) {\n  unused = x -> linear(100) -> relu\n  return x -> linear(2)\n}\n")
    proc = run_netc("check", "--json", spec)
    report = json.loads(proc.stdout)
    assert report["parameters"] == 18
    assert [w["line"] for w in report["warnings"]] == [2]
    assert "reaches no output" in report["warnings"][0]["message"]
    proc = run_netc("check", spec)
    assert proc.returncode == 0 and "warning:" in proc.stderr


def test_network_choice(tmp_path):
    spec = tmp_path / "two.net"
    spec.write_text("network a(x: [N, 4]) { return x -> linear(3) }\nnetwork b(x: [N, 4]) { return x -> linear(5) }\n")
    proc = run_netc("check", "--json", spec)
    assert proc.returncode == 1 and "choose one with --network" in proc.stdout
    report = json.loads(run_netc("check", "--json", "--network", "b", spec).stdout)
    assert report["parameters"] == 25


def test_check_does_not_import_torch_or_onnx():
    code = (
        "import sys; from netc.compiler.cli import main; "
        f"code = main(['check', '--json', {str(RESNET)!r}]); "
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
        "print(heavy, file=sys.stderr); sys.exit(1 if heavy else code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dump_ir_is_deterministic():
    first = run_netc("check", "--dump-ir", RESNET).stdout
    assert first == run_netc("check", "--dump-ir", RESNET).stdout
    assert "%conv2d_0 : f32[N, 64, 112, 112] = conv2d(%image)" in first


def test_the_script_flushes_everything_before_its_quick_exit():
    """`netc` ends with os._exit (cli.run): whatever it printed must be out by then, here
    a dump the command writes without flushing, into a pipe (block-buffered)."""
    from conftest import NETC
    from netc.compiler import compile_file
    from netc.compiler.printer import print_graph

    path = ROOT / "examples" / "gpt2.net"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as by default
    done = subprocess.run(
        [str(NETC), "check", str(path), "--dump-ir"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == print_graph(compile_file(path).graph)


# The summary table goes through rich, which answers a closed pipe with SystemExit(1).
@pytest.mark.parametrize(
    "flags, reader, read",
    [(["--json"], "head -c 5", '{"ok"'), ([], "head -c 5", "netwo"), (["--json"], "true", ""), ([], "true", "")],
)
@pytest.mark.parametrize("unbuffered", [True, False])
def test_a_reader_that_stops_early_is_no_error(flags, reader, read, unbuffered):
    from conftest import NETC

    command = " ".join([f"'{NETC}'", "check", *flags, f"'{ROOT / 'examples' / 'resnet50.net'}'"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    shell = f"{command} | {reader}; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, read, "")


@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_a_closed_standard_stream_is_no_error(closed, tmp_path):
    from conftest import NETC

    out = tmp_path / "m.onnx"
    shell = f"'{NETC}' compile '{ROOT / 'examples' / 'residual_mlp.net'}' --target onnx -o '{out}' {closed}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
