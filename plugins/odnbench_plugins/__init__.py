"""odnbench's built-in plugins: datasets, timm ResNet backbones and methods.

They register through the ``odnbench`` entry-point group exactly as a third-party plugin does
(see pyproject.toml); the core never imports them by name. Each registration module is light
(no torch at import) and imports its heavy implementation inside ``load``/``build``/``run``.
"""
