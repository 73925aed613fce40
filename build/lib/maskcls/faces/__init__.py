"""Finding faces and cropping the dataset to them."""
