"""Training code for our CTPN and CRNN: synthetic data, real TRAIN loaders, training scripts, export, evaluation."""
