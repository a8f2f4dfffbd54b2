"""Hooks: the ``multilabel`` task and the ``mlcnn`` models. No torch import here (``zoo list`` reads it)."""

from zoo_core import hookimpl

zoo_requires = ">=0.1,<1"


@hookimpl
def register_tasks(register):
    register("multilabel", "zoo_multilabel.task:MultiLabelTask", aliases=("mlc", "multi-label"),
             description="multi-label classification (labels.csv/labels.json; BCE loss; mAP, F1)")


@hookimpl
def register_models(register):
    for name, widths in [("mlcnn", (16, 32, 64)), ("mlcnn_small", (8, 16, 32))]:
        register(name, "zoo_multilabel.models:build_mlcnn", tasks=("multilabel",), kwargs={"widths": widths},
                 input_size=(3, 64, 64), description=f"a {len(widths)}-stage CNN with one logit per label")
