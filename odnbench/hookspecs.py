"""The hooks a plugin may implement. Specs only ever gain arguments; none is removed or renamed.

Every hook is documented in docs/hooks.md; a test keeps the two in step.
"""

import pluggy

hookspec = pluggy.HookspecMarker("odnbench")


@hookspec
def register_datasets(register):
    """Register datasets: call ``register(dataset)`` with instances of :class:`odnbench.Dataset`."""


@hookspec
def register_backbones(register):
    """Register backbones: call ``register(backbone)`` with instances of :class:`odnbench.Backbone`."""


@hookspec
def register_methods(register):
    """Register methods: call ``register(method)`` with instances of :class:`odnbench.Method`."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``odnbench`` command group ``cli``."""
