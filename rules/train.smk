# stage: train (to be written)
