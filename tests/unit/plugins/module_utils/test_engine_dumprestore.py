"""engine.stream as the dump and the restore use it: a failing stdin writer."""
import sys
import time

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import stream

# reads its whole stdin, then leaves a mark (what psql does at the end of a script: run it, commit)
CONSUMER = "import sys; data = sys.stdin.buffer.read(); open(sys.argv[1], 'w').close(); sys.stdout.write('done')"


class Cut(Exception):
    pass


def _failing_writer(sink):
    sink.write(b"x" * 200000)
    raise Cut("the source broke")


def test_a_failing_writer_kills_the_child_before_it_sees_the_end_of_its_input(tmp_path):
    mark = tmp_path / "completed"
    with pytest.raises(Cut):
        stream([sys.executable, "-c", CONSUMER, str(mark)], stdin=_failing_writer)
    time.sleep(0.2)
    assert not mark.exists()


def test_a_failing_writer_with_a_stdout_reader_does_not_hang(tmp_path):
    mark = tmp_path / "completed"
    started = time.monotonic()
    with pytest.raises(Cut):
        stream([sys.executable, "-c", CONSUMER, str(mark)], stdin=_failing_writer,
               stdout=lambda pipe: pipe.read(), timeout=30)
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert not mark.exists()
