"""What the stages share: bars for jobs in worker processes."""

import io
import pickle
import sys

from stages.common import WorkerBars


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_worker_bars_draw_one_bar_per_slot_on_a_terminal_and_close_it_when_done(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    bars = WorkerBars()
    bars(0, "parent A", 1024, 4096)
    bars(1, "parent B", 2048, 4096)
    assert sorted(bars._bars) == [0, 1] and bars._bars[1].n == 2048
    bars(0, "parent A", 4096, 4096)
    assert sorted(bars._bars) == [1]
    assert "parent A" in sys.stderr.getvalue() and "parent B" in sys.stderr.getvalue()


def test_worker_bars_are_silent_off_a_terminal_and_pickle_without_their_bars(monkeypatch, capsys):
    bars = WorkerBars()
    bars(0, "stack 1", 1, 3)  # pytest's captured stderr is not a terminal
    assert capsys.readouterr().err == "" and bars._bars == {}
    monkeypatch.setattr(sys, "stderr", Terminal())
    bars(0, "stack 1", 1, 3)
    copy = pickle.loads(pickle.dumps(bars))  # what a worker process receives
    assert copy._bars == {} and bars._bars
