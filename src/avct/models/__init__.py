"""The networks: keypoint detector, renderer (dense motion + generator), AVCT, head-motion predictor."""
