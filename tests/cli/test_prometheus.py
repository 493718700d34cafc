# SPDX-License-Identifier: MIT
"""bridgectl stats --prometheus, read back with prometheus_client's own parser
(the one Prometheus' Python client ships), against a real daemon."""
import json

from conftest import require_module, run_ctl, run_peer
from test_cli import EXIT_DAEMON_UNAVAILABLE, EXIT_INVALID_ARGUMENT, create

GAUGES = {"shmbridge_up", "shmbridge_info", "shmbridge_uptime_seconds", "shmbridge_segments",
          "shmbridge_segments_bytes", "shmbridge_clients", "shmbridge_attachments",
          "shmbridge_quarantined_objects", "shmbridge_segment_version",
          "shmbridge_segment_meta_version", "shmbridge_segment_attached",
          "shmbridge_segment_bytes", "shmbridge_stream_head_seq", "shmbridge_stream_readers",
          "shmbridge_stream_publish_rate"}
# The parser names a counter's family without its _total suffix.
COUNTERS = {"shmbridge_requests", "shmbridge_refused_connections"}


def scrape(daemon):
    parser = require_module("prometheus_client.parser")
    proc = run_ctl(daemon, "stats", "--prometheus", check=True)
    families = {f.name: f for f in parser.text_string_to_metric_families(proc.stdout)}
    return proc.stdout, families


def values(family, label="segment"):
    return {s.labels[label]: s.value for s in family.samples}


def test_prometheus_families_parse_with_help_and_type(daemon):
    text, families = scrape(daemon)
    assert set(families) == GAUGES | COUNTERS
    for name, family in families.items():
        assert family.type == ("counter" if name in COUNTERS else "gauge"), name
        assert family.documentation, f"{name} has no # HELP"
        exposed = name + "_total" if name in COUNTERS else name
        assert f"# HELP {exposed} " in text and f"# TYPE {exposed} {family.type}\n" in text
    for family in families.values():
        for sample in family.samples:
            assert sample.name.startswith("shmbridge_")
    assert families["shmbridge_up"].samples[0].value == 1
    (info,) = families["shmbridge_info"].samples
    assert info.labels["pid"] == str(daemon.proc.pid)
    assert info.labels["daemon"].startswith("bridged ")
    assert info.labels["shm_prefix"] == daemon.shm_prefix


def test_prometheus_values_match_the_daemon(daemon, client):
    create(daemon, "frames", "uint8", (16, 16))
    create(daemon, "depth", "float32", (4, 4))
    for _ in range(3):
        run_peer(daemon, "write", "frames", "7")  # each one a commit: version + 1
    held = client.attach("depth")  # one client attached while we scrape
    try:
        listed = {s["name"]: s for s in json.loads(run_ctl(daemon, "ls", "--json").stdout)}
        stats = json.loads(run_ctl(daemon, "stats", "--json").stdout)
        _, families = scrape(daemon)
    finally:
        held.close()

    assert values(families["shmbridge_segment_version"]) == {
        "frames": listed["frames"]["version"], "depth": listed["depth"]["version"]}
    assert listed["frames"]["version"] >= 3
    assert values(families["shmbridge_segment_attached"]) == {"frames": 0, "depth": 1}
    assert values(families["shmbridge_segment_bytes"]) == {
        name: s["total_bytes"] for name, s in listed.items()}
    assert values(families["shmbridge_segment_meta_version"]) == {
        name: s["meta_version"] for name, s in listed.items()}
    assert families["shmbridge_segments"].samples[0].value == 2 == stats["segments"]
    assert families["shmbridge_segments_bytes"].samples[0].value == stats["bytes"]
    (requests,) = families["shmbridge_requests"].samples
    assert requests.name == "shmbridge_requests_total"
    # The scrape's own requests come after the stats above.
    assert requests.value > stats["requests"]
    assert families["shmbridge_quarantined_objects"].samples[0].value == 0


def test_prometheus_and_json_exclude_each_other(daemon):
    proc = run_ctl(daemon, "stats", "--prometheus", "--json")
    assert proc.returncode == EXIT_INVALID_ARGUMENT
    assert json.loads(proc.stdout)["error"]["code"] == "invalid_argument"


def test_prometheus_without_a_daemon_prints_no_metrics(tmp_path):
    class Nobody:
        socket = str(tmp_path / "nobody.sock")

    proc = run_ctl(Nobody, "stats", "--prometheus")
    # A scrape that fails must not leave a file that looks like data.
    assert proc.returncode == EXIT_DAEMON_UNAVAILABLE
    assert proc.stdout == ""
    assert proc.stderr.startswith("bridgectl: daemon_unavailable: ")
