"""The training precision, chosen by timing the candidates on this machine.

A CPU flag does not say which precision is faster: a CPU with AMX or a fast AVX-512
bfloat16 path trains in mixed_bfloat16 well ahead of float32, one that reports
`avx512_bf16` without AMX can run bfloat16 at half float32's speed, and one without
either emulates it. So `precision="auto"` times a training step of the run's own model
(variant, input size, batch per replica) in each candidate precision, in turns
(`measured`), picks the fastest, and stores the answer for this machine and workload, so
that later runs skip the probe. A precision given by name is never second-guessed.
"""

import dataclasses

from inception_tf.choices import BFLOAT16, FLOAT16, FLOAT32
from inception_tf.startup import machine as machine_lib
from inception_tf.startup import measured

# The order of a tie: the simpler precision first.
ORDER = (FLOAT32, BFLOAT16, FLOAT16)
# A precision's whole step is timed in turns of this many seconds.
SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the probe times: one training step of this model on this batch per replica.

    Ten classes whatever the data set: the classifiers' cost is negligible beside the
    convolutions'."""

    variant: str
    image_size: int
    batch_size: int
    aux_heads: bool = True


def policies(gpus):
    """The precisions worth timing, by what the hardware supports.

    GPUs: float16 pays from tensor cores on (compute capability 7.0), bfloat16 from 8.0;
    below 7.0 float32 alone. CPUs: bfloat16 and float32 (TensorFlow's float16 CPU kernels
    are few and slow: float16 there is a stand-in for testing, never a choice).
    """
    if gpus:
        capability = min(tuple(g["compute_capability"]) for g in gpus)
        found = [FLOAT32]
        if capability >= (8, 0):
            found.append(BFLOAT16)
        if capability >= (7, 0):
            found.append(FLOAT16)
        return found
    return [FLOAT32, BFLOAT16]


def policy_question(workload, gpus=()):
    """Where the answer for `workload` on this machine (with these GPUs) is stored."""
    return measured.question("precision", machine_lib.machine(gpus), dataclasses.asdict(workload))


def choose_policy(precision, workload, timer, gpus=None, agree=None, log=print):
    """The `measured.Choice` of precision for a run of `workload`.

    Args:
        precision: "auto", or a policy name, which is returned as it is.
        workload: the `Workload` to time (needed for "auto").
        timer: `timer(policies, workload) -> {policy: images/s}`, a policy that cannot
            train here at 0: `timing.time_policies`, unless a test fakes it.
        gpus: the GPUs' details as `machine.gpu_details()` gives them (None: ask TensorFlow).
        agree: under several workers, `agree(rates) -> rates` makes every worker decide
            on the same figures (see `distribute.agree_on_rates`).
        log: where a note on a probe or an unwritable store goes.
    """
    if precision != "auto":
        return measured.Choice("precision", precision, "asked for")
    if workload is None:
        raise ValueError("precision='auto' needs the run's workload to time. Received: workload=None")
    gpus = machine_lib.gpu_details() if gpus is None else gpus
    candidates = policies(gpus)
    if len(candidates) == 1:
        return measured.Choice("precision", candidates[0], "the only precision this GPU runs well")
    asked = policy_question(workload, gpus)

    def timed():
        log(f"precision: timing {' and '.join(candidates)} on this machine (once; the answer is stored in {asked.path})")
        return timer(candidates, workload)

    def usable(entry):
        return set(entry.get("rates", {})) | set(entry.get("left_out", {})) == set(candidates) and entry["rates"]

    entry, rates, where = measured.choose(
        asked, timed, lambda rates: measured.fastest(rates, ORDER), usable, log=lambda error: log(f"precision: {error}"),
    )
    left_out = (entry or {}).get("left_out")
    if agree is not None:
        rates, where = agree(rates), where + ", averaged over the workers"
    return measured.Choice("precision", measured.fastest(rates, ORDER),
                           f"{where}: {measured.format_rates(rates, left_out)}", dict(rates))
