"""Dataset readers and the one record format every reader, trainer and evaluator shares."""
