# stage: certify (to be written)
