"""adlab: the Applied Deep Learning lab.

    import adlab
    run = adlab.train("configs/digits_cnn.yaml")
    print(run.metrics["accuracy"])

Heavy modules (torch, Lightning) are imported on first use so `adlab --help` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["train", "evaluate", "predict", "fuse", "generate", "run_study", "load_config", "__version__"]


def __getattr__(name):
    if name == "train":
        from adlab.run.train import train

        return train
    if name == "evaluate":
        from adlab.tasks.classify.evaluate import evaluate

        return evaluate
    if name == "predict":
        from adlab.tasks.classify.predict import predict

        return predict
    if name == "fuse":
        from adlab.tasks.classify.fuse import fuse

        return fuse
    if name == "generate":
        from adlab.tasks.autoencode.generate import generate

        return generate
    if name == "run_study":
        from adlab.study.runner import run_study

        return run_study
    if name == "load_config":
        from adlab.config import load_config

        return load_config
    raise AttributeError(f"module 'adlab' has no attribute {name!r}")
