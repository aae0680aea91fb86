"""Neural rank collapse reproduction: data, models, training, measures and their CLI."""
