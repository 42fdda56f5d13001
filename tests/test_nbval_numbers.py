"""tools/nbval_numbers.py: floats compared to their printed precision, the rest strict."""
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("nbval_numbers", ROOT / "tools" / "nbval_numbers.py")
nn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn)


@pytest.mark.parametrize("text, numbers", [
    ("< 1e-5", ["1e-5"]),
    ("max |a - b| = 9.5e-07", ["9.5e-07"]),
    ("-18.2 and +0.646 and 37019.91", ["-18.2", "+0.646", "37019.91"]),
    ("(4 ± 4)e+04", ["4", "4", "04"]),            # three integers: exact
    ("pi: ['0.50', '0.30']", ["0.50", "0.30"]),
    ("x1 K=50 L_2 v0.1.0 0xADDRESS float32 2D IWAE_5000", ["50"]),
    ("jax 0.10.2 on cpu", []),                    # a version string is text
    ("K = 5.", ["5"]),                            # a sentence's full stop is text
    ("[1. 2.]", ["1", "2"]),
    ("a−0.5, −0.5", ["0.5", "−0.5"]),             # Unicode minus; glued to a word: text
    ("exp(-87.3); 1/8; 83%; P(x1<-2)", ["-87.3", "1", "8", "83", "-2"]),
    ("< -1e3, 2.59e+06, .5", ["-1e3", "2.59e+06", ".5"]),
])
def test_split_numbers_finds_numbers_not_digits_in_words(text, numbers):
    texts, found = nn.split_numbers(text)
    assert found == numbers
    assert "".join(t + n for t, n in zip(texts, found + [""], strict=True)) == text


@pytest.mark.parametrize("committed, fresh", [
    ("0.125", "0.124"), ("0.125", "0.126"),
    ("0.29", "0.3"), ("0.3", "0.29"),             # rounding at a boundary shortens a repr
    ("-10.992", "-10.993"), ("37019.91", "37019.90"), ("0.50", "0.51"),
    ("9.5e-07", "9.6e-07"), ("1e-5", "2e-5"),     # a unit of the mantissa's last digit
    ("-0.0000", "+0.0000"), ("0.000", "-0.000"), ("−0.5", "-0.5"),
    ("0.30000000000000004", "0.30000000000000003"),
])
def test_a_unit_in_the_last_digit_matches(committed, fresh):
    assert nn.number_matches(committed, fresh)
    assert nn.text_matches(f"a = {committed} nats", f"a = {fresh} nats")


@pytest.mark.parametrize("committed, fresh", [
    ("2.558", "2.560"), ("0.125", "0.123"), ("9.5e-07", "9.7e-07"),
    ("-0.0001", "+0.0001"), ("0.29", "0.31"),
])
def test_two_units_fail(committed, fresh):
    assert not nn.number_matches(committed, fresh)
    assert not nn.text_matches(f"a = {committed} nats", f"a = {fresh} nats")


@pytest.mark.parametrize("committed, fresh", [
    ("9.9e-06", "1.0e-05"), ("1.5e-07", "1.5e-08"), ("1e-5", "1e-05"), ("1.0e+00", "1.0"),
])
def test_a_changed_exponent_fails(committed, fresh):
    assert not nn.number_matches(committed, fresh)


@pytest.mark.parametrize("committed, fresh", [
    ("7", "8"), ("04", "4"), ("0", "-0"), ("100", "100.0"), ("1.0", "1"), ("259", "260"),
])
def test_integers_must_be_written_the_same(committed, fresh):
    assert not nn.number_matches(committed, fresh)
    assert not nn.text_matches(f"n = {committed}", f"n = {fresh}")


@pytest.mark.parametrize("committed, fresh", [
    ("loss 0.125", "gain 0.125"),
    ("loss 0.125", "loss 0.124 nats"),
    ("a 0.5 b", "a 0.5 b 0.2"),                   # a number more
    ("a 0.5, 0.2", "a 0.5 0.2"),                   # the text between changed
    ("jax 0.10.2", "jax 0.10.3"),                  # versions are text
    ("v0.1.0", "v0.1.1"),
    ("x1 = 0.5", "x2 = 0.5"),
    ("x =  0.5", "x = 0.5"),                       # padding changed, the number did not
    ("0.5\n", "0.5"),
])
def test_text_changes_fail(committed, fresh):
    assert not nn.text_matches(committed, fresh)


