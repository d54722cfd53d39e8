# The compiled frame pump (_pump.pyx) keeps pump.py's interface; type-check against it.
from .pump import FramePump as FramePump
from .pump import Pumped as Pumped
from .pump import PumpedFrame as PumpedFrame
