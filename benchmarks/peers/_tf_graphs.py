"""TensorFlow graphs of benchmark steps: export from a worker, import and time side by
side in one process (`bench_loss_graphs.py`).

A worker's step is a `tf.function`. `exporter(step, *args)` gives the worker's `run` a
`graph()` method that returns the step's traced graph (forward and backward) as a
serialised `GraphDef` with the names of its inputs and outputs. `graph_ab.py` imports
the graphs of two libraries into one process, where they run through the same call path
on the same inputs, so that a comparison is of the graphs alone: no difference of
process, memory layout or Python-side dispatch.

Imports TensorFlow: used by the TensorFlow workers only.
"""

from __future__ import annotations

import base64

import tensorflow as tf


def exporter(step, *args):
    """A `graph()` function for `step(*args)`: `{graph_def (base64), inputs, outputs}`."""

    def graph() -> dict:
        concrete = step.get_concrete_function(*args)
        if concrete.captured_inputs:  # variables or captured tensors: not self-contained
            raise ValueError(
                f"the step captures {len(concrete.captured_inputs)} tensors; "
                "only self-contained graphs can be exported"
            )
        graph_def = concrete.graph.as_graph_def()
        return {
            "graph_def": base64.b64encode(graph_def.SerializeToString()).decode("ascii"),
            "inputs": [t.name for t in concrete.inputs],
            "outputs": [t.name for t in concrete.outputs],
        }

    return graph


def load(entry: dict, specs: list):
    """A callable running the exported graph `entry` on tensors matching `specs`."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(base64.b64decode(entry["graph_def"]))

    def imported(*tensors):
        return tf.graph_util.import_graph_def(
            graph_def,
            input_map=dict(zip(entry["inputs"], tensors)),
            return_elements=entry["outputs"],
        )

    return tf.compat.v1.wrap_function(imported, specs)
