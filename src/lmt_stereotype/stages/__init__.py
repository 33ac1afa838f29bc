"""The pipeline's stages, one module each, whose ``run(params, ...)`` reads as the stage's recipe.

A stage's name is its module here, its ``lmt-stereotype`` subcommand, its MLproject entry
point and, for the stages of the demo's pipeline, its ``dvc.yaml`` stage. Each stage owns
its MLflow run and its outputs (written atomically); the library modules it calls know
nothing of MLflow.
"""
