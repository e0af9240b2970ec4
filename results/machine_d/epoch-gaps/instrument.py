"""train.py with the time of each callback hook, each epoch's data, Keras's evaluate and epoch
iterator, each fit and each garbage collection printed to stderr (what takes over 0.3-0.5 s).

    python results/machine_d/epoch-gaps/instrument.py --image-size 56 --epochs 30 --run-dir runs/gap-probe
"""
import sys, time
sys.argv = ["train.py"] + sys.argv[1:]
sys.path.insert(0, ".")
from inception_tf.tasks import runtime
runtime.configure_from_flags(sys.argv[1:], precision="auto")
import keras
from keras.src.callbacks.callback_list import CallbackList


def timed_hook(name, original):
    def hook(self, *args, **kwargs):
        saved = self.callbacks
        spent = []
        def make(cb):
            method = getattr(cb, name)
            def run(*a, **k):
                t = time.perf_counter(); method(*a, **k); spent.append((type(cb).__name__, time.perf_counter() - t))
            return run
        t0 = time.perf_counter()
        for cb in saved:
            setattr(cb, name, make(cb))
        try:
            original(self, *args, **kwargs)
        finally:
            for cb in saved:
                try: delattr(cb, name)
                except AttributeError: pass
        total = time.perf_counter() - t0
        slow = [f"{n} {s:.1f}s" for n, s in spent if s > 0.3]
        if total > 0.5:
            print(f"[{time.strftime('%H:%M:%S')}] {name} {total:.1f}s: {', '.join(slow)}", file=sys.stderr, flush=True)
    return hook

for name in ("on_epoch_end", "on_train_begin", "on_train_end", "on_epoch_begin"):
    setattr(CallbackList, name, timed_hook(name, getattr(CallbackList, name)))

import gc
_gc = {}
def _gc_cb(phase, info):
    if phase == "start":
        _gc["t"] = time.perf_counter()
    elif "t" in _gc:
        spent = time.perf_counter() - _gc.pop("t")
        if spent > 0.3:
            print(f"[{time.strftime('%H:%M:%S')}] gc generation {info['generation']}: {spent:.1f}s, collected {info['collected']}", file=sys.stderr, flush=True)
gc.callbacks.append(_gc_cb)
from keras.src.backend.tensorflow import trainer as _tt
def _timed_method(cls, name):
    original = getattr(cls, name)
    def run(self, *a, **k):
        t = time.perf_counter(); r = original(self, *a, **k); s = time.perf_counter() - t
        if s > 0.3:
            print(f"[{time.strftime('%H:%M:%S')}] {cls.__name__}.{name}: {s:.1f}s", file=sys.stderr, flush=True)
        return r
    setattr(cls, name, run)
for cls, name in ((_tt.TFEpochIterator, "__init__"), (_tt.TFEpochIterator, "reset"), (_tt.TensorFlowTrainer, "make_train_function"),
                  (_tt.TensorFlowTrainer, "evaluate"), (_tt.TensorFlowTrainer, "_maybe_symbolic_build")):
    if hasattr(cls, name):
        _timed_method(cls, name)
from inception_tf.tasks import experiment
for fn in ("_training_data", "_validation_data"):
    original = getattr(experiment, fn)
    def wrapped(*a, _o=original, _n=fn, **k):
        t = time.perf_counter(); r = _o(*a, **k)
        print(f"[{time.strftime('%H:%M:%S')}] {_n}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
        return r
    setattr(experiment, fn, wrapped)
fit = keras.Model.fit
def timed_fit(self, *a, **k):
    t = time.perf_counter(); r = fit(self, *a, **k)
    print(f"[{time.strftime('%H:%M:%S')}] fit: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    return r
keras.Model.fit = timed_fit
from inception_tf import cli
sys.exit(cli.train_main(sys.argv[1:]))
