// Keeps pice_services non-empty while the node sources are being written.
