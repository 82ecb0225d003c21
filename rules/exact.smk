# stage: exact (to be written)
