"""A Pipes message reader that hands a message over only once the whole of it has been written.

Dagster 1.13's ``PipesTempFileMessageReader`` parses whatever ``readline`` returns while it tails
the file. A message longer than one write (the training service's final report carries its plots
inline, ~40 KB) can be caught half-written: the reader thread then dies on a JSON error and the
materialization's metadata is lost. CI hit this on a loaded 2-core machine. This reader tails the
same kind of file with the same writer (``PipesDefaultMessageWriter``, one JSON message per line)
and waits for each line's newline.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_pipes import PipesDefaultMessageWriter

POLL_SECONDS = 0.01


def complete_lines(path: Path, should_stop: Callable[[], bool]) -> Iterator[str]:
    """Each line of a growing file once its newline is there; after ``should_stop()``, drain and end.

    A last line without a newline (a writer killed mid-message) is yielded as it is, so its parse
    error is reported instead of the message silently vanishing."""
    pending = ""
    with open(path, encoding="utf-8") as f:
        while True:
            stopping = should_stop()        # read first, then stop: nothing written before the stop is lost
            chunk = f.readline()
            while chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
                chunk = f.readline()
            if stopping:
                break
            time.sleep(POLL_SECONDS)
    if pending:
        yield pending


class WholeLineFileMessageReader(dg.PipesMessageReader):
    """Messages from a temporary file, one JSON object per complete line."""

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict[str, object]]:
        with tempfile.TemporaryDirectory(prefix="finai-pipes-") as folder:
            path = Path(folder) / "messages.jsonl"
            path.touch()
            closed = threading.Event()
            thread = threading.Thread(target=self._read, args=(path, handler, closed), daemon=True)
            thread.start()
            try:
                yield {PipesDefaultMessageWriter.FILE_PATH_KEY: str(path),
                       PipesDefaultMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: False}
            finally:
                closed.set()
                thread.join()

    @staticmethod
    def _read(path: Path, handler, closed: threading.Event) -> None:
        try:
            for line in complete_lines(path, closed.is_set):
                handler.handle_message(json.loads(line))
        except Exception:
            handler.report_pipes_framework_exception("WholeLineFileMessageReader reader thread", sys.exc_info())
            raise

    @property
    def expected_writer_count(self) -> int:
        """One writer: the training service's rank 0 (the base property warns that it is a preview)."""
        return 1

    def no_messages_debug_text(self) -> str:
        return "Attempted to read messages from a temporary file (WholeLineFileMessageReader)."