@pytest.mark.parametrize("committed, fresh", [
    (" -0.0000|  0.3334|", "  0.0000|  0.3333|"),  # right-aligned column, a sign flip
    ("x =  9.999 nats", "x = 10.000 nats"),       # right-aligned: the padding gives way
    ("9.999 | a", "10.000| a"),                   # left-aligned
    ("gap 9.999 nats", "gap 10.000 nats"),        # free text: everything after shifts
    ("  1 |   0.100   0.29\n  2 |   0.180   0.5\n", "  1 |   0.101   0.3\n  2 |   0.179   0.5\n"),
])
def test_columns_stay_aligned_when_a_number_changes_width(committed, fresh):
    assert nn.text_matches(committed, fresh)


def stream(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def display(data, kind="display_data"):
    return {"output_type": kind, "data": dict(data), "metadata": {}}


def test_align_outputs_takes_the_committed_text_where_it_matches_and_copies():
    committed = [stream("loss 0.125\n"), display({"text/plain": "0.3", "image/png": "AAA"})]
    fresh = [stream("loss 0.124\n"), display({"text/plain": "0.29", "image/png": "BBB"})]
    aligned = nn.align_outputs(fresh, committed)
    assert aligned == [stream("loss 0.125\n"), display({"text/plain": "0.3", "image/png": "BBB"})]
    assert fresh[0]["text"] == "loss 0.124\n" and fresh[1]["data"]["text/plain"] == "0.29"


def test_align_outputs_leaves_differences_for_nbval_to_report():
    committed = [stream("loss 0.125\n"), stream("0.5\n", "stderr")]
    fresh = [stream("loss 0.122\n"), stream("0.7\n", "stderr")]
    assert nn.align_outputs(fresh, committed) == fresh


def test_align_outputs_pairs_fields_as_nbval_does():
    # nbval compares the k-th output of each stream name / MIME type, whatever the order of
    # outputs of different kinds; a field nbval skips is left alone.
    committed = [display({"text/plain": "a 0.5"}), stream("b 1.25\n"),
                 display({"text/plain": "c 2.5", "text/html": "<b>2.5</b>"}, "execute_result")]
    fresh = [stream("b 1.24\n"), display({"text/plain": "a 0.6"}),
             display({"text/plain": "c 2.4", "text/html": "<b>2.4</b>"}, "execute_result")]
    aligned = nn.align_outputs(fresh, committed, skip=("text/html",))
    assert aligned == [stream("b 1.25\n"), display({"text/plain": "a 0.5"}),
                       display({"text/plain": "c 2.5", "text/html": "<b>2.4</b>"},
                               "execute_result")]


def test_align_outputs_compares_sanitised_texts_and_error_values():
    committed = [stream("<object at 0x7f00aa> 0.125\n"),
                 {"output_type": "error", "ename": "ValueError", "evalue": "off by 0.125"}]
    fresh = [stream("<object at 0x7f11bb> 0.124\n"),
             {"output_type": "error", "ename": "ValueError", "evalue": "off by 0.126"}]
    def sanitize(text):
        return text.replace("0x7f11bb", "0x7f00aa")
    assert nn.align_outputs(fresh, committed, sanitize=sanitize) == committed


class FakeConfig:
    def __init__(self, workerid=None, dist="no"):
        if workerid is not None:
            self.workerinput = {"workerid": workerid}
        self.dist = dist

    def getoption(self, name, default=None):
        return self.dist if name == "dist" else default


@pytest.mark.parametrize("pin, config, core", [
    ("1", FakeConfig("gw0", dist="no"), 2),
    ("1", FakeConfig("gw1", dist="no"), 5),
    ("1", FakeConfig("gw3", dist="no"), 5),       # more workers than cores: they share
    ("1", FakeConfig(dist="no"), 2),              # no xdist: the process itself
    ("1", FakeConfig(dist="loadfile"), None),     # the xdist controller stays as it is
    ("0", FakeConfig("gw0", dist="no"), None),
    (None, FakeConfig("gw0", dist="no"), None),
])
def test_pin_cpu_gives_each_worker_its_own_core(monkeypatch, pin, config, core):
    calls = []
    monkeypatch.setattr(nn.os, "sched_getaffinity", lambda pid: {5, 2})
    monkeypatch.setattr(nn.os, "sched_setaffinity", lambda pid, cores: calls.append(cores))
    if pin is None:
        monkeypatch.delenv("NBVAL_PIN_CPU", raising=False)
    else:
        monkeypatch.setenv("NBVAL_PIN_CPU", pin)
    assert nn.pin_cpu(config) == core
    assert calls == ([] if core is None else [{core}])


# The whole chain: nbval under pytest-xdist with the plugin, on a notebook whose committed
# outputs were tampered with, one kernel for every case. Cell: (source, committed outputs,
# tags, whether it passes).
CASES = [
    ('print("x = 0.125, n = 7")', [stream("x = 0.124, n = 7\n")], [], True),
    ('print("x = 0.125")', [stream("x = 0.123\n")], [], False),
    ('print("loss 0.125")', [stream("gain 0.125\n")], [], False),
    ('print("tiny 1.5e-07")', [stream("tiny 1.5e-08\n")], [], False),
    ('print("n = 7")', [stream("n = 8\n")], [], False),
    ("x = 0.5", [stream("0.5\n")], [], False),                       # an output missing
    ("print(0.5)", [], [], False),                                   # an output extra
    ("print(0.5)", [stream("0.5\n"), stream("0.5\n", "stderr")], [], False),
    ("0.1 + 0.2", [display({"text/plain": "0.30000000000000003"}, "execute_result")], [], True),
    ('print(f"{-0.0:8.4f}|{1/3:8.4f}|")', [stream("  0.0000|  0.3334|\n")], [], True),
    ("print(object(), 1 / 8)", [stream("<object object at 0x7f0000000000> 0.126\n")], [], True),
    ('raise ValueError("off by 0.125")',
     [{"output_type": "error", "ename": "ValueError", "evalue": "off by 0.124", "traceback": []}],
     ["raises-exception"], True),
    ("import os; print(len(os.sched_getaffinity(0)))", [stream("1\n")], [], True),
]


def test_nbval_with_the_plugin_on_a_tampered_notebook(tmp_path):
    cells = []
    for count, (source, outputs, tags, _) in enumerate(CASES, start=1):
        cell = new_code_cell(source, execution_count=count, metadata={"tags": tags} if tags else {})
        for output in outputs:
            output = dict(output)
            if output["output_type"] == "execute_result":
                output["execution_count"] = count
            cell.outputs.append(new_output(**output))
        cells.append(cell)
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                                  "display_name": "Python 3"}})
    nbformat.validate(notebook)
    nbformat.write(notebook, tmp_path / "tampered.ipynb")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")   # not the repository's configuration
    (tmp_path / "sanitize.cfg").write_text((ROOT / "tools" / "nbval_sanitize.cfg").read_text())

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tools"), env.get("PYTHONPATH")]))
    env["NBVAL_PIN_CPU"] = "1"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nbval_numbers", "-p", "no:cacheprovider",
         "-n", "1", "--dist", "loadfile", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", "sanitize.cfg",
         "--junitxml", "report.xml", "tampered.ipynb"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert f"rootdir: {tmp_path}" in run.stdout, run.stdout
    assert "each worker pinned to one core" in run.stdout, run.stdout
    outcomes = {}
    for case in ET.parse(tmp_path / "report.xml").iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[int(case.get("name").removeprefix("Cell "))] = not failed
    expected = {i: passes for i, (*_, passes) in enumerate(CASES)}
    assert outcomes == expected, run.stdout[-6000:]
    assert run.returncode == 1
