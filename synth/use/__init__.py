"""Using an accepted hypothesis: predict the network's mistakes, edit it, replace it.

A hypothesis that survived the checks and controls claims to say what the network computes
and where. It is worth what it lets an engineer *do* with the network, and each use is a
stage here, measured against a baseline that does not use the hypothesis:

    inputs.py   the shared ground: the network's own input space (every length it has
                positions for, other token mixtures), errors against the task's labels,
                and reading the hypothesis out of a stored run
    predict.py  search inputs outside the observed distribution, guided by the program,
                for inputs where the program's output differs from the task label: its
                predicted mistakes of the network; precision and recall against random
                sampling with the same count
    edit.py     a user-named change to the program (a node's new definition, or a deleted
                branch), applied to the network at the claimed location by activation
                patching (and, where asked, as a weight edit of the claimed component that
                is saved as a loadable checkpoint); how often the edited network follows the
                edited program, and how often it still follows the original elsewhere
    replace.py  the program as a drop-in: agreement with the network on fresh and broader
                inputs, its cost against the forward pass, and, where the program is in
                tracr's fragment, the agreement of the network tracr compiles from it

The engine's other stages never import this package; it reads runs and targets only.
"""

from mechsynth.synth.use.edit import EditResult, ProgramEdit, apply_edits, edit, parse_edits
from mechsynth.synth.use.inputs import accepted_hypothesis
from mechsynth.synth.use.predict import Prediction, predict
from mechsynth.synth.use.replace import Replacement, replace

__all__ = [
    "EditResult", "Prediction", "ProgramEdit", "Replacement", "accepted_hypothesis", "apply_edits", "edit",
    "parse_edits", "predict", "replace",
]
