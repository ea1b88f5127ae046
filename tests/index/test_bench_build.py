"""`text4vis bench --index-build` (index/bench_build.py): the local engine's two builds per worker count on
generated clips, and the one-line refusals. Only the shape of the answer is tested: speed figures live in
the README with the command that printed them."""
from __future__ import annotations

import json

from conftest import run_cli


def test_bench_index_build_local_cli():
    rc, out, err = run_cli("bench", "--index-build", "--engine", "local", "--videos", "9", "--frames", "4", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["engine"] == "local" and r["videos"] == [8, 9] and r["cpus"] >= 1 and len(r["load_average"]) == 6
    assert set(r["cases"]) == {"workers=1", "workers=2"}
    for case in r["cases"].values():
        assert set(case) == {"seconds_8", "seconds_9", "per_video_ms", "steady_videos_per_s", "startup_s"}
        assert case["seconds_8"] > 0 and case["seconds_9"] > 0


def test_bench_index_build_refuses_too_few_videos():
    rc, _, err = run_cli("bench", "--index-build", "--videos", "8")
    assert rc == 2 and err.count("\n") == 1 and "--videos must be more than 8" in err
