"""YAML whose plain scalars all stay text: for files of names and phrases (labels, intents).

PyYAML follows YAML 1.1, where `yes`, `no`, `on` and `off` are booleans and `010` is 8; CLINC150
has intents named `yes` and `no`. A label file means the words, so nothing is converted; an
empty value stays None, so `- sports:` still means "no description".
"""

from __future__ import annotations

import yaml


class TextLoader(yaml.SafeLoader):
    """SafeLoader with no implicit types but null: `yes`, `3`, `1.0` load as the strings."""


TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_text_yaml(text: str):
    return yaml.load(text, Loader=TextLoader)
