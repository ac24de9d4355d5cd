"""The Pipes message reader waits for a whole message: a half-written line is never parsed."""

from __future__ import annotations

import json
import threading
import time

from finai_assets.defs.pipes import complete_lines


def test_a_message_written_in_pieces_is_read_once_whole(tmp_path):
    path = tmp_path / "messages.jsonl"
    path.touch()
    big = json.dumps({"method": "report_asset_materialization", "params": {"plot": "x" * 100_000}}) + "\n"
    stop, got = threading.Event(), []

    def write() -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write('{"method": "opened"}\n')
            for lo in range(0, len(big), 7000):           # a long line arrives in several writes
                f.write(big[lo:lo + 7000])
                f.flush()
                time.sleep(0.03)
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    got = [json.loads(line) for line in complete_lines(path, stop.is_set)]
    writer.join()
    assert [m["method"] for m in got] == ["opened", "report_asset_materialization"]
    assert len(got[1]["params"]["plot"]) == 100_000


def test_a_message_cut_off_by_a_dying_writer_is_still_handed_over(tmp_path):
    path = tmp_path / "messages.jsonl"
    path.write_text('{"method": "opened"}\n{"method": "log", "par')
    lines = list(complete_lines(path, lambda: True))
    assert lines == ['{"method": "opened"}\n', '{"method": "log", "par']   # the parse error is reported, not lost
