"""The program writes its YAML documents with libyaml's emitter (infra/literal_yaml.py): the
text must be what PyYAML's own emitter writes, byte for byte, or every stack would see its
user data and image component change without a change of its own."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from test_infra_user_data import SETTINGS

from infra import literal_yaml
from infra.image_component import component_document
from infra.user_data import cloud_config, render_user_data

pytestmark = pytest.mark.unit

PURE = literal_yaml.literal_dumper(yaml.SafeDumper)


def pure_text(document: object) -> str:
    return yaml.dump(document, Dumper=PURE, sort_keys=False, width=1000)


def test_the_program_uses_libyaml():
    assert yaml.__with_libyaml__, "PyYAML built without libyaml"
    assert issubclass(literal_yaml.LiteralDumper, yaml.CSafeDumper)


@pytest.mark.parametrize("baked", [False, True], ids=["stock", "baked"])
def test_user_data_is_the_pure_emitters_text(baked):
    settings = dataclasses.replace(SETTINGS, baked_image=baked)
    text = render_user_data(settings)
    assert text == "#cloud-config\n" + pure_text(cloud_config(settings))
    assert "|\n" in text, "the scripts are literal blocks"


def test_the_image_component_is_the_pure_emitters_text():
    text = component_document(SETTINGS, "runner-fleet-main-image")
    assert text == pure_text(yaml.safe_load(text))


def test_multi_line_strings_are_literal_blocks_and_long_lines_stay_whole():
    document = {"script": "#!/bin/sh\necho one\n", "long": "x " * 400, "n": 3}
    text = literal_yaml.literal_yaml(document)
    assert text == pure_text(document)
    assert text.startswith("script: |\n  #!/bin/sh\n  echo one\n")
    assert len(text.splitlines()) == 5
    assert yaml.safe_load(text) == document
