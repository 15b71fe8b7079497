"""Tasks: LightningModules that say what to compute for each kind of study."""
