"""A method of a run, resolved once: :class:`MethodSpec`.

An entry of ``--methods`` (``lamae``, ``lamae[la_mask_ratio=0]``, a rung of ``ladder:lamae``, an
``external:`` encoder) is resolved once, by :func:`benchmark.run.build.method_spec`, into its
canonical variant, its registered class and its configuration at the run's preset. Everything
the run does with the method afterwards reads the spec — its pretraining budget, its units and
cells, its result, checkpoint and profile folders (:attr:`MethodSpec.file_name`) — so one variant
has one name, one identity and one folder, and nothing parses the name again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.data.contract import InputSpec
from benchmark.method.base import Method, MethodConfig
from benchmark.method.variant import MethodVariant


@dataclass(frozen=True)
class MethodSpec:
    """A registered method or variant with its class and its configuration at one preset.

    Two specs are equal when their canonical variants are: the class and configuration follow
    from the variant and the preset, which a run holds fixed.
    """

    variant: MethodVariant
    cls: type[Method] = field(compare=False, repr=False)
    config: MethodConfig = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        """The canonical name: ``lamae`` or ``lamae[la_mask_ratio=0]`` (results, tables, logs)."""
        return self.variant.name

    @property
    def file_name(self) -> str:
        """The name as one path component (``lamae@la_mask_ratio=0``): result, checkpoint,
        claim and profile folders."""
        return self.variant.file_name

    def build(self, input_spec: InputSpec) -> Method:
        """A fresh model (initialised from the global torch seed)."""
        return self.cls(self.config, input_spec)
