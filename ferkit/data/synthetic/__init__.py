"""Procedurally generated faces with exact 68-point landmarks: ferkit's embedded default data set.

* :mod:`.face_model` -- action units, expression prototypes, identity / pose / appearance, the landmark template;
* :mod:`.render` -- drawing a face from its landmarks;
* :mod:`.dataset` -- :class:`SyntheticFaces`, the dataset (its docstring describes the generative model).

The general :func:`ferkit.data.visual.contact_sheet` draws a grid of any dataset's faces.
"""
from ferkit.data.synthetic.dataset import SPLITS, SyntheticFaces
from ferkit.data.synthetic.face_model import ACTION_UNITS, EXPRESSION_PROTOTYPES

__all__ = ["ACTION_UNITS", "EXPRESSION_PROTOTYPES", "SPLITS", "SyntheticFaces"]
