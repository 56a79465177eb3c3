"""Progress bars redraw ten times a second on a terminal, rarely into a log file."""
import io
import time

from nas_sr.progress import LOG_INTERVAL_S, progress_bar


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
