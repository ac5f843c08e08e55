"""Where ``tampo_core.adapters`` comes from: the top-level ``adapters/`` folder.

The adapters live beside the core in the checkout but install inside it, as
``tampo_core.adapters`` (a top-level ``adapters`` package would clash with an existing PyPI
package of that name). Packages are found, never listed by hand; everything else is in
``pyproject.toml``.
"""

from setuptools import find_packages, setup

ADAPTERS = "tampo_core.adapters"

setup(
    packages=[
        *find_packages(include=["tampo_core", "tampo_core.*"]),
        ADAPTERS,
        *(f"{ADAPTERS}.{name}" for name in find_packages("adapters")),
    ],
    package_dir={ADAPTERS: "adapters"},
    package_data={"tampo_core": ["py.typed"]},
)
