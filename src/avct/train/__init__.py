"""Training: the paper's stages (renderer, lip-sync discriminator, AVCT, head motion) and the engine
that runs them on one CPU, one GPU or many (torchrun + DDP)."""
