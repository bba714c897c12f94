"""Validates envoy.yaml against Envoy's API (the protos of envoy-data-plane): every field
name, enum value and type, including the typed_config of each extension, which is parsed
as the message its "@type" names. Usage: python check.py envoy.yaml"""

import importlib
import sys

import yaml


def type_urls(node):
    if isinstance(node, dict):
        if "@type" in node:
            yield node["@type"]
        for value in node.values():
            yield from type_urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from type_urls(value)


def main(path):
    config = yaml.safe_load(open(path))
    # Each extension's message is registered when its module is imported.
    for url in set(type_urls(config)):
        package = url.split("/", 1)[1].rsplit(".", 1)[0]
        importlib.import_module(f"envoy_data_plane.{package}")
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    bootstrap = Bootstrap.from_dict(config)
    listeners = len(bootstrap.static_resources.listeners)
    clusters = len(bootstrap.static_resources.clusters)
    print(f"{path}: valid Envoy bootstrap ({listeners} listener, {clusters} clusters)")


if __name__ == "__main__":
    main(sys.argv[1])
