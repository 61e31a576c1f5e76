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


def _rename_functions(graph_def, prefix: str) -> None:
    """Prefixes the names of the graph's library functions (`cond` branches and the
    like) and every reference to them, so that graphs traced in different processes,
    whose generated names may coincide, can be imported into one."""
    mapping = {f.signature.name: f"{prefix}_{f.signature.name}" for f in graph_def.library.function}
    if not mapping:
        return

    def fix(nodes):
        for node in nodes:
            node.op = mapping.get(node.op, node.op)
            for value in node.attr.values():
                kind = value.WhichOneof("value")
                if kind == "func":
                    value.func.name = mapping.get(value.func.name, value.func.name)
                elif kind == "list":
                    for func in value.list.func:
                        func.name = mapping.get(func.name, func.name)

    fix(graph_def.node)
    for function in graph_def.library.function:
        function.signature.name = mapping[function.signature.name]
        fix(function.node_def)
    for gradient in graph_def.library.gradient:
        gradient.function_name = mapping.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = mapping.get(gradient.gradient_func, gradient.gradient_func)


def load(entry: dict, specs: list, prefix: str):
    """A callable running the exported graph `entry` on tensors matching `specs`; its
    library functions are renamed with `prefix`. One prefix per side serves all of that
    side's graphs: names generated in one process do not repeat."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(base64.b64decode(entry["graph_def"]))
    _rename_functions(graph_def, prefix)

    def imported(*tensors):
        return tf.graph_util.import_graph_def(
            graph_def,
            input_map=dict(zip(entry["inputs"], tensors)),
            return_elements=entry["outputs"],
        )

    return tf.compat.v1.wrap_function(imported, specs)
