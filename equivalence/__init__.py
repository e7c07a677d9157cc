"""equivalence: port torch checkpoints to jaxconv and prove the port computes what torch computes.

Importing it needs no torch; torch is imported only where a torch model or a ``.pt`` file is used.
"""
from . import io
from .io import CheckpointError
from .state_dict import (IncompatibleKeys, StateDictError, load_state_dict, named_variables, save,
                         state_dict)
from . import examples
from .compare import assert_equivalent, compare
from .report import Report, Row
from . import tolerance
