# stage: smooth (to be written)
