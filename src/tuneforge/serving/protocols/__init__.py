"""Wire protocols: thin translations from a request format to `ModelRepository.call`."""
