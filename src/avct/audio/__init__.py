"""Audio front-end: decoding, the 41-d acoustic features and phonemes."""
