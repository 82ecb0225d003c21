# stage: vocab (to be written)
