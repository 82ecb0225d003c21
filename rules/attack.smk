# stage: attack (to be written)
