"""The one mechanism behind every measured choice (the runtime, the precision): the
candidates are timed here in turns, the fastest is kept, and the answer is stored per
machine and workload in a small JSON file, so that later runs reuse it.

A flag in /proc/cpuinfo does not say what runs fast, and timings on a shared machine
drift: so the candidates are timed side by side, in turns (a machine slowing down for a
while slows them alike), a candidate far behind after one step is not timed again, and a
rate is the median of its turns."""

import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import statistics

from inception_tf import files

CACHE_ENV = "INCEPTION_TF_CACHE_DIR"
# One store per machine: the runtime's and the precision's answers side by side, each
# entry keyed by its kind, the machine and the workload.
CACHE_FILE = "measurements.json"
ROUNDS = 2  # timed turns after the first
# After the first turn, a candidate this much slower than the fastest is not timed again.
CLEAR_MARGIN = 1.5


@dataclasses.dataclass(frozen=True)
class Choice:
    """What was chosen (`value`: a runtime `Setting` or a precision's name), why, the
    figures behind it (images/s by name) and the variables the user set (`given`)."""

    kind: str  # "runtime" or "precision": the first word of its line
    value: object
    reason: str
    rates: dict = dataclasses.field(default_factory=dict)
    given: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self):
        return getattr(self.value, "name", self.value)

    @property
    def line(self):
        """What a run prints: `runtime: oneDNN on (measured here: ...)`."""
        return f"{self.kind}: {self.name} ({self.reason})"


@dataclasses.dataclass(frozen=True)
class Question:
    """Where an answer is stored and what it holds for: its kind ("runtime",
    "precision"), a machine (as `machine.machine` describes it) and a workload (a dict)."""

    path: pathlib.Path
    kind: str
    machine: dict
    workload: dict

    def key(self):
        return {"kind": self.kind, "machine": self.machine, "workload": self.workload}


def question(kind, machine, workload):
    """The question of `kind` for this machine and workload, in this machine's store."""
    return Question(cache_path(), kind, machine, workload)


# --- Timing in turns ---------------------------------------------------------------------------

def measure(timers, seconds, rounds=ROUNDS, clear_margin=CLEAR_MARGIN, log=print, label=str):
    """`{name: images/s}` of each timer, timed in turns.

    `timers`: `{name: rate}`, where `rate(seconds)` times at least `seconds` of work (one
    step at least) and returns images/s, or raises RuntimeError when its candidate cannot
    go on (it is then left out, with a line to `log` naming it by `label(name)`). A first
    turn times one step of each; a candidate over `clear_margin` times slower than the fastest is out. While
    more than one is left, `rounds` further turns of `seconds` each follow; a rate is the
    median of its turns."""
    times, names = {}, list(timers)
    for turn in range(rounds + 1):
        for name in names:
            try:
                times.setdefault(name, []).append(timers[name](seconds if turn else 0.0))
            except RuntimeError as error:
                log(f"{label(name)} failed, left out ({error})")
                times.pop(name, None)
        names = [name for name in names if name in times]
        if turn == 0 and times:
            best = max(found[0] for found in times.values())
            names = [name for name in names if times[name][0] * clear_margin >= best]
        if len(names) < 2:
            break
    return {name: statistics.median(found) for name, found in times.items()}


def fastest(rates, order, tie=0.0):
    """The name in `order` of the first rate within `tie` (a fraction) of the highest."""
    best = max(rates.values())
    return next(name for name in order if name in rates and rates[name] >= best * (1 - tie))


def format_rates(rates, left_out=None, ran_in=None):
    """`oneDNN on 318.6 images/s in mixed_bfloat16, oneDNN off 88.5 images/s`, fastest
    first, then `name left out (why)` for each of `left_out`. `ran_in`: `{name: what it
    ran in}`."""
    ranked = sorted(rates, key=lambda name: -rates[name])
    return ", ".join([f"{name} {rates[name]:.1f} images/s" + (f" in {ran_in[name]}" if ran_in else "") for name in ranked]
                     + [f"{name} left out ({why})" for name, why in (left_out or {}).items()])


# --- The stored answers ------------------------------------------------------------------------

def cache_path(file_name=CACHE_FILE):
    """$INCEPTION_TF_CACHE_DIR/`file_name`, else under $XDG_CACHE_HOME or ~/.cache."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
        root = pathlib.Path(base) / "inception_tf"
    return pathlib.Path(root) / file_name


def _read(path):
    try:
        entries = json.loads(path.read_text()).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return []
    return entries if isinstance(entries, list) else []


def stored(question):
    """The entry stored for the question's machine and workload, or None."""
    for entry in _read(question.path):
        if _answers(entry, question.key()):
            return entry
    return None


def _answers(entry, key):
    return isinstance(entry, dict) and all(entry.get(name) == value for name, value in key.items())


def store(path, entry):
    """Adds `entry` to the file, replacing one of the same kind, machine and workload.
    Concurrent runs take turns on a lock file; the file itself is replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = {name: entry[name] for name in ("kind", "machine", "workload")}
        kept = [e for e in _read(path) if not _answers(e, key)]
        files.write_text_atomic(path, json.dumps({"entries": kept + [entry]}, indent=2) + "\n")


def store_or_say(path, entry, log=print):
    """`store`, or a line to `log` saying why the next run measures again."""
    try:
        store(path, entry)
    except OSError as error:
        log(f"could not store the measurement ({error}); the next run measures again")


def new_entry(question, rates, choice, **extra):
    """What the store keeps of one measurement: `extra` holds what else explains it
    (`left_out`: `{name: why}` of candidates not timed)."""
    return {
        **question.key(),
        "rates": {name: round(float(rate), 2) for name, rate in rates.items()},
        "choice": choice,
        "measured_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **extra,
    }


def choose(question, timed, pick, usable=bool, log=print, extra=dict):
    """`(entry, rates, where)`: the entry stored for the question where `usable(entry)`,
    else `timed()`'s rates (by name), stored with `pick(rates)` as the choice and
    `extra()`'s keys. Empty rates (nothing could be timed) are returned as they are, and
    nothing is stored. `log` gets the note of a store that failed."""
    entry = stored(question)
    if entry is not None and usable(entry):
        return entry, entry["rates"], f"measured on this machine {entry.get('measured_at', '')}, stored in {question.path}"
    rates = timed()
    if not rates:
        return None, rates, "measured here"
    entry = new_entry(question, rates, pick(rates), **extra())
    store_or_say(question.path, entry, log)
    return entry, rates, "measured here"
