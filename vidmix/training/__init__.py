"""Training, evaluation and prediction: one sharded program from a CPU to a pod."""
