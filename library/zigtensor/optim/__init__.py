"""zigtensor.optim: optimizers."""
