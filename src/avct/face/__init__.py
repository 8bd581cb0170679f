"""Face front-end: reading the reference image, cropping, landmarks, head pose and pose boxes."""
