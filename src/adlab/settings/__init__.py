"""Config sections owned by one model family (model.cnn, model.autoencoder, ...): pydantic only, below the
task registry, which says which task's models read each, and the schema in adlab.config, which composes
them (a new family is a module here and its name in the registry entry of the tasks that use it)."""
