"""Image input: decoding, data sets and transforms."""
