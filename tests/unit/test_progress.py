"""The progress line of a long run: which arm of how many, which stage, elapsed, what is left."""

import io

from latent_city.progress import Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Tty(io.StringIO):
    def isatty(self):
        return True


def _run(stream):
    clock = Clock()
    p = Progress(train=["tokyo"], measure=["paris", "tokyo", "original"], what=("probe", "distances"),
                 stream=stream, clock=clock)
    for kind, arm, seconds in [("train", "paris", 1), ("train", "tokyo", 60), ("probe", "paris", 10),
                               ("distances", "paris", 4), ("probe", "tokyo", 10)]:
        with p.stage(kind, arm):
            clock.now += seconds
    return p


def test_off_a_terminal_each_stage_is_one_line_with_arm_stage_elapsed_and_what_is_left():
    out = io.StringIO()
    p = _run(out)
    lines = out.getvalue().splitlines()
    assert lines == [
        "latent_city: [arm 1/2 paris] reading the adapter from the cache · 0:00 elapsed · estimating what is left",
        "latent_city: [arm 2/2 tokyo] training · 0:01 elapsed · estimating what is left",
        "latent_city: [arm 1/2 paris] probe · 1:01 elapsed · estimating what is left",
        # probe seen (10 s): 4 measurements left after this one, at 10 s each
        "latent_city: [arm 1/2 paris] distances · 1:11 elapsed · about 0:40 left",
        # left: distances tokyo 4 + probe original 10 + distances original 4
        "latent_city: [arm 2/2 tokyo] probe · 1:15 elapsed · about 0:18 left",
    ]
    assert p.left() == 18.0         # distances of tokyo (4 s), probe (10 s) and distances (4 s) of the original


def test_on_a_terminal_it_is_one_updating_line():
    out = Tty()
    p = _run(out)
    text = out.getvalue()
    assert text.count("\r\033[K") == 5 and "\n" not in text
    p.close()
    assert out.getvalue().endswith("\n")


def test_while_training_it_says_how_much_training_is_left():
    clock, out = Clock(), io.StringIO()
    p = Progress(train=["a", "b", "c"], measure=["a", "b", "c"], what=("probe",), stream=out, clock=clock)
    for arm in ("a", "b", "c"):
        with p.stage("train", arm):
            clock.now += 100
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("[arm 2/3 b] training · 1:40 elapsed · about 1:40 of training left, then the measurements")
    assert lines[2].endswith("· 3:20 elapsed · estimating what is left")   # the last training; no measurement timed


def test_a_cached_adapter_does_not_count_as_training_time():
    p = _run(io.StringIO())
    assert p.durations["train"] == [60]


def test_arms_trained_in_worker_processes_count_the_wall_time_each_added():
    out, clock = io.StringIO(), Clock()
    p = Progress(train=["paris", "tokyo", "berlin"], measure=["paris", "original"], what=("probe",),
                 stream=out, clock=clock)
    clock.now = 100
    p.finished("train", "tokyo", 100)      # two workers: the first two arms end together,
    clock.now = 101
    p.finished("train", "paris", 1)        # so the second added 1 s of wall time
    assert out.getvalue().splitlines() == [
        "latent_city: [arm 2/3 tokyo] trained · 1:40 elapsed · about 3:20 of training left, then the measurements",
        "latent_city: [arm 1/3 paris] trained · 1:41 elapsed · about 0:50 of training left, then the measurements",
    ]
