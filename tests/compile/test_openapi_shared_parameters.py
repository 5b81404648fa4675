"""The parameters every resource shares describe them in words true of every resource."""

from __future__ import annotations

import re

from charpente.compile.openapi import openapi_document
from charpente.loader import load_design_text

SHOP = """\
charpente: 1
name: shop
resources:
  products:
    access: {read: true}
    fields:
      title: {type: string, required: true}
"""


def test_shared_parameter_descriptions_name_only_fields_every_resource_has():
    document = openapi_document(load_design_text(SHOP))
    for name, parameter in document["components"]["parameters"].items():
        text = parameter.get("description", "")
        named = set(re.findall(r"`([a-z_]+)\b", text)) - {"page", "next_cursor", "exact", "ref"}
        assert named <= {"id", "created_at", "updated_at", "version", "expand"}, (name, text)
        assert "author" not in text
        assert "`body`" not in text
        assert "id,body" not in text
