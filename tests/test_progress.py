"""Progress bars redraw ten times a second on a terminal, rarely into a log file."""
import io
import re
import tempfile
import time
from pathlib import Path

from conftest import make_cfg
from nas_sr.cli import run_job
from nas_sr.progress import LOG_INTERVAL_S, duration, epoch_line, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(stream: io.StringIO) -> list[str]:
    """The states a bar over 0.3 s of work wrote to `stream`."""
    bar = progress_bar(range(30), file=stream)
    for i in bar:
        time.sleep(0.01)
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")  # as the training loops do, every step
    return stream.getvalue().strip("\r\n").split("\r")


def test_a_bar_into_a_log_file_redraws_only_at_start_and_end():
    logged = progress_bar(range(3), file=io.StringIO())
    assert logged.mininterval == LOG_INTERVAL_S >= 10
    # tqdm's monitor would otherwise redraw it between two regular redraws, with a stale count
    assert logged.maxinterval > logged.mininterval
    assert progress_bar(range(3), file=Terminal()).mininterval < 1
    log, terminal = drawn(io.StringIO()), drawn(Terminal())
    assert len(log) == 2 < len(terminal)  # a terminal sees it move; a log the ends only
    assert "0/30" in log[0] and "30/30" in log[1] and "loss=0.0333" in log[1]


def test_a_bar_a_loop_asks_to_erase_stays_in_a_log_at_its_last_state():
    """A log file keeps each bar's end (a terminal's is erased), not only its 0% line."""
    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        for _ in progress_bar(range(4), file=stream, leave=False, desc="epoch 1 shared"):
            pass
    assert log.getvalue().rstrip().split("\r")[-1].startswith("epoch 1 shared: 100%")
    assert "100%" not in terminal.getvalue().rstrip().split("\r")[-1]


def test_search_and_retrain_print_each_epoch_the_same_way_with_the_time_left(capsys):
    pattern = re.compile(r"^epoch (\d+)/(\d+): .+; [\d.]+s[^,]*(, (\d+h \d\dm|\d+m \d\ds|\d+s) "
                         r"left)?$")
    for job, overrides in (("search", []), ("retrain", ["genotype=searched_x2"])):
        with tempfile.TemporaryDirectory() as run_dir:
            run_job(job, make_cfg(job, *overrides), Path(run_dir))
        lines = [line for line in capsys.readouterr().out.splitlines()
                 if line.startswith("epoch ")]
        assert len(lines) == 2 and all(pattern.match(line) for line in lines), lines
        assert "left" not in lines[-1]  # nothing left after the last epoch


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (0.4, 45, 200, 3725)] == ["0s", "45s", "3m 20s", "1h 02m"]
    line = epoch_line(3, "10", "loss 0.1", "2.0s", 14.0)
    assert line == "epoch 3/10: loss 0.1; 2.0s, 14s left"
    assert epoch_line(3, "1.2/5 min", "x", "1s", 0.2) == "epoch 3 (1.2/5 min): x; 1s"
