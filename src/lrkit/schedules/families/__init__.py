"""Schedule families, one small module per group; importing this registers them all."""
from lrkit.schedules.families.cosine import Cosine, Restarts
from lrkit.schedules.families.cyclic import Cyclic, OneCycle
from lrkit.schedules.families.decay import (Constant, Exponential, InverseSqrt, Linear, MultiStep,
                                            Polynomial, Step)
from lrkit.schedules.families.plateau import Plateau, PlateauState
from lrkit.schedules.families.wsd import WSD

__all__ = ["Constant", "Step", "MultiStep", "Exponential", "Linear", "Polynomial", "InverseSqrt",
           "Cosine", "Restarts", "Cyclic", "OneCycle", "WSD", "Plateau", "PlateauState"]
