import json

import pytest

from lvm_tutorial import bench

FIELDS = {"wall_s", "steps_per_s", "compiles", "bias_nats", "bias_se"}


def test_bench_runs_on_a_tiny_run_and_writes_its_json(tmp_path):
    path = tmp_path / "bench.json"
    results = bench.main(["--iterations", "40", "--methods", "exact", "fixed_cap",
                          "--bias-draws", "16384", "--json", str(path)])
    written = json.loads(path.read_text())
    assert set(written) == {"exact", "fixed_cap"} and written == json.loads(json.dumps(results))
    for method, row in written.items():
        assert FIELDS <= set(row), method
        assert row["wall_s"] > 0 and row["steps_per_s"] > 0 and row["bias_se"] > 0
    # the exact trainer compiles a bounded number of programs, however many values of K it meets
    assert written["exact"]["compiles"] <= 6
    # the cap's truncation bias is negative: IWAE_128 sits about 0.28 nats below log p(x) here
    assert written["fixed_cap"]["bias_nats"] < 0


def test_bench_rejects_unknown_methods_and_bad_counts():
    with pytest.raises(SystemExit):
        bench.main(["--methods", "magic"])
    with pytest.raises(SystemExit):
        bench.main(["--iterations", "0"])
    with pytest.raises(ValueError, match="method"):
        bench._train("magic", None, None, None, 1)
